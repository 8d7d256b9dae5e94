"""Newton steps that finish an EM where it crawls, and measure its convergence.

EM treats both the path labels and the latent scores as missing; the scores carry most of
the missing information on data like the study's, so the latent frames move by a few nats per
hundred iterations. Here only the labels are missing: at the current responsibilities the
expected complete-data log-likelihood of the labels, ``Q(theta) = sum_p [n_p log w_p +
sum_i r_ip log N(x_i; mu_p, Sigma_p)]``, has the gradient of the marginal log-likelihood
(Fisher's identity) and a Hessian that differs from it only by the labels' missing information.
Each step is a damped saddle-free Newton step on that Hessian (eigenvalues taken in absolute
value, Levenberg-Marquardt damping), accepted only when the marginal log-likelihood rises.
The method and its measurements are in ``docs/recover.md``.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import LinAlgError

from bayes_dgmm._jax import use_compilation_cache
from bayes_dgmm.em.driver import pack, unpack
from bayes_dgmm.em.estep import e_step, path_model
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.paths import path_table

Array = NDArray[np.float64]

logger = logging.getLogger(__name__)

#: Newton steps are used up to this many free parameters: the Hessian is dense, so its
#: eigen-decomposition costs ``O(n^3)`` (0.3 s at 1000 parameters).
MAX_PARAMETERS = 4000
#: Most Newton iterations (each one Hessian) and most damping increases per iteration.
MAX_NEWTON_ITER = 120
MAX_BACKTRACKS = 8
#: Levenberg-Marquardt damping: its start relative to the largest eigenvalue, its factor on a
#: refused step and its divisor after an accepted one
INITIAL_DAMPING = 1e-8
DAMPING_UP = 4.0
DAMPING_DOWN = 3.0
#: Eigenvalues below this fraction of the largest one are floored to it in the Newton
#: decrement: the likelihood is exactly flat along the model's invariances (rotations of the
#: top layer's scores, a scale and shift of every intermediate layer's), where the gradient is
#: zero up to rounding.
EIGEN_FLOOR = 1e-10
#: A log noise variance this close to its floor is at the bound
BOUND_SLACK = 1e-6


@dataclass
class NewtonResult:
    """Outcome of :func:`newton_finish`.

    Attributes
    ----------
    params : the final parameters
    log_likelihood : the log-likelihood at the start and after every accepted step
    decrement : the Newton decrement at ``params``, ``g^T |H|^{-1} g / 2`` in nats: the gain
        the quadratic model still predicts (``nan`` when not measured)
    n_hessians : Hessians computed
    """

    params: DGMMParams
    log_likelihood: list[float]
    decrement: float
    n_hessians: int


def n_parameters(params: DGMMParams) -> int:
    """Length of :func:`bayes_dgmm.em.driver.pack` of ``params``."""
    return int(pack(params).shape[0])


@functools.lru_cache(maxsize=8)
def _compiled(
    n_components: tuple[int, ...], n_factors: tuple[int, ...], n_features: int
) -> tuple[Any, Any]:
    """Jitted gradient and Hessian of ``Q`` for one architecture (compiled once per process,
    read from JAX's disk cache where an earlier process compiled it)."""
    import jax

    use_compilation_cache()
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_solve

    table = path_table(n_components)
    dims = (n_features, *n_factors)
    L = len(n_components)

    def layers(theta: Any) -> list[tuple[Any, Any, Any, Any]]:
        # driver.unpack in JAX (traceable): the same layout as driver.pack
        out = []
        i = 0
        for l in range(L):
            G, D, R = n_components[l], dims[l], dims[l + 1]
            logw = theta[i : i + G]
            i += G
            eta = theta[i : i + G * D].reshape(G, D)
            i += G * D
            lam = theta[i : i + G * D * R].reshape(G, D, R)
            i += G * D * R
            psi = jnp.exp(theta[i : i + G * D].reshape(G, D))
            i += G * D
            out.append((logw - jax.scipy.special.logsumexp(logw), eta, lam, psi))
        return out

    def q(theta: Any, n: Any, xbar: Any, scatter: Any) -> Any:
        par = layers(theta)
        R_top = dims[-1]
        m = jnp.zeros((table.shape[0], R_top))
        C = jnp.broadcast_to(jnp.eye(R_top), (table.shape[0], R_top, R_top))
        log_w = jnp.zeros(table.shape[0])
        # top-down: z^(l-1) = eta + Lambda z^(l) + u, per path (J-dimensional work per path:
        # the path covariances are small dense matrices here, and autodiff needs them whole)
        for l in reversed(range(L)):
            logw, eta, lam, psi = par[l]
            g = table[:, l]
            log_w = log_w + logw[g]
            m = eta[g] + jnp.einsum("pdr,pr->pd", lam[g], m)
            C = lam[g] @ C @ jnp.swapaxes(lam[g], 1, 2) + jax.vmap(jnp.diag)(psi[g])
        chol = jnp.linalg.cholesky(C)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
        d = xbar - m
        M = scatter + n[:, None, None] * d[:, :, None] * d[:, None, :]
        tr = jnp.trace(jax.vmap(lambda c, b: cho_solve((c, True), b))(chol, M), axis1=1, axis2=2)
        return jnp.sum(n * log_w) - 0.5 * jnp.sum(
            n * (n_features * math.log(2 * math.pi) + logdet) + tr
        )

    idx, weight_idx = _local_indices(n_components, n_factors, n_features)

    def q_path(local: Any, n: Any, xbar: Any, scatter: Any) -> Any:
        # one path's Gaussian term of q in the parameters of its components (weights aside)
        m = jnp.zeros(dims[-1])
        C = jnp.eye(dims[-1])
        end = local.shape[0]
        for l in reversed(range(L)):
            D, R = dims[l], dims[l + 1]
            start = end - (D + D * R + D)
            eta = local[start : start + D]
            lam = local[start + D : start + D + D * R].reshape(D, R)
            psi = jnp.exp(local[start + D + D * R : end])
            end = start
            m = eta + lam @ m
            C = lam @ C @ lam.T + jnp.diag(psi)
        chol = jnp.linalg.cholesky(C)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
        d = xbar - m
        M = scatter + n * jnp.outer(d, d)
        tr = jnp.trace(cho_solve((chol, True), M))
        return -0.5 * (n * (n_features * math.log(2 * math.pi) + logdet) + tr)

    def q_weights(logw: Any, n: Any) -> Any:
        log_w = jnp.zeros(table.shape[0])
        i = 0
        for l in range(L):
            G = n_components[l]
            lw = logw[i : i + G]
            i += G
            log_w = log_w + (lw - jax.scipy.special.logsumexp(lw))[table[:, l]]
        return jnp.sum(n * log_w)

    def hessian(theta: Any, n: Any, xbar: Any, scatter: Any) -> Any:
        # q is a sum of one term per path, each in the few hundred parameters of the path's
        # components, and of the weights' term: their Hessians, scattered into place, cost a
        # fraction of differentiating q whole (jax.hessian(q)) in all its parameters
        local = jax.vmap(jax.hessian(q_path))(theta[idx], n, xbar, scatter)
        K = theta.shape[0]
        H = jnp.zeros((K, K)).at[idx[:, :, None], idx[:, None, :]].add(local)
        hw = jax.hessian(q_weights)(theta[weight_idx], n)
        return H.at[weight_idx[:, None], weight_idx[None, :]].add(hw)

    return jax.jit(jax.grad(q)), jax.jit(hessian)


def _local_indices(
    n_components: tuple[int, ...], n_factors: tuple[int, ...], n_features: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Positions in the :func:`bayes_dgmm.em.driver.pack` vector of every path's parameters
    (per layer, bottom up: ``eta``, ``Lambda``, ``log psi`` of the path's component), shape
    (P, M), and of the log weights of every layer."""
    table = path_table(n_components)
    dims = (n_features, *n_factors)
    per_path: list[list[NDArray[np.intp]]] = [[] for _ in range(table.shape[0])]
    weights: list[NDArray[np.intp]] = []
    i = 0
    for l, G in enumerate(n_components):
        D, R = dims[l], dims[l + 1]
        weights.append(np.arange(i, i + G))
        i += G
        eta0, lam0, psi0 = i, i + G * D, i + G * D + G * D * R
        i = psi0 + G * D
        for p, g in enumerate(table[:, l]):
            per_path[p] += [
                np.arange(eta0 + g * D, eta0 + (g + 1) * D),
                np.arange(lam0 + g * D * R, lam0 + (g + 1) * D * R),
                np.arange(psi0 + g * D, psi0 + (g + 1) * D),
            ]
    idx = np.array([np.concatenate(parts) for parts in per_path], dtype=np.intp)
    return idx, np.concatenate(weights).astype(np.intp)


def _statistics(X: Array, resp: Array) -> tuple[Array, Array, Array]:
    n = resp.sum(axis=0)
    xbar = (resp.T @ X) / np.maximum(n, 1e-300)[:, None]
    scatter = np.empty((resp.shape[1], X.shape[1], X.shape[1]))
    for p in range(resp.shape[1]):
        Xc = X - xbar[p]
        scatter[p] = (Xc * resp[:, p, None]).T @ Xc
    return n, xbar, scatter


def _lower_bounds(params: DGMMParams, psi_floor: list[Array] | None) -> Array:
    """Lower bounds on the :func:`pack` vector: ``log psi_floor`` on the log noise variances
    (``-inf`` where the floor is 0), ``-inf`` elsewhere."""
    lower = np.full(pack(params).shape[0], -np.inf)
    if psi_floor is None:
        return lower
    i = 0
    for l in range(params.n_layers):
        G = params.n_components[l]
        i += G + params.eta[l].size + params.Lambda[l].size
        size = params.psi[l].size
        with np.errstate(divide="ignore"):
            lower[i : i + size] = np.log(np.broadcast_to(psi_floor[l], params.psi[l].shape)).ravel()
        i += size
    return lower


def _loglik(X: Array, params: DGMMParams) -> tuple[float, Array] | None:
    try:
        log_norm, resp = e_step(X, path_model(params), params.n_components[0])
    except (LinAlgError, FloatingPointError, ValueError):
        return None
    value = float(np.sum(log_norm))
    return (value, resp) if math.isfinite(value) else None


def newton_finish(
    X: Array,
    params: DGMMParams,
    *,
    tol: float,
    max_iter: int = MAX_NEWTON_ITER,
    psi_floor: list[Array] | None = None,
    label: str = "",
) -> NewtonResult:
    """Damped saddle-free Newton iterations from ``params`` until the Newton decrement is at
    most ``tol * N`` nats (module docstring).

    Parameters
    ----------
    X : (N, J) array
    params : starting values (an EM's last iterate)
    tol : per observation
    max_iter : most Newton iterations
    psi_floor : per layer, the smallest noise variances allowed (steps are projected onto
        them); None: no floor

    Returns
    -------
    NewtonResult
    """
    import jax

    N = X.shape[0]
    grad_fn, hess_fn = _compiled(
        tuple(params.n_components), tuple(params.n_factors), int(params.n_features)
    )
    lower = _lower_bounds(params, psi_floor)
    theta = pack(params)
    if np.any(theta < lower):  # a start below the floor is projected onto it
        theta = np.maximum(theta, lower)
        params = unpack(theta, params)
    first = _loglik(X, params)
    if first is None:
        return NewtonResult(params, [], math.nan, 0)
    value, resp = first
    history = [value]
    decrement = math.nan
    damping = math.nan
    n_hessians = 0
    with jax.enable_x64(True):
        while True:
            n, xbar, scatter = _statistics(X, resp)
            g = np.asarray(grad_fn(theta, n, xbar, scatter), dtype=np.float64)
            H = np.asarray(hess_fn(theta, n, xbar, scatter), dtype=np.float64)
            n_hessians += 1
            if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
                decrement = math.nan  # not measurable here: the run is not called converged
                break
            # noise variances held at their floor by a gradient that pushes them lower are
            # fixed (the active set of the bound); the steps are in the other coordinates
            free = ~((theta <= lower + BOUND_SLACK) & (g < 0.0))
            H_free = H[np.ix_(free, free)]
            lam, V = np.linalg.eigh(-0.5 * (H_free + H_free.T))
            absl = np.abs(lam)
            scale = float(np.max(absl))
            gv = V.T @ g[free]
            decrement = 0.5 * float(np.sum(gv**2 / np.maximum(absl, EIGEN_FLOOR * scale)))
            if not math.isfinite(damping):
                damping = INITIAL_DAMPING * scale
            logger.debug(
                "%s Newton %d: %.4f, decrement %.3g, damping %.1e, %d at their bound",
                label,
                n_hessians,
                value,
                decrement,
                damping / scale,
                int(np.count_nonzero(~free)),
            )
            if decrement <= tol * N or n_hessians > max_iter:
                break
            found = None
            for _ in range(MAX_BACKTRACKS):
                candidate = theta.copy()
                candidate[free] += V @ (gv / (absl + damping))
                candidate = np.maximum(candidate, lower)  # a projected step
                trial = unpack(candidate, params)
                found = _loglik(X, trial)
                if found is not None and found[0] > value:
                    break
                found = None
                damping *= DAMPING_UP
            if found is None:  # no damping gains: the quadratic model is no guide here
                break
            theta, params = candidate, trial
            value, resp = found
            history.append(value)
            damping = max(damping / DAMPING_DOWN, 1e-14 * scale)
    return NewtonResult(params, history, decrement, n_hessians)
