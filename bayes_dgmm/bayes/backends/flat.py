"""The model's log density, gradient and variables as functions of one flat vector.

The unconstrained value variables, in ``model.free_RVs`` order, are joined into one vector
(what nutpie samples and what the Laplace and VI routes differentiate). The compiled
functions are kept per model and PyTensor mode, so the routes of one fit share them; they
read the model's shared data, so ``pm.set_data`` needs no recompilation.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytensor.tensor as pt
import xarray as xr
from pymc.model.transform.optimization import freeze_dims_and_data
from pymc.pytensorf import compile as compile_pymc
from pytensor.graph import clone_replace

from bayes_dgmm.bayes.model import compile_mode

#: model -> {(kind, mode): compiled function and its companion}; dropped with the model
_COMPILED: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], Any]] = weakref.WeakKeyDictionary()


def _cached(model: Any, kind: str, mode: str | None, build: Callable[[str], Any]) -> Any:
    mode = mode or compile_mode()
    per_model = _COMPILED.setdefault(model, {})
    if (kind, mode) not in per_model:
        per_model[(kind, mode)] = build(mode)
    return per_model[(kind, mode)]


def _joined_input(model: Any, order: Any = None) -> tuple[Any, dict[Any, Any]]:
    """A flat input vector and the replacement of every value variable by its slice, in the
    ``free_RVs`` order of ``order`` (default ``model``; a copy of a model may reorder them)."""
    value_vars, shapes = _value_vars_and_shapes(model)
    if order is not None and order is not model:
        by_name = dict(
            zip([v.name for v in value_vars], zip(value_vars, shapes, strict=True), strict=True)
        )
        names = [model_value.name for model_value in _value_vars_and_shapes(order)[0]]
        value_vars, shapes = [by_name[n][0] for n in names], [by_name[n][1] for n in names]
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
    variables in ``model.free_RVs`` order, as :func:`flatten_point`), and its length.
    Compiled once per model and mode (:func:`_cached`)."""
    return _cached(model, "logp_grad", mode, lambda m: _build_logp_grad(model, m))


def _for_mode(model: Any, mode: str) -> tuple[Any, dict[Any, Any]]:
    """The model to build graphs from in ``mode``, and the replacement of its data by the
    original model's. JAX compiles only shapes known at compile time, so under JAX the dims
    but ``obs`` are frozen (a copy of the model); the data stay the original's shared variables, so
    ``pm.set_data`` on ``model`` still reaches the compiled function."""
    if str(mode).upper() != "JAX":
        return model, {}
    # every dim but the data's rows, which follow the data
    frozen = freeze_dims_and_data(model, dims=[d for d in model.coords if d != "obs"], data=[])
    names = [v.name for v in model.data_vars]
    return frozen, {frozen[n]: model[n] for n in names}


def _build_logp_grad(model: Any, mode: str) -> tuple[Any, int]:
    graph_model, data = _for_mode(model, mode)
    joined, replacements = _joined_input(graph_model, model)
    value_vars = list(replacements)
    logp = graph_model.logp()
    grads: Any = pt.grad(logp, value_vars)  # a list: one gradient per value variable
    grad = pt.concatenate([g.ravel() for g in grads])
    logp_j, grad_j = clone_replace([logp, grad], {**replacements, **data})
    with graph_model:
        fn = compile_pymc([joined], [logp_j, grad_j], mode=mode)
    return fn, int(joined.type.shape[0])


def compile_flat_expand(model: Any, mode: str | None = None) -> tuple[Any, list[str]]:
    """``f(x) -> [values]`` of every free variable on its own (constrained) scale and every
    deterministic, from one flat unconstrained vector; and their names (as in the model).
    Compiled once per model and mode."""
    return _cached(model, "expand", mode, lambda m: _build_expand(model, m))


def _build_expand(model: Any, mode: str) -> tuple[Any, list[str]]:
    graph_model, data = _for_mode(model, mode)
    joined, replacements = _joined_input(graph_model, model)
    outputs = [graph_model[v.name] for v in (*model.free_RVs, *model.deterministics)]
    expand_graph = clone_replace(
        graph_model.replace_rvs_by_values(outputs), {**replacements, **data}
    )
    with graph_model:
        fn = compile_pymc([joined], expand_graph, mode=mode)
    return fn, [o.name for o in outputs]


def posterior_dataset(model: Any, names: list[str], values: list[Any]) -> Any:
    """An ``xarray.Dataset`` (chain, draw, *dims) of draws named and dimensioned as in the
    model; ``values[k]`` holds variable ``names[k]`` with leading (chain, draw) axes."""
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


def draws_dataset(model: Any, flat_draws: Any) -> Any:
    """The posterior ``xarray.Dataset`` (one chain) of flat unconstrained draws (one per
    row): every free variable on its own scale and every deterministic
    (:func:`compile_flat_expand`, :func:`posterior_dataset`)."""
    expand, names = compile_flat_expand(model)
    per_draw = [expand(row) for row in flat_draws]
    values = [np.stack([d[k] for d in per_draw])[None] for k in range(len(names))]
    return posterior_dataset(model, names, values)


def observed_dataset(model: Any) -> Any:
    """The model's observed data as an ``xarray.Dataset`` (the ``observed_data`` group)."""
    return xr.Dataset(
        {
            rv.name: xr.DataArray(
                np.asarray(model.rvs_to_values[rv].eval()),
                dims=model.named_vars_to_dims.get(rv.name),
            )
            for rv in model.observed_RVs
        }
    )


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
