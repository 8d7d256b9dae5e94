"""Pathfinder (Zhang, Carpenter, Gelman & Vehtari 2022): Gaussian approximations along an
L-BFGS path, the one of highest ELBO kept.

L-BFGS runs on the negative log density from the start. At every iterate the last
:data:`HISTORY` accepted (s, y) pairs give the L-BFGS inverse Hessian ``H``; the Gaussian
``N(x + H grad, H)`` gets a Monte Carlo ELBO of :data:`ELBO_DRAWS` draws, and the best one is
kept. The fit is converged when the Pareto k of its draws' importance weights
``log p - log q`` is below :data:`~bayes_dgmm.diagnostics.importance.PARETO_K_OK` (PSIS).
Written here rather than taken from pymc-extras (``fit_pathfinder``), whose releases require
PyMC < 6.4.
Details: ``docs/bayesian-model.md``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning

from bayes_dgmm._validation import RandomLike
from bayes_dgmm.bayes.backends.flat import (
    compile_flat_logp_grad,
    draws_dataset,
    flatten_point,
    observed_dataset,
)
from bayes_dgmm.bayes.model import transformed_point
from bayes_dgmm.diagnostics.importance import PARETO_K_OK, pareto_k
from bayes_dgmm.model.density import LOG_2PI

Array = NDArray[np.float64]

#: (s, y) pairs of the inverse Hessian approximation (the paper's J)
HISTORY = 6
#: Monte Carlo draws of each iterate's ELBO (the paper's K)
ELBO_DRAWS = 5


def _inverse_hessian(pairs: list[tuple[Array, Array]], d: int) -> Array:
    """The L-BFGS inverse Hessian of ``-log p`` from ``(s, y)`` pairs (oldest first), dense:
    BFGS updates of ``gamma I``, ``gamma = s.y / y.y`` of the newest pair."""
    if not pairs:
        return np.eye(d)
    s_new, y_new = pairs[-1]
    H = np.eye(d) * float(s_new @ y_new / (y_new @ y_new))
    for s, y in pairs:
        rho = 1.0 / float(y @ s)
        Hy = H @ y
        # (I - rho s y^T) H (I - rho y s^T) + rho s s^T, expanded
        H = (
            H
            - rho * (np.outer(s, Hy) + np.outer(Hy, s))
            + (rho**2 * (y @ Hy) + rho) * np.outer(s, s)
        )
    return 0.5 * (H + H.T)


def _gaussian(x: Array, grad: Array, H: Array) -> tuple[Array, Array, float] | None:
    """Mean ``x + H grad``, Cholesky factor and log-determinant of ``N(., H)``; None if
    ``H`` is not positive definite."""
    try:
        L = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return None
    return x + H @ grad, L, 2.0 * float(np.sum(np.log(np.diag(L))))


def _draw(fn: Any, mean: Array, L: Array, logdet: float, u: Array) -> tuple[Array, Array, Array]:
    """Draws ``mean + L u`` with ``log p`` and ``log q`` of each."""
    phi = mean + u @ L.T
    log_q = -0.5 * (np.sum(u**2, axis=1) + logdet + mean.size * LOG_2PI)
    log_p = np.array([float(fn(row)[0]) for row in phi])
    return phi, log_p, log_q


def _lbfgs_path(fn: Any, x0: Array, maxiter: int) -> tuple[list[tuple[Array, Array]], str]:
    """The path: the start and every iterate L-BFGS accepted on ``-log p``, each with its
    gradient of ``log p`` (``(x, grad)`` pairs, start first), and L-BFGS's closing message.

    Its line searches evaluate more points than it accepts; the gradients they computed are
    reused for the accepted ones.
    """
    seen: dict[bytes, Array] = {}  # gradient of log p at every point L-BFGS evaluated

    def negative(x: Array) -> tuple[float, Array]:
        value, grad = fn(x)
        grad = np.asarray(grad, dtype=float)
        seen[x.tobytes()] = grad
        return -float(value), -grad

    iterates: list[tuple[Array, Array]] = [(x0.copy(), np.asarray(fn(x0)[1], dtype=float))]

    def accepted(xk: Array) -> None:
        grad = seen.get(xk.tobytes())
        iterates.append((xk.copy(), np.asarray(fn(xk)[1], dtype=float) if grad is None else grad))

    res = minimize(
        negative,
        x0,
        jac=True,
        method="L-BFGS-B",
        callback=accepted,
        options={"maxiter": int(maxiter), "maxcor": HISTORY},
    )
    return iterates, str(res.message)


def _best_gaussian(
    fn: Any, iterates: list[tuple[Array, Array]], d: int, rng: np.random.Generator
) -> tuple[float, int, Array, Array, float]:
    """``(elbo, iteration, mean, L, logdet)`` of the Gaussian of highest Monte Carlo ELBO
    along the path (:data:`ELBO_DRAWS` draws each), the inverse Hessian of each iterate
    built from the last :data:`HISTORY` pairs that meet the curvature condition."""
    pairs: list[tuple[Array, Array]] = []
    chosen: tuple[float, int, Array, Array, float] | None = None
    for i, (x, g) in enumerate(iterates):
        if i > 0:
            s = x - iterates[i - 1][0]
            y = iterates[i - 1][1] - g  # gradient difference of -log p
            if float(s @ y) > 1e-12 * float(y @ y):  # curvature condition
                pairs = [*pairs, (s, y)][-HISTORY:]
        gauss = _gaussian(x, g, _inverse_hessian(pairs, d))
        if gauss is None:
            continue
        mean, L, logdet = gauss
        _, log_p, log_q = _draw(fn, mean, L, logdet, rng.standard_normal((ELBO_DRAWS, d)))
        elbo = float(np.mean(log_p - log_q)) if np.all(np.isfinite(log_p)) else -math.inf
        if chosen is None or elbo > chosen[0]:
            chosen = (elbo, i, mean, L, logdet)
    if chosen is None:
        raise RuntimeError(
            "method='pathfinder': no iterate of L-BFGS gave a positive definite inverse "
            "Hessian; start from an EM fit (init='em') or use method='laplace'."
        )
    return chosen


def run_pathfinder(
    model: Any,
    start: Mapping[str, Any],
    *,
    draws: int = 1000,
    maxiter: int = 1000,
    random_seed: RandomLike = None,
    progressbar: bool = False,
) -> Any:
    """Single-path Pathfinder of ``model``'s posterior from ``start`` (constrained values).

    Returns a DataTree with ``posterior`` (``draws`` draws of the chosen Gaussian, on every
    variable's own scale), ``observed_data``, ``sample_stats`` (``log_importance_weight``,
    ``log p - log q`` of each draw), and the criterion's figures as posterior attributes
    (``pathfinder_converged``, ``pathfinder_pareto_k``, ``pathfinder_elbo``,
    ``pathfinder_iteration`` of the chosen Gaussian, ``pathfinder_iterations`` of L-BFGS).
    """
    del progressbar  # L-BFGS has no progress bar here
    fn, d = compile_flat_logp_grad(model)
    x0 = flatten_point(model, transformed_point(model, start))
    iterates, message = _lbfgs_path(fn, x0, maxiter)
    rng = np.random.default_rng(random_seed)
    elbo, it, mean, L, logdet = _best_gaussian(fn, iterates, d, rng)
    phi, log_p, log_q = _draw(fn, mean, L, logdet, rng.standard_normal((int(draws), d)))
    k = pareto_k(log_p - log_q)
    converged = k < PARETO_K_OK
    if not converged:
        warnings.warn(
            f"method='pathfinder' did not converge: the Pareto k of its draws' importance "
            f"weights is {k:.3g} (criterion: < {PARETO_K_OK}); q is too far from the "
            "posterior for its draws to be trusted. Try method='advi' or a longer path.",
            ConvergenceWarning,
            stacklevel=3,
        )
    posterior = draws_dataset(model, phi)
    posterior.attrs.update(
        pathfinder_converged=int(converged),
        pathfinder_pareto_k=float(k),
        pathfinder_elbo=float(elbo),
        pathfinder_iteration=int(it),
        pathfinder_iterations=len(iterates),
        pathfinder_lbfgs_message=message,
        pathfinder_criterion=f"Pareto k of the importance weights < {PARETO_K_OK}",
    )
    stats = xr.Dataset({"log_importance_weight": (("chain", "draw"), (log_p - log_q)[None])})
    observed = observed_dataset(model)
    return xr.DataTree.from_dict(
        {"posterior": posterior, "sample_stats": stats, "observed_data": observed}
    )
