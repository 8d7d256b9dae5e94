"""nutpie's Rust NUTS driven by PyTensor's C backend instead of Numba.

``nutpie.compile_pymc_model`` compiles the log density with PyTensor's Numba backend. On the
study model that compile took about 220 s and the compiled gradient ran about 10x slower than
the C backend (``benchmarks/bench_pymc.py``). nutpie also accepts any Python function that
returns the log density and its gradient (``nutpie.compiled_pyfunc.from_pyfunc``), so this
module compiles the joined log density and gradient with the C backend (``"CVM"``, cached on
disk across sessions) and hands nutpie that function. The sampler, its adaptation and its
output (an ``xarray.DataTree``) are nutpie's own; only the gradient code differs.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from pymc.initial_point import make_initial_point_fn

from bayes_dgmm._validation import RandomLike
from bayes_dgmm.bayes.backends.flat import (
    compile_flat_expand,
    compile_flat_logp_grad,
    flatten_point,
)
from bayes_dgmm.bayes.model import compile_mode, transformed_point

logger = logging.getLogger(__name__)


def compile_nutpie_model(model: Any, mode: str | None = None) -> Any:
    """A nutpie model of the PyMC ``model`` whose log density runs in PyTensor's ``mode``.

    Chains start from PyMC's initial point with U(-1, 1) jitter; give another start with
    ``dataclasses.replace(compiled, _make_initial_points=initial_point_function(model, start))``
    (no recompilation). The data are read from the model's shared ``X`` at every call, so
    ``pm.set_data`` on the model needs no recompilation either.
    """
    # nutpie itself is imported when used: it loads its Rust extension
    from nutpie.compiled_pyfunc import from_pyfunc

    mode = mode or compile_mode()
    logp_fn, n_dim = compile_flat_logp_grad(model, mode)
    expand_fn, names = compile_flat_expand(model, mode)
    out_shapes = [tuple(np.shape(a)) for a in expand_fn(np.zeros(n_dim))]

    # nutpie runs chains in threads. A compiled PyTensor function is not thread-safe (its
    # Python-level ops keep per-node scratch storage, shared even by ``Function.copy``), so
    # the calls take a lock: chains interleave, one log density at a time. Most of the work
    # holds the GIL anyway, so threads would not run it in parallel.
    lock = threading.Lock()

    def make_logp_func() -> Any:
        def logp_and_grad(x: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
            with lock:
                value, gradient = logp_fn(x)
                return float(value), np.array(gradient, dtype=np.float64, order="C")

        return logp_and_grad

    def make_expand_func(seed1: int, seed2: int, chain: int) -> Any:
        def expand(x: np.ndarray, **_: Any) -> dict[str, np.ndarray]:
            with lock:
                return {
                    n: np.array(a, dtype=np.float64, order="C")
                    for n, a in zip(names, expand_fn(x), strict=True)
                }

        return expand

    dims = {n: tuple(model.named_vars_to_dims.get(n, ())) for n in names}
    dims = {n: d for n, d in dims.items() if d}
    used = {d for ds in dims.values() for d in ds}
    coords = {
        k: pd.Index(v if v is not None else range(int(model.dim_lengths[k].eval())))
        for k, v in model.coords.items()
        if k in used
    }
    return from_pyfunc(
        ndim=n_dim,
        make_logp_fn=make_logp_func,
        make_expand_fn=make_expand_func,
        expanded_dtypes=[np.dtype("float64")] * len(names),
        expanded_shapes=out_shapes,
        expanded_names=names,
        coords=coords,
        dims=dims,
        make_initial_point_fn=initial_point_function(model, None),
    )


def initial_point_function(model: Any, start: Mapping[str, Any] | None) -> Any:
    """nutpie's ``seed -> flat unconstrained point``: ``start`` for every chain, or jitter.

    ``start`` holds free-variable values on their own scale, as
    :func:`bayes_dgmm.bayes.model.params_to_point` returns. Without it each chain starts at
    PyMC's initial point with U(-1, 1) jitter on the unconstrained scale (seeded by nutpie).
    """
    if start is not None:
        fixed = flatten_point(model, transformed_point(model, start))
        return lambda seed: fixed.copy()
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
    compiled = dataclasses.replace(
        compiled, _make_initial_points=initial_point_function(model, start)
    )
    # Data may have been swapped since the compile (pm.set_data): the compiled function
    # reads the model's shared X, so nothing is stale.
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
