"""E-step of the exact EM: the Gaussian model of every path, responsibilities, and the
expected sufficient statistics of the scores, as pure array functions.

Given a path the scores ``Z = (z^(1), ..., z^(L))`` and ``x`` are jointly Gaussian, the
posterior mean of ``Z`` is linear in ``x`` and its covariance does not depend on ``x``, so
every layer's statistics are linear maps of the per-path weighted moments of ``x``
(see :mod:`bayes_dgmm.em.exact`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import cho_solve, solve_triangular

from bayes_dgmm.model.density import LOG_2PI, log_normalize, sym
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.paths import path_table

Array = NDArray[np.float64]

#: A component whose expected count falls below this fraction of N keeps its parameters.
EMPTY_FRACTION = 1e-12
#: Rows per block of the E-step: the (rows, paths) and (rows, sub-paths x J) work arrays
#: are this tall whatever N is, so memory stays flat in N (``chunked_statistics``).
CHUNK_ROWS = 65536


def layer_slices(n_factors: Sequence[int]) -> list[slice]:
    """Position of each layer's scores ``z^(l)`` inside the stacked ``Z``, layer 1 first."""
    ends = np.cumsum([0, *n_factors])
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(ends)]


def score_prior(params: DGMMParams) -> tuple[Array, Array]:
    """Joint prior mean and covariance of ``Z = (z^(1), ..., z^(L))`` for every sub-path.

    Returns
    -------
    mean : (S, D) array
    cov : (S, D, D) array
        Sub-paths ``(g_2, ..., g_L)`` in ``path_table(n_components[1:])`` order, so path ``p``
        of the global GMM uses sub-path ``p // G_1``.
    """
    L = params.n_layers
    means, covs = [], []
    for sub in path_table(params.n_components[1:]):
        m = np.zeros(params.n_factors[-1])
        S = np.eye(params.n_factors[-1])
        for l in range(L - 1, 0, -1):  # 0-based list index l is the paper's layer l + 1
            g = sub[l - 1]
            lam = params.Lambda[l][g]
            r_top = lam.shape[1]
            cross = lam @ S[:r_top]
            new_cov = sym(cross[:, :r_top] @ lam.T) + np.diag(params.psi[l][g])
            S = np.block([[new_cov, cross], [cross.T, S]])
            m = np.concatenate([params.eta[l][g] + lam @ m[:r_top], m])
        means.append(m)
        covs.append(S)
    return np.stack(means), np.stack(covs)


@dataclass(frozen=True)
class PathModel:
    """Everything the E-step needs per path, none of it depending on ``x``.

    Attributes
    ----------
    log_weight : (P,) array, ``log pi_p`` (eq. 4)
    mean : (P, J) array, ``mu_p`` (eq. 5)
    root : (P, J, J) array, upper triangular ``U_p`` with ``U_p^T U_p = Sigma_p^{-1}``
    logdet : (P,) array, ``log det Sigma_p``
    score_mean : (P, D) array, prior mean of ``Z`` on the path
    score_map : (P, D, J) array, ``K_p`` with ``E[Z | x, p] = score_mean_p + K_p (x - mu_p)``
    score_cov : (P, D, D) array, ``Cov(Z | x, p)``
    """

    log_weight: Array
    mean: Array
    root: Array
    logdet: Array
    score_mean: Array
    score_map: Array
    score_cov: Array


def path_model(params: DGMMParams) -> PathModel:
    """Per-path Gaussian of ``x`` and linear posterior of the scores (module docstring).

    The square root of the precision is the triangular factor of the QR decomposition of
    ``[B; E]`` (``B = M^{-1} W^T Psi^{-1}``, ``E = Psi^{-1/2} (I - W B)``, so that
    ``b = B (x - mu)`` and ``e = E (x - mu)`` are the posterior mean of ``f`` and the whitened
    residual): ``|U (x - mu)|^2 = |e|^2 + |b|^2``, the cancellation-free quadratic form of
    :func:`bayes_dgmm.model.density.lowrank_logpdf` (layer 1 of the study data has noise variances
    1e-7 of ``var(x)``), without ever forming ``Sigma^{-1}``.
    """
    G1, R1, J = params.n_components[0], params.n_factors[0], params.n_features
    P = params.n_paths
    g, s = np.arange(P) % G1, np.arange(P) // G1
    prior_mean, prior_cov = score_prior(params)
    chol1 = np.linalg.cholesky(prior_cov[:, :R1, :R1])
    # A = Cov(Z, z1) C1^{-T}; its first R1 rows are C1
    A = np.swapaxes(
        solve_triangular(chol1, prior_cov[:, :R1, :], lower=True, check_finite=False), 1, 2
    )
    cond_cov = prior_cov - A @ np.swapaxes(A, 1, 2)
    lam, psi = params.Lambda[0][g], params.psi[0][g]
    inv_sd = 1.0 / np.sqrt(psi)
    W = lam @ chol1[s]
    Wt = W * inv_sd[:, :, None]
    M = np.swapaxes(Wt, 1, 2) @ Wt + np.eye(R1)
    Lm = np.linalg.cholesky(M)
    B = cho_solve((Lm, True), np.swapaxes(Wt, 1, 2), check_finite=False) * inv_sd[:, None, :]
    E = (np.eye(J) - W @ B) * inv_sd[:, :, None]
    root = np.linalg.qr(np.concatenate([B, E], axis=1), mode="r")
    T = solve_triangular(Lm, np.swapaxes(A[s], 1, 2), lower=True, check_finite=False)
    return PathModel(
        log_weight=np.log(params.path_weights()),
        mean=params.eta[0][g] + np.einsum("pjr,pr->pj", lam, prior_mean[s, :R1]),
        root=root,
        logdet=np.sum(np.log(psi), axis=1)
        + 2.0 * np.sum(np.log(np.diagonal(Lm, axis1=1, axis2=2)), axis=1),
        score_mean=prior_mean[s],
        score_map=A[s] @ B,
        score_cov=sym(cond_cov[s] + np.swapaxes(T, 1, 2) @ T),
    )


def e_step(X: Array, model: PathModel, n_components_1: int) -> tuple[Array, Array]:
    """Log density and path responsibilities of every observation.

    The paths through layer-1 component ``g`` are whitened together: ``[x - eta_g, 1]`` times
    a ``(J + 1, S J)`` matrix holding every ``U_p^T`` and offset, one product per component.

    Parameters
    ----------
    X : (N, J) array
    model : :func:`path_model` of the current parameters
    n_components_1 : int, ``G_1``

    Returns
    -------
    log_norm : (N,) array, ``log f(x_i)`` (its sum is the log-likelihood)
    resp : (N, P) array, path responsibilities
    """
    N, J = X.shape
    P, G1 = model.mean.shape[0], n_components_1
    S = P // G1
    log_prob = np.empty((N, P))
    Xc1 = np.empty((N, J + 1))
    Xc1[:, J] = 1.0
    Y = np.empty((N, S * J))
    for g in range(G1):
        cols = g + G1 * np.arange(S)
        ref = model.mean[g]  # centre at one path's mean; the others differ by an offset
        K = np.empty((J + 1, S, J))
        K[:J] = np.swapaxes(model.root[cols], 1, 2).transpose(1, 0, 2)
        K[J] = -np.einsum("sj,skj->sk", model.mean[cols] - ref, model.root[cols])
        np.subtract(X, ref, out=Xc1[:, :J])
        np.matmul(Xc1, K.reshape(J + 1, S * J), out=Y)
        Y3 = Y.reshape(N, S, J)
        quad = np.einsum("nsk,nsk->ns", Y3, Y3)
        log_prob[:, cols] = model.log_weight[cols] - 0.5 * (J * LOG_2PI + model.logdet[cols] + quad)
    return log_normalize(log_prob)


@dataclass(frozen=True)
class PathStatistics:
    """Expected sufficient statistics per path, centred at the path's weighted means.

    Attributes
    ----------
    n : (P,) array, summed responsibilities
    xbar : (P, J) array, weighted means of ``x``
    cxx : (P, J) array, weighted sums of squares of ``x - xbar``
    zbar : (P, D) array, weighted means of ``E[Z | x]``
    czz : (P, D, D) array, ``sum_i r_ip E[(Z - zbar)(Z - zbar)^T | x_i]``
    cxz1 : (P, J, R_1) array, ``sum_i r_ip (x_i - xbar) E[z^(1) - zbar_1 | x_i]^T``
    """

    n: Array
    xbar: Array
    cxx: Array
    zbar: Array
    czz: Array
    cxz1: Array


def path_statistics(X: Array, resp: Array, model: PathModel, n_factors_1: int) -> PathStatistics:
    """Weighted means and scatter matrices of ``x`` per path, mapped to the scores.

    With ``E[Z | x] = m + K (x - mu)`` and ``C_xx`` the weighted scatter of ``x`` on the path:
    ``zbar = m + K (xbar - mu)``, ``C_zz = K C_xx K^T + n Cov(Z | x)``, ``C_xz = C_xx K^T``.

    Parameters
    ----------
    X : (N, J) array
    resp : (N, P) array, path responsibilities
    model : :func:`path_model` of the parameters that gave ``resp``
    n_factors_1 : int, ``R_1``
    """
    P, J = resp.shape[1], X.shape[1]
    n = resp.sum(axis=0)
    xbar = (resp.T @ X) / np.maximum(n, np.finfo(np.float64).tiny)[:, None]
    scatter = np.empty((P, J, J))
    for p in range(P):
        diff = X - xbar[p]
        scatter[p] = (resp[:, p] * diff.T) @ diff
    scatter = sym(scatter)
    K = model.score_map
    Kt = np.swapaxes(K, 1, 2)
    return PathStatistics(
        n=n,
        xbar=xbar,
        cxx=np.diagonal(scatter, axis1=1, axis2=2).copy(),
        zbar=model.score_mean + np.einsum("pdj,pj->pd", K, xbar - model.mean),
        czz=sym(K @ scatter @ Kt + n[:, None, None] * model.score_cov),
        cxz1=scatter @ Kt[:, :, :n_factors_1],
    )


def combine_statistics(a: PathStatistics, b: PathStatistics, model: PathModel) -> PathStatistics:
    """The statistics of two blocks of rows together, exactly (to rounding).

    The parallel form of the centred moments (Chan, Golub & LeVeque): with
    ``delta = xbar_b - xbar_a`` and ``w = n_a n_b / n``, the scatter of ``x`` gains
    ``w delta delta^T``, so ``cxx`` gains ``w delta^2``, ``cxz1`` gains ``w delta (K_1
    delta)^T`` and ``czz`` gains ``w (K delta)(K delta)^T``; means combine by weights.
    """
    n = a.n + b.n
    safe = np.maximum(n, np.finfo(np.float64).tiny)
    fa, fb = a.n / safe, b.n / safe
    delta = b.xbar - a.xbar
    w = (a.n * b.n / safe)[:, None]
    Kd = np.einsum("pdj,pj->pd", model.score_map, delta)  # (P, D)
    r1 = a.cxz1.shape[2]
    return PathStatistics(
        n=n,
        xbar=fa[:, None] * a.xbar + fb[:, None] * b.xbar,
        cxx=a.cxx + b.cxx + w * delta**2,
        zbar=fa[:, None] * a.zbar + fb[:, None] * b.zbar,
        czz=a.czz + b.czz + w[:, :, None] * np.einsum("pd,pe->pde", Kd, Kd),
        cxz1=a.cxz1 + b.cxz1 + w[:, :, None] * np.einsum("pj,pr->pjr", delta, Kd[:, :r1]),
    )


def chunked_statistics(
    X: Array, model: PathModel, n_components_1: int, n_factors_1: int, chunk_rows: int
) -> tuple[float, PathStatistics]:
    """Log-likelihood and :class:`PathStatistics` of ``X`` computed ``chunk_rows`` rows at a
    time (:func:`e_step` and :func:`path_statistics` on each block, combined by
    :func:`combine_statistics`). With ``N <= chunk_rows`` it is one block, the same
    arithmetic as without chunks."""
    total, stats = 0.0, None
    for start in range(0, X.shape[0], int(chunk_rows)):
        block = X[start : start + int(chunk_rows)]
        log_norm, resp = e_step(block, model, n_components_1)
        total += float(np.sum(log_norm))
        part = path_statistics(block, resp, model, n_factors_1)
        stats = part if stats is None else combine_statistics(stats, part, model)
    assert stats is not None  # X has at least one row
    return total, stats


@dataclass(frozen=True)
class RegressionStatistics:
    """Pooled statistics of the regression of ``y = z^(l-1)`` on ``w = z^(l)`` per component.

    Attributes
    ----------
    n : (G,) array
    ybar : (G, Ry) array
    wbar : (G, Rw) array
    cyy : (G, Ry) array, centred sums of squares of ``y`` (diagonal only)
    cyw : (G, Ry, Rw) array, centred cross products
    cww : (G, Rw, Rw) array, centred second moments of ``w``
    """

    n: Array
    ybar: Array
    wbar: Array
    cyy: Array
    cyw: Array
    cww: Array


def layer_statistics(
    stats: PathStatistics,
    n_factors: Sequence[int],
    layer: int,
    labels: NDArray[np.intp],
    n_comp: int,
) -> RegressionStatistics:
    """Pool the path statistics over the paths through each component of layer ``layer``.

    Parameters
    ----------
    stats : per-path statistics
    n_factors : ``(R_1, ..., R_L)``
    layer : int in 1..L
    labels : (P,) int array, the component of layer ``layer`` on every path
    n_comp : int, ``G_layer``
    """
    blocks = layer_slices(n_factors)
    w_sl = blocks[layer - 1]
    wbar_p = stats.zbar[:, w_sl]
    cww_p = stats.czz[:, w_sl, w_sl]
    if layer == 1:
        ybar_p, cyy_p, cyw_p = stats.xbar, stats.cxx, stats.cxz1
    else:
        y_sl = blocks[layer - 2]
        ybar_p = stats.zbar[:, y_sl]
        cyy_p = np.diagonal(stats.czz[:, y_sl, y_sl], axis1=1, axis2=2)
        cyw_p = stats.czz[:, y_sl, w_sl]
    onehot = (labels[None, :] == np.arange(n_comp)[:, None]).astype(np.float64)
    wn = onehot * stats.n[None, :]  # (G, P)
    n = wn.sum(axis=1)
    n_safe = np.maximum(n, np.finfo(np.float64).tiny)
    ybar = (wn @ ybar_p) / n_safe[:, None]
    wbar = (wn @ wbar_p) / n_safe[:, None]
    # between-path spread around the component means (law of total covariance)
    dy = ybar_p[None, :, :] - ybar[:, None, :]  # (G, P, Ry)
    dw = wbar_p[None, :, :] - wbar[:, None, :]
    cyy = onehot @ cyy_p + np.einsum("gp,gpi,gpi->gi", wn, dy, dy)
    cyw = np.einsum("gp,pij->gij", onehot, cyw_p) + np.einsum("gp,gpi,gpj->gij", wn, dy, dw)
    cww = np.einsum("gp,pij->gij", onehot, cww_p) + np.einsum("gp,gpi,gpj->gij", wn, dw, dw)
    return RegressionStatistics(n=n, ybar=ybar, wbar=wbar, cyy=cyy, cyw=cyw, cww=sym(cww))
