"""Exact EM for the DGMM: E-step moments and closed-form M-step, as pure array functions.

Given a path ``p = (g_1, ..., g_L)`` the scores ``Z = (z^(1), ..., z^(L))`` (stacked, dimension
``D = R_1 + ... + R_L``) and ``x`` are jointly Gaussian: ``z^(L) ~ N(0, I)`` and
``z^(l-1) = eta^(l) + Lambda^(l) z^(l) + u^(l)`` (the generative process behind eqs. 3-6).
The prior of ``Z`` depends only on the sub-path ``(g_2, ..., g_L)``; ``x`` depends on ``Z``
through ``z^(1)`` only. Writing ``z^(1) = m_1 + C_1 f`` with ``C_1 C_1^T`` the prior covariance
of ``z^(1)`` and ``f ~ N(0, I)``, the posterior of ``Z`` given ``x`` and the path is

    E[Z | x]   = m + A b(x),                 A = Cov(Z, z^(1)) C_1^{-T}    (D, R_1)
    Cov(Z | x) = (S - A A^T) + A M^{-1} A^T,  M = I + W^T Psi_1^{-1} W,  W = Lambda^(1) C_1

where ``b(x) = M^{-1} W^T Psi_1^{-1} (x - mu_p)`` is the posterior mean of ``f`` (the ``b`` of
:func:`bayes_dgmm.model.density.lowrank_logpdf`). The posterior mean is *linear in x* and the
posterior covariance does not depend on ``x``, so every expected sufficient statistic of every
layer is a linear map of the per-path weighted mean and scatter matrix of ``x``: an iteration
costs about one E-step and one M-step of a full-covariance GMM with ``P`` components.

The M-step regresses ``z^(l-1)`` on ``[1, z^(l)]`` per layer and component (``z^(0) = x``),
with the regressor centred at its weighted mean (the raw Gram matrix is ill-conditioned when
``|E z| >> sd(z)``) and Cholesky solves.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import LinAlgError, cho_solve, cholesky, solve_triangular

from bayes_dgmm.em.driver import Step, StepOutput
from bayes_dgmm.model.density import LOG_2PI, log_normalize, sym
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.paths import path_table

Array = NDArray[np.float64]

#: A component whose expected count falls below this fraction of N keeps its parameters.
EMPTY_FRACTION = 1e-12


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


def regression_update(
    n: float, ybar: Array, wbar: Array, cyy: Array, cyw: Array, cww: Array, psi_floor: Array
) -> tuple[Array, Array, Array]:
    """Closed-form M-step of one component: weighted regression of ``y`` on ``[1, w]``.

    ``Lambda = C_yw C_ww^{-1}`` (Cholesky solve), ``eta = ybar - Lambda wbar`` and
    ``psi = diag(C_yy - Lambda C_wy) / n``, floored at ``psi_floor``.

    Parameters
    ----------
    n : float, expected count (> 0)
    ybar : (Ry,) ; wbar : (Rw,) ; cyy : (Ry,) ; cyw : (Ry, Rw) ; cww : (Rw, Rw)
    psi_floor : (Ry,) array, smallest allowed noise variance

    Returns
    -------
    eta (Ry,), Lambda (Ry, Rw), psi (Ry,)

    Raises
    ------
    scipy.linalg.LinAlgError if ``cww`` is not positive definite.
    """
    Lc = cholesky(cww, lower=True, check_finite=False)
    Lambda = cho_solve((Lc, True), cyw.T, check_finite=False).T
    eta = ybar - Lambda @ wbar
    psi = (cyy - np.sum(Lambda * cyw, axis=1)) / n
    return eta, Lambda, np.maximum(psi, psi_floor)


def variance_floor(var: Array, reg_psi: float) -> Array:
    """``reg_psi`` times the variance of each coordinate (a unit scale where it is 0)."""
    scale = np.where(var > 0, var, 1.0)
    return reg_psi * scale


def m_step(
    stats: PathStatistics, params: DGMMParams, reg_psi: float, var_x: Array
) -> tuple[DGMMParams, list[tuple[int, int]]]:
    """Closed-form maximisation of the expected complete log-likelihood.

    The expected complete log-likelihood separates into one term per layer and component
    (the regressions) plus the weights, each maximised exactly, so the log-likelihood never
    decreases. A component with expected count below ``EMPTY_FRACTION * N`` (or a
    non-positive-definite regressor moment) keeps its previous parameters, which keeps the
    step monotone. The noise variances are floored at ``reg_psi`` times the variance of
    ``z^(l-1)`` (of ``x``, ``var_x``, in layer 1).

    Returns
    -------
    params : the new parameters
    empty : list of (layer, component) pairs (1-based layer, 0-based component) that kept
        their previous parameters
    """
    N = float(stats.n.sum())
    table = params.paths
    pi, eta, Lambda, psi = [], [], [], []
    empty: list[tuple[int, int]] = []
    for l in range(1, params.n_layers + 1):
        G = params.n_components[l - 1]
        rs = layer_statistics(stats, params.n_factors, l, table[:, l - 1], G)
        if l == 1:
            floor = variance_floor(var_x, reg_psi)
        else:
            total_var = (rs.cyy.sum(axis=0) + rs.n @ (rs.ybar - rs.n @ rs.ybar / N) ** 2) / N
            floor = variance_floor(total_var, reg_psi)
        eta_l = params.eta[l - 1].copy()
        lam_l = params.Lambda[l - 1].copy()
        psi_l = params.psi[l - 1].copy()
        for g in range(G):
            if rs.n[g] < EMPTY_FRACTION * N:
                empty.append((l, g))
                continue
            try:
                eta_l[g], lam_l[g], psi_l[g] = regression_update(
                    rs.n[g], rs.ybar[g], rs.wbar[g], rs.cyy[g], rs.cyw[g], rs.cww[g], floor
                )
            except LinAlgError:
                empty.append((l, g))
        tiny = np.finfo(np.float64).tiny
        w = np.maximum(rs.n, tiny * N)
        pi.append(w / w.sum())
        eta.append(eta_l)
        Lambda.append(lam_l)
        psi.append(psi_l)
    return DGMMParams(pi=pi, eta=eta, Lambda=Lambda, psi=psi), empty


# ---------------------------------------------------------------------- identifiability
CONSTRAINTS = ("lower_triangular", "orthonormal", "diagonal")


def rotate_loadings(Lambda: Array, psi: Array, constraint: str) -> Array:
    """Rotate every component's loadings ``Lambda_g -> Lambda_g Q_g`` (``Q_g`` orthogonal).

    Parameters
    ----------
    Lambda : (G, R_in, R) array
    psi : (G, R_in) array, noise variances (used by ``"diagonal"``)
    constraint : ``"lower_triangular"``: upper ``R x R`` block lower triangular with a
        positive diagonal (an LQ decomposition); ``"orthonormal"``: orthogonal columns
        (``Lambda^T Lambda`` diagonal) ordered by decreasing norm, i.e. variance explained;
        ``"diagonal"``: ``Lambda^T Psi^{-1} Lambda`` diagonal, decreasing. The last two fix
        each column's sign so that its largest-magnitude entry is positive.

    Returns
    -------
    (G, R_in, R) array with ``Lambda_g Lambda_g^T`` unchanged.
    """
    out = np.empty_like(Lambda)
    for g, lam in enumerate(Lambda):
        if constraint == "lower_triangular":
            q, r = np.linalg.qr(lam.T)  # lam = r^T q^T, so lam q = r^T is lower triangular
            sign = np.where(np.diag(r) < 0, -1.0, 1.0)
            out[g] = np.tril((lam @ q) * sign)  # exact zeros above the diagonal
        else:
            scale = 1.0 / np.sqrt(psi[g]) if constraint == "diagonal" else np.ones(lam.shape[0])
            _, _, vt = np.linalg.svd(lam * scale[:, None], full_matrices=False)
            rot = lam @ vt.T
            idx = np.argmax(np.abs(rot), axis=0)
            sign = np.where(rot[idx, np.arange(rot.shape[1])] < 0, -1.0, 1.0)
            out[g] = rot * sign
    return out


def apply_constraint(params: DGMMParams, constraint: str) -> DGMMParams:
    """Rotate the loadings of every layer and component (see :func:`rotate_loadings`)."""
    return DGMMParams(
        pi=params.pi,
        eta=params.eta,
        Lambda=[
            rotate_loadings(lam, psi, constraint)
            for lam, psi in zip(params.Lambda, params.psi, strict=True)
        ],
        psi=params.psi,
    )


# ---------------------------------------------------------------------- parameter expansion
# The latent frames are EM's slow directions: a per-component affine change of z^(l) moves
# the component's scores relative to the other components' ones, and plain EM re-aligns them
# at a rate close to one when the layer's noise is small. Parameter-expanded EM (Liu, Rubin &
# Wu 1998) adds a working affine map per component and layer and maximises over it in the
# M-step; see docs/recover.md ("PX-EM").
@dataclass(frozen=True)
class FrameProblem:
    """Expected complete-data terms of one component's working frame ``w = B z + d``.

    For component ``g`` of layer ``l``, ``z = z^(l)`` on the paths through ``g``, centred at
    their weighted mean ``m``. With ``beta_r = [b_r; d~_r]`` (row ``r`` of ``B`` and of
    ``d~ = d + B m``) the objective is
    ``-1/2 sum_r beta_r^T H_r beta_r + sum_r beta_r^T q_r + n log|det B|``: concave.

    Attributes
    ----------
    H : (R, R + 1, R + 1) array ; q : (R, R + 1) array ; n : float ; m : (R,) array
    """

    H: Array
    q: Array
    n: float
    m: Array


def frame_problem(stats: PathStatistics, params: DGMMParams, layer: int, g: int) -> FrameProblem:
    """Collect :class:`FrameProblem` of component ``g`` of layer ``layer`` (1-based).

    The working map acts on ``z^(l)`` inside the density of ``z^(l)`` given ``z^(l+1)``
    (layer ``l + 1``'s regression, grouped by its component ``h``), or inside
    ``z^(L) ~ N(0, I)`` at the top layer: ``B z + d - eta_h - Lambda_h z^(l+1) ~
    N(0, Psi_h)``. Every term is a moment of the E-step statistics.
    """
    table, L = params.paths, params.n_layers
    blocks = layer_slices(params.n_factors)
    sl = blocks[layer - 1]
    R = sl.stop - sl.start
    paths = np.flatnonzero(table[:, layer - 1] == g)
    n_p = stats.n[paths]
    n = float(n_p.sum())
    zb = stats.zbar[paths][:, sl]
    m = n_p @ zb / max(n, np.finfo(np.float64).tiny)
    H = np.zeros((R, R + 1, R + 1))
    q = np.zeros((R, R + 1))
    if layer < L:
        up = blocks[layer]
        zb_up = stats.zbar[paths][:, up]
        m_up = n_p @ zb_up / max(n, np.finfo(np.float64).tiny)
    for k, p in enumerate(paths):
        zt = zb[k] - m
        suu = np.empty((R + 1, R + 1))
        suu[:R, :R] = stats.czz[p][sl, sl] + n_p[k] * np.outer(zt, zt)
        suu[:R, R] = suu[R, :R] = n_p[k] * zt
        suu[R, R] = n_p[k]
        if layer < L:
            h = table[p, layer]
            lam, psi = params.Lambda[layer][h], params.psi[layer][h]
            zt_up = zb_up[k] - m_up
            suz = np.empty((R + 1, zt_up.shape[0]))
            suz[:R] = stats.czz[p][sl, up] + n_p[k] * np.outer(zt, zt_up)
            suz[R] = n_p[k] * zt_up
            target_mean = params.eta[layer][h] + lam @ m_up
            sut = suz @ lam.T + np.outer(suu[:, R], target_mean)  # E[u t^T], (R + 1, R)
            w = 1.0 / psi
            q += (sut * w[None, :]).T
        else:
            w = np.ones(R)
        H += w[:, None, None] * suu[None]
    return FrameProblem(H=H, q=q, n=n, m=m)


def _frame_value(beta: Array, prob: FrameProblem) -> float:
    R = beta.shape[0]
    sign, logdet = np.linalg.slogdet(beta[:, :R])
    if sign <= 0:
        return -np.inf
    quad = np.einsum("ri,rij,rj->", beta, prob.H, beta)
    return float(-0.5 * quad + np.sum(beta * prob.q) + prob.n * logdet)


def solve_frame(prob: FrameProblem, max_newton: int = 20) -> tuple[Array, Array]:
    """Maximise the concave frame objective by Newton's method from the identity map.

    Returns
    -------
    B : (R, R) ; d : (R,), the working map ``w = B z + d`` in ``z``'s own coordinates.
    The identity is returned when no step increases the objective.
    """
    R = prob.m.shape[0]
    K = R * (R + 1)
    beta = np.concatenate([np.eye(R), prob.m[:, None]], axis=1)
    value = _frame_value(beta, prob)
    for _ in range(max_newton):
        # the gradient and Hessian of log|det B| are written in B^-1's entries; B is R x R
        # and stays near the identity, so the explicit inverse is cheap and accurate
        B_inv = np.linalg.inv(beta[:, :R])
        grad = prob.q - np.einsum("rij,rj->ri", prob.H, beta)
        grad[:, :R] += prob.n * B_inv.T
        hess = np.zeros((R, R + 1, R, R + 1))
        hess[np.arange(R), :, np.arange(R), :] = -prob.H
        hess[:, :R, :, :R] -= prob.n * np.einsum("jk,li->ijkl", B_inv, B_inv)
        try:
            step = np.linalg.solve(hess.reshape(K, K), -grad.ravel()).reshape(R, R + 1)
        except np.linalg.LinAlgError:
            break
        decrement = float(np.sum(grad * step))
        if not decrement > 1e-10:
            break
        t = 1.0
        while t > 1e-8:
            trial = beta + t * step
            trial_value = _frame_value(trial, prob)
            if trial_value > value:
                beta, value = trial, trial_value
                break
            t *= 0.5
        else:
            break
    B = beta[:, :R]
    return B, beta[:, R] - B @ prob.m


FrameMaps = dict[tuple[int, int], tuple[Array, Array]]


def frame_maps(stats: PathStatistics, params: DGMMParams) -> FrameMaps:
    """The parameter-expansion CM-step: the best working map ``w = B z^(l) + d`` of every
    component ``g`` of every layer ``l`` given the E-step statistics and ``params``.

    The working maps enter disjoint terms of the expected complete-data log-likelihood, so
    each is solved on its own (:func:`solve_frame`); components with no weight are skipped.

    Returns
    -------
    dict mapping ``(l, g)`` (1-based layer) to ``(B (R_l, R_l), d (R_l,))``
    """
    maps: FrameMaps = {}
    tiny = EMPTY_FRACTION * float(stats.n.sum())
    for l in range(1, params.n_layers + 1):
        for g in range(params.n_components[l - 1]):
            prob = frame_problem(stats, params, l, g)
            if prob.n >= tiny:
                maps[(l, g)] = solve_frame(prob)
    return maps


def reduce_frames(params: DGMMParams, maps: FrameMaps) -> DGMMParams:
    """Fold the working maps into the loadings: ``z^(l) = A w + c`` (``A = B^-1``,
    ``c = -A d``) gives ``Lambda^(l)_g A`` and ``eta^(l)_g + Lambda^(l)_g c``."""
    eta = [e.copy() for e in params.eta]
    lam = [x.copy() for x in params.Lambda]
    for (l, g), (B, d) in maps.items():
        new_lam = np.linalg.solve(B.T, params.Lambda[l - 1][g].T).T  # Lambda B^-1
        lam[l - 1][g] = new_lam
        eta[l - 1][g] = params.eta[l - 1][g] - new_lam @ d
    return DGMMParams(pi=params.pi, eta=eta, Lambda=lam, psi=params.psi)


def transform_statistics(
    stats: PathStatistics, params: DGMMParams, maps: FrameMaps
) -> PathStatistics:
    """The E-step statistics of the mapped scores ``w = B z + d`` (path by path, each layer's
    block by its component's map), i.e. the statistics in the reduced parametrisation."""
    blocks = layer_slices(params.n_factors)
    table = params.paths
    P, D = stats.zbar.shape
    T = np.tile(np.eye(D), (P, 1, 1))
    offset = np.zeros((P, D))
    for p in range(P):
        for l, sl in enumerate(blocks, start=1):
            found = maps.get((l, int(table[p, l - 1])))
            if found is not None:
                T[p, sl, sl], offset[p, sl] = found
    s1 = blocks[0]
    return PathStatistics(
        n=stats.n,
        xbar=stats.xbar,
        cxx=stats.cxx,
        zbar=np.einsum("pij,pj->pi", T, stats.zbar) + offset,
        czz=sym(T @ stats.czz @ np.swapaxes(T, 1, 2)),
        cxz1=stats.cxz1 @ np.swapaxes(T[:, s1, s1], 1, 2),
    )


def expanded_m_step(
    stats: PathStatistics,
    params: DGMMParams,
    reg_psi: float,
    var_x: Array,
    *,
    cycles: int = 3,
) -> tuple[DGMMParams, list[tuple[int, int]]]:
    """The M-step of parameter-expanded EM: ``cycles`` rounds of the closed-form M-step
    (:func:`m_step`) and the frame CM-step (:func:`frame_maps`, :func:`reduce_frames`) on
    the same E-step statistics, carried into each new parametrisation by
    :func:`transform_statistics`. Every round increases the expected complete-data
    log-likelihood of the expanded model, so the log-likelihood never decreases."""
    new, empty = m_step(stats, params, reg_psi, var_x)
    for c in range(cycles):
        maps = frame_maps(stats, new)
        new = reduce_frames(new, maps)
        if c == cycles - 1:
            break
        stats = transform_statistics(stats, new, maps)
        new, empty = m_step(stats, new, reg_psi, var_x)
    return new, empty


# ---------------------------------------------------------------------- the step
def canonical(params: DGMMParams) -> DGMMParams:
    """The same distribution with the redundant directions pinned: :meth:`DGMMParams.anchored`
    (location and scale of the intermediate scores) and the top layer's loadings rotated to
    lower-triangular form (``z^(L) ~ N(0, I)`` makes that rotation exact; unlike an ordering
    by variance, it is continuous in the loadings)."""
    anchored = params.anchored()
    lam = list(anchored.Lambda)
    lam[-1] = rotate_loadings(lam[-1], anchored.psi[-1], "lower_triangular")
    return DGMMParams(pi=anchored.pi, eta=anchored.eta, Lambda=lam, psi=anchored.psi)


def exact_step(
    X: Array, *, reg_psi: float, constraint: str | None = None, expand: bool = True
) -> Step:
    """The exact EM iteration as a step of :func:`bayes_dgmm.em.driver.run_em`.

    E-step, then the M-step: with ``expand``, the parameter-expanded one
    (:func:`bayes_dgmm.em.exact.expanded_m_step`) followed by :func:`canonical`; without,
    the closed-form one. Then the identifiability ``constraint`` if any. The log-likelihood
    never decreases (without a constraint).
    """
    var_x = X.var(axis=0)

    def step(params: DGMMParams) -> StepOutput:
        model = path_model(params)
        log_norm, resp = e_step(X, model, params.n_components[0])
        stats = path_statistics(X, resp, model, params.n_factors[0])
        if expand:
            new, empty = expanded_m_step(stats, params, reg_psi, var_x)
        else:
            new, empty = m_step(stats, params, reg_psi, var_x)
        if constraint is not None:
            new = apply_constraint(new, constraint)
        elif expand:
            # the working maps also move along the directions that leave the model unchanged
            # (the location and scale of intermediate scores, rotations of the top one);
            # pinning them keeps the iterates, and Anderson's secants, out of that drift
            new = canonical(new)
        return StepOutput(new, float(np.sum(log_norm)), tuple(empty))

    return step
