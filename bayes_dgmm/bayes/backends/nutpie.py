"""nutpie's Rust NUTS on the model's log density compiled by PyTensor's JAX backend.

The likelihood is the hand-written JAX density (:mod:`bayes_dgmm.bayes.likelihood`), so
under ``nutpie.compile_pymc_model(backend="jax", gradient_backend="jax")`` the whole log
density and its gradient are one jitted JAX function: it compiles in seconds (the C
backend's cold compile of the study model took about two minutes), releases the GIL, so
nutpie's chains run in parallel threads, and it is kept in JAX's compilation cache. The
model's data stay a shared variable (``freeze_model=False``), handed to nutpie at each fit,
so new data need no recompilation.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from pymc.initial_point import make_initial_point_fn

from bayes_dgmm._jax import use_compilation_cache
from bayes_dgmm._validation import RandomLike
from bayes_dgmm.bayes.backends.flat import flatten_point
from bayes_dgmm.bayes.model import transformed_point

logger = logging.getLogger(__name__)

#: sd of the Gaussian jitter (unconstrained scale) that gives each chain its own start near
#: a given start: chains from one point would share their first draws
START_JITTER = 0.01


def compile_nutpie_model(model: Any) -> Any:
    """A nutpie model of the PyMC ``model`` whose log density and gradient are one JAX
    function. Chains start from PyMC's initial point with U(-1, 1) jitter; give another start
    with ``dataclasses.replace(compiled, _make_initial_points=initial_point_function(model,
    start))`` (no recompilation)."""
    # nutpie itself is imported when used: it loads its Rust extension
    import nutpie

    use_compilation_cache()
    return nutpie.compile_pymc_model(
        model, backend="jax", gradient_backend="jax", freeze_model=False
    )


def initial_point_function(model: Any, start: Mapping[str, Any] | None) -> Any:
    """nutpie's ``seed -> flat unconstrained point``: near ``start``, or jittered.

    ``start`` holds free-variable values on their own scale, as
    :func:`bayes_dgmm.bayes.model.params_to_point` returns; each chain starts there with a
    Gaussian jitter of sd :data:`START_JITTER` on the unconstrained scale, seeded by nutpie's
    per-chain seed. Without it each chain starts at PyMC's initial point with U(-1, 1) jitter.
    """
    if start is not None:
        fixed = flatten_point(model, transformed_point(model, start))
        return lambda seed: (
            fixed + START_JITTER * np.random.default_rng(seed).standard_normal(fixed.size)
        )
    point_fn = make_initial_point_fn(
        model=model, jitter_rvs=set(model.free_RVs), return_transformed=True
    )
    return lambda seed: flatten_point(model, point_fn(seed))


def sample_nutpie(
    compiled: Any,
    model: Any,
    start: Mapping[str, Any] | None,
    kw: dict[str, Any],
    *,
    random_seed: RandomLike,
    progressbar: bool,
) -> Any:
    """nutpie's NUTS on ``compiled`` (from :func:`compile_nutpie_model` of ``model``).

    Keywords as for PyMC's NUTS: ``draws`` (1000), ``tune`` (1000), ``chains`` (4),
    ``cores``, ``nuts`` (``max_treedepth``, ``target_accept``); any other keyword goes to
    ``nutpie.sample``. Chains start at ``start`` (free-variable values), or jittered.
    """
    import nutpie

    kw.pop("compile_kwargs", None)
    # the model's current data (pm.set_data may have swapped them since the compile)
    compiled = dataclasses.replace(
        compiled.with_data(X=model["X"].get_value()),
        _make_initial_points=initial_point_function(model, start),
    )
    nuts = dict(kw.pop("nuts", {}) or {})
    settings: dict[str, Any] = {}
    if "max_treedepth" in nuts:
        settings["maxdepth"] = int(nuts.pop("max_treedepth"))
    if "target_accept" in nuts:
        settings["target_accept"] = float(nuts.pop("target_accept"))
    if nuts:
        raise ValueError(
            f"nuts={nuts!r}: method='nutpie' understands max_treedepth and target_accept."
        )
    seed = random_seed
    seed_int = int(np.random.default_rng(seed).integers(2**31)) if seed is not None else None
    t0 = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=int(kw.pop("draws", 1000)),
        tune=int(kw.pop("tune", 1000)),
        chains=int(kw.pop("chains", 4)),
        cores=int(kw.pop("cores", 1)),
        seed=seed_int,
        save_warmup=False,
        progress_bar=progressbar,
        **settings,
        **kw,
    )
    stats = idata["sample_stats"].to_dataset()
    if "depth" in stats and "tree_depth" not in stats:
        # PyMC's names, so the two NUTS implementations read the same downstream
        stats = stats.rename({"depth": "tree_depth"})
    idata["sample_stats"] = stats
    idata["posterior"].attrs["sampling_time"] = time.perf_counter() - t0
    return idata
