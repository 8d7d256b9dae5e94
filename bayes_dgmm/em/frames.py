"""Latent frames of the aligned start: whitening of factor-analyser scores, L-BFGS
refinement of every component's affine frame under the deeper layers, and the assembly of the
full parameters (steps 2, 5 and 6 of :func:`bayes_dgmm.em.aligned.aligned_init`; the method is
in ``docs/recover.md``). The registration of frames onto each other (step 3) is
:mod:`bayes_dgmm.em.registration`.

Every function is pure: arrays in, arrays out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import cholesky, lu_factor, lu_solve, solve_triangular
from scipy.optimize import minimize

from bayes_dgmm.em.registration import affine_factors, unpack_affine
from bayes_dgmm.model.density import LOG_2PI, log_normalize
from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]


# ---------------------------------------------------------------------- whitening
def whitening(Z: Array) -> tuple[Array, Array]:
    """Affine map ``z -> A z + c`` giving ``Z`` (n, R) zero mean and identity covariance.

    ``A = L^{-1}`` with ``L`` the Cholesky factor of the covariance (a triangular solve).

    Returns
    -------
    A : (R, R) ; c : (R,)
    """
    mean = Z.mean(axis=0)
    cov = np.atleast_2d(np.cov(Z, rowvar=False)) + 1e-12 * np.eye(Z.shape[1])
    L = cholesky(cov, lower=True, check_finite=False)
    A = solve_triangular(L, np.eye(Z.shape[1]), lower=True, check_finite=False)
    return A, -A @ mean


# ---------------------------------------------------------------------- frame refinement
def gmm_logpdf_grad(Z: Array, means: Array, covs: Array, log_w: Array) -> tuple[Array, Array]:
    """Log density of a Gaussian mixture and its gradient with respect to the point.

    Parameters
    ----------
    Z : (n, R) ; means : (K, R) ; covs : (K, R, R) ; log_w : (K,)

    Returns
    -------
    logpdf : (n,) ; grad : (n, R), ``-sum_k r_k Sigma_k^{-1} (z - mu_k)``
    """
    n, R = Z.shape
    K = means.shape[0]
    logp = np.empty((n, K))
    sol = np.empty((K, n, R))
    for k in range(K):
        L = cholesky(covs[k], lower=True, check_finite=False)
        diff = (Z - means[k]).T
        w = solve_triangular(L, diff, lower=True, check_finite=False)
        sol[k] = solve_triangular(L, w, lower=True, trans=1, check_finite=False).T
        logp[:, k] = log_w[k] - 0.5 * (
            R * LOG_2PI + 2.0 * np.sum(np.log(np.diag(L))) + np.einsum("ij,ij->j", w, w)
        )
    log_norm, resp = log_normalize(logp)
    return log_norm, -np.einsum("nk,knr->nr", resp, sol)


def frame_objective(
    theta: Array, S: Array, means: Array, covs: Array, log_w: Array
) -> tuple[float, Array]:
    """Negative log-likelihood of the scores ``S`` (n, R) mapped by ``z = A s + c`` under
    the mixture ``(means, covs, log_w)`` of the deeper layers, with ``n log|det A|``.

    Returns
    -------
    value : float ; gradient : (R R + R,) array (``A`` row-major, then ``c``)
    """
    R = S.shape[1]
    factors = affine_factors(theta, R)
    if factors is None:
        return math.inf, np.zeros_like(theta)
    A, c, lu, diag = factors
    Z = S @ A.T + c
    logp, grad = gmm_logpdf_grad(Z, means, covs, log_w)
    n = S.shape[0]
    value = -float(np.sum(logp)) - n * float(np.sum(np.log(np.abs(diag))))
    gA = -(grad.T @ S) - n * lu_solve(lu, np.eye(R), trans=1, check_finite=False)
    gc = -grad.sum(axis=0)
    return value, np.concatenate([gA.ravel(), gc])


def refine_frames(
    scores: Sequence[Array],
    frames: Sequence[tuple[Array, Array]],
    deep: DGMMParams,
    *,
    maxiter: int = 100,
    min_rows: int = 1,
) -> tuple[list[tuple[Array, Array]], float]:
    """L-BFGS on every component's affine frame given the deeper layers ``deep``.

    The log-likelihood of the aligned scores is separable over components once ``deep`` is
    fixed, so each frame is optimised on its own.

    Parameters
    ----------
    scores : per component, (n_g, R) subspace scores
    frames : per component, the current ``(A, c)``
    deep : the DGMM of the deeper layers (a model of the aligned scores)
    min_rows : components with fewer rows keep their frame (with one row the likelihood is
        unbounded in ``A``)

    Returns
    -------
    frames : the optimised ``(A, c)`` per component
    value : float, the total log-likelihood of the aligned scores including the Jacobians
    """
    gmm = deep.global_gmm()
    log_w = np.log(gmm.weights)
    out: list[tuple[Array, Array]] = []
    total = 0.0
    for S, (A, c) in zip(scores, frames, strict=True):
        R = S.shape[1]
        if S.shape[0] < min_rows:
            out.append((A, c))
            continue
        res = minimize(
            frame_objective,
            np.concatenate([A.ravel(), c]),
            args=(S, gmm.means, gmm.covariances, log_w),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": maxiter},
        )
        A1, c1 = unpack_affine(res.x, R)
        out.append((A1.copy(), c1.copy()))
        total -= float(res.fun)
    return out, total


def apply_frames(scores: Sequence[Array], frames: Sequence[tuple[Array, Array]]) -> Array:
    """Stack every component's scores mapped into the common frame, (sum n_g, R)."""
    return np.concatenate([S @ A.T + c for S, (A, c) in zip(scores, frames, strict=True)])


def compose_frames(
    layer: DGMMParams, frames: Sequence[tuple[Array, Array]], deep: DGMMParams
) -> DGMMParams:
    """Full parameters from a one-layer model in per-component frames and the deeper layers.

    Component ``g`` of ``layer`` has ``y = eta_g + Lambda_g s + u`` and its scores are
    aligned by ``z = A_g s + c_g``; so ``y = (eta_g - Lambda_g A_g^{-1} c_g) +
    Lambda_g A_g^{-1} z + u``, with ``z`` distributed as the deeper layers say.

    Parameters
    ----------
    layer : one-layer DGMMParams (the MFA of this level)
    frames : per component ``(A, c)``
    deep : DGMMParams of the layers above, for the aligned scores

    Returns
    -------
    DGMMParams with ``1 + deep.n_layers`` layers
    """
    eta, lam = [], []
    for g, (A, c) in enumerate(frames):
        lu = lu_factor(A, check_finite=False)
        new_lam = lu_solve(lu, layer.Lambda[0][g].T, trans=1, check_finite=False).T
        lam.append(new_lam)
        eta.append(layer.eta[0][g] - new_lam @ c)
    return DGMMParams(
        pi=[layer.pi[0], *deep.pi],
        eta=[np.stack(eta), *deep.eta],
        Lambda=[np.stack(lam), *deep.Lambda],
        psi=[layer.psi[0], *deep.psi],
    )


def aligned_loglik(
    scores: Sequence[Array], frames: Sequence[tuple[Array, Array]], deep: DGMMParams
) -> float:
    """Log-likelihood of every component's scores in its own frame: the deeper layers'
    density of the aligned scores plus ``n_g log|det A_g|`` (change of variables)."""
    jac = sum(
        S.shape[0] * float(np.linalg.slogdet(A)[1])
        for S, (A, _) in zip(scores, frames, strict=True)
    )
    return deep.score(apply_frames(scores, frames)) + jac
