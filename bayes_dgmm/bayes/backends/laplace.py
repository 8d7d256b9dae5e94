"""The Laplace approximation: a Gaussian at the posterior mode on the unconstrained scale.

The mode is :func:`~bayes_dgmm.bayes.backends.mode.posterior_mode` (BFGS), refined and
checked by :func:`~bayes_dgmm.bayes.backends.curvature.second_order` (Newton steps on a
Hessian taken by finite differences of the compiled gradient); the fit is converged when
that Hessian is positive definite and the Newton decrement is below ``DECREMENT_TOL``.
Written here rather than taken from pymc-extras (``fit_laplace``), whose releases require
PyMC < 6.4.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning

from bayes_dgmm._validation import RandomLike
from bayes_dgmm.bayes.backends.curvature import DECREMENT_TOL as DECREMENT_TOL
from bayes_dgmm.bayes.backends.curvature import MIN_CURVATURE, second_order
from bayes_dgmm.bayes.backends.curvature import negative_hessian as negative_hessian
from bayes_dgmm.bayes.backends.curvature import rotation_directions as rotation_directions
from bayes_dgmm.bayes.backends.flat import (
    compile_flat_logp_grad,
    draws_dataset,
    observed_dataset,
)
from bayes_dgmm.bayes.backends.mode import posterior_mode

Array = NDArray[np.float64]


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
    ``laplace_nonpositive_eigenvalues`` (below minus ``laplace_hessian_error``) and
    ``laplace_min_eigenvalue`` of the Hessian off the top layer's exact rotations
    (:func:`rotation_directions`, counted in ``laplace_rotation_directions``), and
    ``laplace_flat_directions``, those drawn with sd 1 for want of curvature).
    """
    unknown = sorted(set(map_kwargs) - {"maxiter"})
    if unknown:
        raise ValueError(f"method='laplace' takes draws and maxiter only; got {unknown}.")
    found = posterior_mode(model, start, maxiter=int(map_kwargs.get("maxiter", 1000)))
    fn, _ = compile_flat_logp_grad(model)
    check = second_order(model, found.x)
    x, w, V, error, bad = check.x, check.w, check.V, check.error, check.bad
    decrement, steps, converged = check.decrement, check.steps, check.converged
    Q, w_off = check.rotations, check.w_off
    if not converged:
        warnings.warn(
            f"method='laplace' did not converge: the Hessian at the mode has {bad} "
            f"eigenvalues below -{error:.2g}, its differencing error (off the {Q.shape[1]} "
            f"exact rotations of the top layer), and a Newton step would still gain "
            f"{decrement:.3g} nats (criterion: none and < {DECREMENT_TOL}).",
            ConvergenceWarning,
            stacklevel=3,
        )
    # A direction of curvature below MIN_CURVATURE (negative ones included) has no useful
    # Gaussian: it is drawn with sd 1/sqrt(MIN_CURVATURE) and counted.
    flat_dirs = int(np.sum(w < MIN_CURVATURE))
    w_used = np.maximum(w, MIN_CURVATURE)
    rng = np.random.default_rng(random_seed)
    e = rng.standard_normal((int(draws), x.size))
    flat = x + (e / np.sqrt(w_used)) @ V.T
    posterior = draws_dataset(model, flat)
    # log p - log q of every draw: the importance weights of the approximate-posterior
    # correction of PSIS-LOO (bayes_dgmm.diagnostics.stacking.loo_summary)
    log_q = -0.5 * (np.sum(e**2, axis=1) - np.sum(np.log(w_used)) + x.size * math.log(2 * math.pi))
    log_p = np.array([float(fn(row)[0]) for row in flat])
    posterior.attrs.update(
        laplace_converged=int(converged),
        laplace_newton_decrement=float(decrement),
        laplace_newton_steps=int(steps),
        laplace_nonpositive_eigenvalues=bad,
        laplace_min_eigenvalue=float(w_off.min()),
        laplace_hessian_error=error,
        laplace_rotation_directions=int(Q.shape[1]),
        laplace_flat_directions=flat_dirs,
        laplace_criterion=(
            "no Hessian eigenvalue below minus its differencing error off the top layer's "
            f"exact rotations, and Newton decrement < {DECREMENT_TOL} nats"
        ),
    )
    observed = observed_dataset(model)
    stats = xr.Dataset({"log_importance_weight": (("chain", "draw"), (log_p - log_q)[None])})
    return xr.DataTree.from_dict(
        {"posterior": posterior, "sample_stats": stats, "observed_data": observed}
    )
