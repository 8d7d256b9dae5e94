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
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytensor.tensor as pt
from pymc.initial_point import make_initial_point_fn
from pymc.pytensorf import compile as compile_pymc
from pytensor.graph import clone_replace

from bayes_dgmm._validation import RandomLike
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


def _joined_input(model: Any) -> tuple[Any, dict[Any, Any]]:
    """A flat input vector and the replacement of every value variable by its slice."""
    value_vars, shapes = _value_vars_and_shapes(model)
    sizes = [math.prod(s) for s in shapes]
    offsets = np.cumsum([0, *sizes])
    joined = pt.TensorType("float64", shape=(int(offsets[-1]),))(name="_unconstrained_point")
    replacements = {
        v: joined[offsets[i] : offsets[i + 1]].reshape(shapes[i]).astype(v.dtype)
        for i, v in enumerate(value_vars)
    }
    return joined, replacements


def compile_flat_logp_grad(model: Any, mode: str | None = None) -> tuple[Any, int]:
    """``f(x) -> (logp, grad)`` of ``model`` on one flat unconstrained vector (value
    variables in ``model.free_RVs`` order, as :func:`flatten_point`), and its length."""
    joined, replacements = _joined_input(model)
    value_vars = list(replacements)
    logp = model.logp()
    grads: Any = pt.grad(logp, value_vars)  # a list: one gradient per value variable
    grad = pt.concatenate([g.ravel() for g in grads])
    logp_j, grad_j = clone_replace([logp, grad], replacements)
    with model:
        fn = compile_pymc([joined], [logp_j, grad_j], mode=mode or compile_mode())
    return fn, int(joined.type.shape[0])


def compile_flat_expand(model: Any, mode: str | None = None) -> tuple[Any, list[str]]:
    """``f(x) -> [values]`` of every free variable on its own (constrained) scale and every
    deterministic, from one flat unconstrained vector; and their names (as in the model)."""
    joined, replacements = _joined_input(model)
    outputs = [*model.free_RVs, *model.deterministics]
    expand_graph = clone_replace(model.replace_rvs_by_values(outputs), replacements)
    with model:
        fn = compile_pymc([joined], expand_graph, mode=mode or compile_mode())
    return fn, [o.name for o in outputs]


def posterior_dataset(model: Any, names: list[str], values: list[Any]) -> Any:
    """An ``xarray.Dataset`` (chain, draw, *dims) of draws named and dimensioned as in the
    model; ``values[k]`` holds variable ``names[k]`` with leading (chain, draw) axes."""
    import xarray as xr

    data = {}
    coords: dict[str, Any] = {}
    for name, value in zip(names, values, strict=True):
        dims = tuple(model.named_vars_to_dims.get(name, ()))
        arr = np.asarray(value, dtype=np.float64)
        if len(dims) != arr.ndim - 2:
            dims = tuple(f"{name}_dim_{i}" for i in range(arr.ndim - 2))
        data[name] = xr.DataArray(arr, dims=("chain", "draw", *dims))
        for d, size in zip(dims, arr.shape[2:], strict=True):
            if d in model.coords and model.coords[d] is not None:
                coords[d] = np.asarray(model.coords[d])
            else:
                coords.setdefault(d, np.arange(size))
    return xr.Dataset(data, coords=coords)


def flatten_point(model: Any, point: Mapping[str, Any]) -> np.ndarray:
    """A point of value variables (unconstrained, by name) as one flat vector."""
    value_vars = [model.rvs_to_values[rv] for rv in model.free_RVs]
    return np.concatenate([np.asarray(point[v.name], dtype=float).ravel() for v in value_vars])


def _value_vars_and_shapes(model: Any) -> tuple[list[Any], list[tuple[int, ...]]]:
    """The free variables' value variables (in ``model.free_RVs`` order) and their shapes."""
    value_vars = [model.rvs_to_values[rv] for rv in model.free_RVs]
    ip = model.initial_point(random_seed=0)
    return value_vars, [tuple(np.shape(ip[v.name])) for v in value_vars]


def n_free_variables(model: Any) -> int:
    """Number of scalar free (unconstrained) parameters of a PyMC model."""
    return int(sum(math.prod(s) for s in _value_vars_and_shapes(model)[1]))


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
