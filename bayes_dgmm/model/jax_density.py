"""The DGMM's marginal log-likelihood and its gradient, hand-written in JAX (float64).

The J-dimensional work is done once per layer-1 component, the rest per path in R_1
dimensions, without the cancellation that tiny noise variances cause; the algebra is in
``docs/jax-density.md``. Parameters are the lists of :class:`~bayes_dgmm.model.params.DGMMParams`
(``pi, eta, Lambda, psi``, layer 1 first), as JAX arrays or numpy arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bayes_dgmm._jax import use_compilation_cache
from bayes_dgmm.model.density import LOG_2PI
from bayes_dgmm.model.paths import path_table

Params = tuple[Sequence[Any], Sequence[Any], Sequence[Any], Sequence[Any]]


def _subpath_moments(eta: Sequence[Any], Lambda: Sequence[Any], psi: Sequence[Any]) -> Any:
    """Mean (S, R_1) and covariance (S, R_1, R_1) of ``z^(1)`` on every sub-path
    ``(g_2, ..., g_L)`` (``path_table`` order of ``n_components[1:]``), top down (eqs. 5-6)."""
    import jax.numpy as jnp

    comps = tuple(int(lam.shape[0]) for lam in Lambda)
    sub = path_table(comps[1:])
    r_top = int(Lambda[-1].shape[2])
    m = jnp.zeros((sub.shape[0], r_top))
    S = jnp.broadcast_to(jnp.eye(r_top), (sub.shape[0], r_top, r_top))
    for l in range(len(comps) - 1, 0, -1):  # 0-based list index of layers L .. 2
        g = sub[:, l - 1]
        lam = Lambda[l][g]
        m = eta[l][g] + jnp.einsum("sdr,sr->sd", lam, m)
        S = lam @ S @ jnp.swapaxes(lam, 1, 2) + jnp.einsum(
            "sd,de->sde", psi[l][g], jnp.eye(lam.shape[1])
        )
    return m, S


def log_prob_paths(
    X: Any, pi: Sequence[Any], eta: Sequence[Any], Lambda: Sequence[Any], psi: Sequence[Any]
) -> Any:
    """``log pi_p + log N(x_i; mu_p, Sigma_p)`` for every row and path, shape (N, P).

    Per layer-1 component ``g``, with ``w = Psi_g^{-1/2} (x - eta_g)`` and the thin QR
    decomposition ``Psi_g^{-1/2} Lambda_g = Q R``: the generalised least-squares scores
    ``zhat = R^{-1} Q^T w``, the residual ``e = w - Q Q^T w`` (formed as a vector, so nothing
    cancels when the noise is tiny) and ``log|A| = 2 log|det R|`` with
    ``A = Lambda_g^T Psi_g^{-1} Lambda_g``. Then for the path through ``g`` and sub-path ``s``
    (``z^(1) ~ N(m_s, S_s)``) the density is exactly
    ``-1/2 [(J - R_1) log 2 pi + log|Psi_g| + log|A| + |e|^2] + log N(zhat; m_s, A^{-1} + S_s)``.
    """
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular

    J, R1 = int(Lambda[0].shape[1]), int(Lambda[0].shape[2])
    comps = tuple(int(lam.shape[0]) for lam in Lambda)
    table = path_table(comps)
    log_w = jnp.zeros(table.shape[0])
    for l in range(len(comps)):
        log_w = log_w + jnp.log(pi[l])[table[:, l]]
    if len(comps) == 1:
        m, S = jnp.zeros((1, R1)), jnp.eye(R1)[None]
    else:
        m, S = _subpath_moments(eta, Lambda, psi)
    log_psi = jnp.log(psi[0])  # (G1, J)
    inv_sd = jnp.exp(-0.5 * log_psi)
    Q, R = jnp.linalg.qr(Lambda[0] * inv_sd[:, :, None])  # (G1, J, R1), (G1, R1, R1)
    W = (X[None] - eta[0][:, None, :]) * inv_sd[:, None, :]  # (G1, N, J)
    C = W @ Q  # (G1, N, R1)
    E = W - C @ jnp.swapaxes(Q, 1, 2)
    ee = jnp.sum(E**2, axis=-1)  # (G1, N)
    # the R_1 x R_1 triangular factors are inverted explicitly (R_1 right-hand sides, not
    # N): the N-row work is then matrix products, which XLA runs many times faster than
    # triangular solves with N right-hand sides
    R_inv = solve_triangular(R, jnp.broadcast_to(jnp.eye(R1), R.shape), lower=False)
    zhat = C @ jnp.swapaxes(R_inv, 1, 2)  # (G1, N, R1)
    diag_r = jnp.abs(jnp.diagonal(R, axis1=1, axis2=2))
    logdet_a = 2.0 * jnp.sum(jnp.log(diag_r), axis=-1)  # (G1,)
    A_inv = R_inv @ jnp.swapaxes(R_inv, 1, 2)  # (G1, R1, R1), tiny when the noise is
    V = A_inv[None] + S[:, None]  # (S, G1, R1, R1)
    LV = jnp.linalg.cholesky(V)
    LV_inv = solve_triangular(LV, jnp.broadcast_to(jnp.eye(R1), LV.shape), lower=True)
    diff = zhat[None] - m[:, None, None, :]  # (S, G1, N, R1)
    y = diff @ jnp.swapaxes(LV_inv, -1, -2)  # (S, G1, N, R1)
    quad = jnp.sum(y**2, axis=-1)  # (S, G1, N)
    logdet_v = 2.0 * jnp.sum(jnp.log(jnp.diagonal(LV, axis1=-2, axis2=-1)), axis=-1)
    const = jnp.sum(log_psi, axis=-1) + logdet_a  # (G1,)
    logpdf = -0.5 * (
        J * LOG_2PI + const[None, :, None] + ee[None] + logdet_v[:, :, None] + quad
    )  # (S, G1, N); path p = g + G1 * s
    logpdf = logpdf.reshape(-1, X.shape[0])
    return logpdf.T + log_w[None, :]


def log_likelihood(
    X: Any, pi: Sequence[Any], eta: Sequence[Any], Lambda: Sequence[Any], psi: Sequence[Any]
) -> Any:
    """Total log-likelihood ``sum_i log sum_p exp(log_prob_paths)`` (a JAX scalar)."""
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    return jnp.sum(logsumexp(log_prob_paths(X, pi, eta, Lambda, psi), axis=1))


@functools.lru_cache(maxsize=8)
def compiled_value_and_grad(
    n_components: tuple[int, ...], n_factors: tuple[int, ...], n_features: int
) -> Callable[..., Any]:
    """Jitted ``(X, pi, eta, Lambda, psi) -> (log-likelihood, gradient w.r.t. the four
    parameter lists)`` for one architecture, compiled once per process (and read from JAX's
    disk cache after the first process, :func:`bayes_dgmm.em.newton.use_compilation_cache`)."""
    import jax

    use_compilation_cache()
    del n_components, n_factors, n_features  # the shapes key the cache; jit specialises on them
    return jax.jit(jax.value_and_grad(log_likelihood, argnums=(1, 2, 3, 4)))


def value_and_grad(X: Any, params: Any) -> tuple[float, Params]:
    """Log-likelihood of ``X`` under ``params`` (a DGMMParams) and its gradient with respect to
    ``pi``, ``eta``, ``Lambda`` and ``psi`` (lists like the parameters', numpy float64)."""
    import jax

    fn = compiled_value_and_grad(
        tuple(params.n_components), tuple(params.n_factors), int(params.n_features)
    )
    with jax.enable_x64(True):
        value, grads = fn(
            np.asarray(X, dtype=np.float64),
            *(list(getattr(params, k)) for k in ("pi", "eta", "Lambda", "psi")),
        )
        out = tuple([np.asarray(a, dtype=np.float64) for a in g] for g in grads)
    return float(value), out  # type: ignore[return-value]


def log_likelihood_rows(
    X: Any, pi: Sequence[Any], eta: Sequence[Any], Lambda: Sequence[Any], psi: Sequence[Any]
) -> Any:
    """Marginal log density of every row of ``X``, shape (N,) (a JAX array)."""
    from jax.scipy.special import logsumexp

    return logsumexp(log_prob_paths(X, pi, eta, Lambda, psi), axis=1)


def rows_vjp(X: Any, cotangent: Any, *params: Sequence[Any]) -> Any:
    """``sum_i cotangent_i d log p(x_i) / d params``: the gradient with respect to
    ``(pi, eta, Lambda, psi)`` of the rows' log densities weighted by ``cotangent``."""
    import jax

    _, pullback = jax.vjp(lambda *p: log_likelihood_rows(X, *p), *params)
    return pullback(cotangent)


@functools.lru_cache(maxsize=8)
def compiled_rows(n_components: tuple[int, ...], n_factors: tuple[int, ...]) -> Any:
    """Jitted :func:`log_likelihood_rows` and :func:`rows_vjp`, both taking the parameters
    as the four per-layer lists; one pair per architecture and process (and JAX's disk cache)."""
    import jax

    use_compilation_cache()
    del n_components, n_factors  # the shapes key the cache; jit specialises on them
    return jax.jit(log_likelihood_rows), jax.jit(rows_vjp)
