"""The Laplace approximation: a Gaussian at the posterior mode on the unconstrained scale.

The mode is PyMC's ``find_MAP`` refined by Newton steps on a Hessian taken by finite
differences of the compiled gradient; the fit is converged when that Hessian is positive
definite and the Newton decrement (the log density a Newton step would still gain) is below
:data:`DECREMENT_TOL`. Written here rather than taken from pymc-extras (``fit_laplace``),
whose releases require PyMC < 6.4.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning

from bayes_dgmm._validation import RandomLike
from bayes_dgmm.bayes.backends.flat import (
    compile_flat_logp_grad,
    draws_dataset,
    flatten_point,
    observed_dataset,
)
from bayes_dgmm.bayes.model import map_compile_mode, transformed_point

Array = NDArray[np.float64]

#: The mode is reached when a Newton step would gain less than this (nats).
DECREMENT_TOL = 0.1
#: Least curvature (-d2 logp along an eigenvector of the Hessian) a draw's direction gets:
#: an sd of at most 1 on the unconstrained scale.
MIN_CURVATURE = 1.0
NEWTON_STEPS = 20


def negative_hessian(fn: Any, x0: Array) -> Array:
    """``-d2 logp / dx dx^T`` at ``x0`` by forward differences of ``fn(x) -> (logp, grad)``:
    one gradient per coordinate, symmetrised."""
    _, g0 = fn(x0)
    g0 = np.array(g0, dtype=float)
    h = 1e-6 * (1.0 + np.abs(x0))
    H = np.empty((x0.size, x0.size))
    for i in range(x0.size):
        x = x0.copy()
        x[i] += h[i]
        H[i] = -(np.asarray(fn(x)[1], dtype=float) - g0) / h[i]
    return 0.5 * (H + H.T)


def _newton_to_mode(fn: Any, x: Array, w: Array, V: Array) -> tuple[Array, float, int]:
    """Newton steps with the fixed Hessian ``V diag(w) V^T``, its curvatures raised to at
    least :data:`MIN_CURVATURE` (a step along a flat or negative direction is bounded),
    each halved until the log density rises; returns the point, the last decrement (of that
    regularised model) and the steps."""
    w_pos = np.maximum(w, MIN_CURVATURE)
    decrement = np.inf
    steps = 0
    for steps in range(NEWTON_STEPS + 1):
        value, grad = fn(x)
        grad = np.asarray(grad, dtype=float)
        step = V @ ((V.T @ grad) / w_pos)
        decrement = 0.5 * float(grad @ step)
        if decrement < DECREMENT_TOL or steps == NEWTON_STEPS:
            break
        t = 1.0
        while t > 1e-6:
            trial = x + t * step
            if float(fn(trial)[0]) > float(value):
                x = trial
                break
            t /= 2
        else:
            break  # no step raises the log density: the quadratic model is wrong here
    return x, decrement, steps


def run_laplace(
    model: Any,
    start: Mapping[str, Any],
    *,
    draws: int = 1000,
    random_seed: RandomLike = None,
    progressbar: bool = False,
    **map_kwargs: Any,
) -> Any:
    """Laplace approximation of ``model``'s posterior, from ``start`` (constrained values).

    Returns a DataTree with ``posterior`` (one chain of ``draws`` draws of the Gaussian,
    mapped to every variable's own scale), ``observed_data``, and the criterion's figures as
    posterior attributes (``laplace_converged``, ``laplace_newton_decrement``,
    ``laplace_nonpositive_eigenvalues``, ``laplace_min_eigenvalue``, and
    ``laplace_flat_directions``, those drawn with sd 1 for want of curvature).
    """
    map_kwargs.setdefault("compile_kwargs", {"mode": map_compile_mode()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # find_MAP's "did not converge"
        mode = pm.find_MAP(
            initvals=start,
            model=model,
            random_seed=random_seed,
            progressbar=progressbar,
            return_inferencedata=True,
            jitter=False,
            **map_kwargs,
        )
    post = mode["posterior"].to_dataset()
    point = {rv.name: post[rv.name].values[0, 0] for rv in model.free_RVs}
    fn, _ = compile_flat_logp_grad(model)
    x = flatten_point(model, transformed_point(model, point))
    H = negative_hessian(fn, x)
    w, V = np.linalg.eigh(H)
    x, decrement, steps = _newton_to_mode(fn, x, w, V)
    bad = int(np.sum(w <= 0))
    converged = bad == 0 and decrement < DECREMENT_TOL
    if not converged:
        warnings.warn(
            f"method='laplace' did not converge: the Hessian at the mode has {bad} "
            f"non-positive eigenvalues and a Newton step would still gain {decrement:.3g} "
            f"nats (criterion: none and < {DECREMENT_TOL}).",
            ConvergenceWarning,
            stacklevel=3,
        )
    # A direction of curvature below MIN_CURVATURE (negative ones included) has no useful
    # Gaussian: it is drawn with sd 1/sqrt(MIN_CURVATURE) and counted.
    flat_dirs = int(np.sum(w < MIN_CURVATURE))
    w_used = np.maximum(w, MIN_CURVATURE)
    rng = np.random.default_rng(random_seed)
    flat = x + (rng.standard_normal((int(draws), x.size)) / np.sqrt(w_used)) @ V.T
    posterior = draws_dataset(model, flat)
    posterior.attrs.update(
        laplace_converged=int(converged),
        laplace_newton_decrement=float(decrement),
        laplace_newton_steps=int(steps),
        laplace_nonpositive_eigenvalues=bad,
        laplace_min_eigenvalue=float(w.min()),
        laplace_flat_directions=flat_dirs,
        laplace_criterion=(
            f"Hessian positive definite and Newton decrement < {DECREMENT_TOL} nats"
        ),
    )
    observed = observed_dataset(model)
    return xr.DataTree.from_dict({"posterior": posterior, "observed_data": observed})
