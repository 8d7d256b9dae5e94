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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import LinAlgError

from bayes_dgmm._jax import use_compilation_cache
from bayes_dgmm.em.estep import e_step, path_model
from bayes_dgmm.em.vector import layout, pack, params_layout, unpack
from bayes_dgmm.model.density import LOG_2PI
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
    """Length of :func:`bayes_dgmm.em.vector.pack` of ``params``."""
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

    q = _q_function(n_components, n_factors, n_features)
    q_path = _q_path_function(n_factors, n_features)
    q_weights = _q_weights_function(n_components)
    idx, weight_idx = _local_indices(n_components, n_factors, n_features)

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


def _q_function(
    n_components: tuple[int, ...], n_factors: tuple[int, ...], n_features: int
) -> Callable[..., Any]:
    """``Q(theta; n, xbar, scatter)`` in JAX, from the per-path counts, means and scatters
    of the responsibilities (:func:`_statistics`)."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_solve

    table = path_table(n_components)
    blocks = layout(n_components, n_factors, n_features)
    R_top = n_factors[-1]

    def layers(theta: Any) -> list[tuple[Any, Any, Any, Any]]:
        # vector.unpack in JAX (traceable), on the same layout
        out = []
        for b in blocks:
            logw = theta[b.log_weights]
            eta = theta[b.eta].reshape(b.G, b.D)
            lam = theta[b.Lambda].reshape(b.G, b.D, b.R)
            psi = jnp.exp(theta[b.log_psi].reshape(b.G, b.D))
            out.append((logw - jax.scipy.special.logsumexp(logw), eta, lam, psi))
        return out

    def q(theta: Any, n: Any, xbar: Any, scatter: Any) -> Any:
        par = layers(theta)
        m = jnp.zeros((table.shape[0], R_top))
        C = jnp.broadcast_to(jnp.eye(R_top), (table.shape[0], R_top, R_top))
        log_w = jnp.zeros(table.shape[0])
        # top-down: z^(l-1) = eta + Lambda z^(l) + u, per path (J-dimensional work per path:
        # the path covariances are small dense matrices here, and autodiff needs them whole)
        for l in reversed(range(len(blocks))):
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
        return jnp.sum(n * log_w) - 0.5 * jnp.sum(n * (n_features * LOG_2PI + logdet) + tr)

    return q


def _q_path_function(n_factors: tuple[int, ...], n_features: int) -> Callable[..., Any]:
    """One path's Gaussian term of ``Q`` in the parameters of its components (weights
    aside), laid out as :func:`_local_indices` gathers them."""
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_solve

    dims = (n_features, *n_factors)

    def q_path(local: Any, n: Any, xbar: Any, scatter: Any) -> Any:
        m = jnp.zeros(dims[-1])
        C = jnp.eye(dims[-1])
        end = local.shape[0]
        for l in reversed(range(len(n_factors))):
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
        return -0.5 * (n * (n_features * LOG_2PI + logdet) + tr)

    return q_path


def _q_weights_function(n_components: tuple[int, ...]) -> Callable[..., Any]:
    """The weights' term of ``Q`` in the log weights of every layer."""
    import jax
    import jax.numpy as jnp

    table = path_table(n_components)

    def q_weights(logw: Any, n: Any) -> Any:
        log_w = jnp.zeros(table.shape[0])
        i = 0
        for l in range(len(n_components)):
            G = n_components[l]
            lw = logw[i : i + G]
            i += G
            log_w = log_w + (lw - jax.scipy.special.logsumexp(lw))[table[:, l]]
        return jnp.sum(n * log_w)

    return q_weights


def _local_indices(
    n_components: tuple[int, ...], n_factors: tuple[int, ...], n_features: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Positions in the :func:`bayes_dgmm.em.vector.pack` vector of every path's parameters
    (per layer, bottom up: ``eta``, ``Lambda``, ``log psi`` of the path's component), shape
    (P, M), and of the log weights of every layer."""
    table = path_table(n_components)
    per_path: list[list[NDArray[np.intp]]] = [[] for _ in range(table.shape[0])]
    weights: list[NDArray[np.intp]] = []
    for l, b in enumerate(layout(n_components, n_factors, n_features)):
        D, R = b.D, b.R
        weights.append(np.arange(b.log_weights.start, b.log_weights.stop))
        eta0, lam0, psi0 = b.eta.start, b.Lambda.start, b.log_psi.start
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
    for l, b in enumerate(params_layout(params)):
        with np.errstate(divide="ignore"):
            lower[b.log_psi] = np.log(np.broadcast_to(psi_floor[l], params.psi[l].shape)).ravel()
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
            model = _quadratic_model(theta, g, H, lower)
            decrement = model.decrement
            if not math.isfinite(damping):
                damping = INITIAL_DAMPING * model.scale
            logger.debug(
                "%s Newton %d: %.4f, decrement %.3g, damping %.1e, %d at their bound",
                label,
                n_hessians,
                value,
                decrement,
                damping / model.scale,
                int(np.count_nonzero(~model.free)),
            )
            if decrement <= tol * N or n_hessians > max_iter:
                break
            step = _damped_step(X, params, theta, model, lower, value, damping)
            damping = step.damping
            if step.found is None:  # no damping gains: the quadratic model is no guide here
                break
            theta, params = step.theta, step.params
            value, resp = step.found
            history.append(value)
            damping = max(damping / DAMPING_DOWN, 1e-14 * model.scale)
    return NewtonResult(params, history, decrement, n_hessians)


@dataclass(frozen=True)
class _Quadratic:
    """The saddle-free quadratic model at ``theta``: the free coordinates, the eigenvectors
    ``V`` and absolute eigenvalues ``absl`` of the negative Hessian on them, the gradient in
    that basis ``gv``, the largest eigenvalue and the Newton decrement."""

    free: NDArray[np.bool_]
    V: Array
    absl: Array
    gv: Array
    scale: float
    decrement: float


def _quadratic_model(theta: Array, g: Array, H: Array, lower: Array) -> _Quadratic:
    # noise variances held at their floor by a gradient that pushes them lower are
    # fixed (the active set of the bound); the steps are in the other coordinates
    free = ~((theta <= lower + BOUND_SLACK) & (g < 0.0))
    H_free = H[np.ix_(free, free)]
    lam, V = np.linalg.eigh(-0.5 * (H_free + H_free.T))
    absl = np.abs(lam)
    scale = float(np.max(absl))
    gv = V.T @ g[free]
    decrement = 0.5 * float(np.sum(gv**2 / np.maximum(absl, EIGEN_FLOOR * scale)))
    return _Quadratic(free, V, absl, gv, scale, decrement)


@dataclass(frozen=True)
class _Step:
    """Outcome of :func:`_damped_step`: the accepted point (``found`` is its log-likelihood
    and responsibilities, None when no damping gained) and the damping reached."""

    theta: Array
    params: DGMMParams
    found: tuple[float, Array] | None
    damping: float


def _damped_step(
    X: Array,
    params: DGMMParams,
    theta: Array,
    model: _Quadratic,
    lower: Array,
    value: float,
    damping: float,
) -> _Step:
    """Levenberg-Marquardt steps of growing damping until the log-likelihood rises above
    ``value`` (at most :data:`MAX_BACKTRACKS`), each projected onto the bounds."""
    for _ in range(MAX_BACKTRACKS):
        candidate = theta.copy()
        candidate[model.free] += model.V @ (model.gv / (model.absl + damping))
        candidate = np.maximum(candidate, lower)  # a projected step
        trial = unpack(candidate, params)
        found = _loglik(X, trial)
        if found is not None and found[0] > value:
            return _Step(candidate, trial, found, damping)
        damping *= DAMPING_UP
    return _Step(theta, params, None, damping)
