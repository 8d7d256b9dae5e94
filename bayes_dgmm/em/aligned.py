"""Aligned layer-wise starting values: recover a DGMM whose layers hide behind latent frames.

Why plain EM fails (Selosse et al. 2020, sec. 3.3): inside each layer-1 component ``g`` the
scores ``z^(1)`` are almost a deterministic function of ``x`` (the study's ``psi^(1)`` is about
``1e-7`` of ``var(x)``), and each component carries its own coordinate frame for ``z^(1)``:
the model is unchanged by ``(eta_g, Lambda_g) -> (eta_g - Lambda_g A_g^{-1} c_g,
Lambda_g A_g^{-1})`` *together with* the same affine change of the deeper layers only when
``A_g, c_g`` are the same for every ``g``. The deeper layers see a mixture of the
components' score clouds, which only shows their structure once those frames agree, and EM
re-aligns the frames very slowly (the fraction of missing information is close to one).

The strategy here (:func:`aligned_init`), applied recursively from layer 1 upwards:

1. fit layer ``l`` as a mixture of factor analysers on the current level's data
   (:func:`fit_mfa`, restarts selected by likelihood);
2. project each component's rows onto its subspace (:func:`subspace_scores`), whiten them,
   and split each component's scores into ``G_{l+1}`` sub-clusters (again an MFA);
3. register every component's frame onto a reference component's frame by maximising the
   Gaussian likelihood of its sub-clusters' moments under the reference sub-clusters over an
   affine map (:func:`register_moments`), for every correspondence of sub-clusters, and keep
   the best correspondence per component (:func:`match_frames`: ``G_l - 1`` independent
   choices, never a product over components);
4. fit the deeper layers on the pooled, aligned scores (the same procedure, one level up);
5. alternate exact EM of the deeper layers with L-BFGS on every component's affine frame
   (:func:`refine_frames`: the exact log-likelihood of the aligned scores plus the Jacobian
   ``log |det A_g|``);
6. assemble the full parameters (:func:`compose_frames`) and run the exact EM to convergence.

Optionally (``AlignOptions(n_alternatives > 0)``, off by default) ambiguous correspondences are
re-decided by the exact likelihood of the level, one component at a time. Measurements and
what did not work: ``docs/recover.md``.

Every function is pure: arrays in, arrays out; randomness only through a ``Generator``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import cho_solve, cholesky, lu_factor, lu_solve, solve_triangular
from scipy.optimize import minimize

from bayes_dgmm.em.driver import run_em
from bayes_dgmm.em.exact import e_step, exact_step, path_model
from bayes_dgmm.em.starts import Labeller, kmeans_labels, layerwise_init
from bayes_dgmm.model.density import LOG_2PI, log_normalize
from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]

logger = logging.getLogger(__name__)

#: Largest number of sub-cluster correspondences tried exhaustively per component
#: (``G_{l+1}! <= 24``, i.e. up to 4 sub-clusters); above it, a ranked subset is tried.
MAX_PERMUTATIONS = 24


# ---------------------------------------------------------------------- exact EM driver
def run_exact_em(
    X: Array, params: DGMMParams, *, max_iter: int = 200, tol: float = 1e-4, reg_psi: float = 1e-10
) -> tuple[DGMMParams, list[float]]:
    """Plain exact EM (no expansion, no acceleration) from ``params`` until one iteration
    gains less than ``tol`` per observation: the short inner fits of the aligned start, whose
    results are only starting values (the estimator then runs to its convergence criterion).

    Parameters
    ----------
    X : (N, J) array
    params : starting values

    Returns
    -------
    params : the final parameters
    history : log-likelihood at the start and after every iteration
    """
    result = run_em(
        exact_step(X, reg_psi=reg_psi, expand=False),
        params,
        n_samples=X.shape[0],
        max_iter=max_iter,
        stopping="tol",
        tol=tol,
        certify=False,
    )
    return result.params, result.log_likelihood


def subspace_group_labels(
    Y: Array, n_components: int, n_factors: int, n_fine: int, rng: np.random.Generator
) -> NDArray[np.intp]:
    """Partition by shared subspace: a fine Gaussian mixture, its components grouped.

    When a layer's noise is small, each of its components holds the data near an affine
    subspace of dimension ``n_factors``, and a Gaussian mixture with ``n_fine`` components
    (about the number of paths below) puts each fine component inside one subspace. Fine
    components ``j`` and ``k`` belong together when the rows of ``j`` lie in the subspace of
    ``k`` and vice versa: the spread of ``j`` along the ``D - R`` least-variance directions
    of ``k``, relative to ``k``'s own, is about one. Average-linkage clustering of the
    symmetrised log ratios gives ``n_components`` groups.

    Parameters
    ----------
    Y : (N, D) array
    n_components : G, the number of groups
    n_factors : R < D, the subspace dimension
    n_fine : number of fine components (>= G)
    rng : seeds the fine mixture

    Returns
    -------
    (N,) int array of group labels
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform
    from sklearn.mixture import GaussianMixture

    N, D = Y.shape
    n_fine = int(min(max(n_fine, n_components), N // (D + 1) or n_components))
    gm = GaussianMixture(
        n_fine,
        covariance_type="full",
        reg_covar=1e-10 * float(Y.var(axis=0).mean()),
        random_state=int(rng.integers(2**31 - 1)),
        max_iter=200,
    )
    fine = gm.fit_predict(Y)
    used, counts = np.unique(fine, return_counts=True)
    if used.shape[0] <= n_components:
        return np.searchsorted(used, fine).astype(np.intp)
    # spread[a, b]: log spread of fine component b along the least-variance directions of a,
    # relative to a's own (medians: robust to a few rows near another subspace)
    spread = np.empty((used.shape[0], used.shape[0]))
    for a, k in enumerate(used):
        _, vec = np.linalg.eigh(gm.covariances_[k])
        null = vec[:, : D - n_factors]
        for b, j in enumerate(used):
            spread[a, b] = np.log(
                np.median(np.sum(((Y[fine == j] - gm.means_[k]) @ null) ** 2, axis=1)) + 1e-300
            )
        spread[a] -= spread[a, a]
    # a component with few rows has a spurious null space: it is grouped afterwards, by
    # its spread along the null spaces of the well-estimated ones
    big = counts >= 2 * (D + 1)
    if np.count_nonzero(big) < n_components:
        big[:] = True
    ib = np.flatnonzero(big)
    dist = np.maximum(spread[np.ix_(ib, ib)] + spread[np.ix_(ib, ib)].T, 0.0)
    np.fill_diagonal(dist, 0.0)
    tree = linkage(squareform(dist, checks=False), "average")
    group = np.empty(used.shape[0], dtype=np.intp)
    group[ib] = fcluster(tree, n_components, "maxclust") - 1
    for j in np.flatnonzero(~big):
        members = [ib[group[ib] == h] for h in range(n_components)]
        cost = [np.mean(spread[m, j]) if m.size else np.inf for m in members]
        group[j] = int(np.argmin(cost))
    return group[np.searchsorted(used, fine)].astype(np.intp)


def fit_mfa(
    Y: Array,
    n_components: int,
    n_factors: int,
    rng: np.random.Generator,
    *,
    n_init: int = 10,
    n_fine: int | None = None,
    screen_iter: int = 30,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> tuple[DGMMParams, float]:
    """Mixture of factor analysers (a one-layer DGMM) by exact EM from screened starts.

    ``n_init`` starts each run ``screen_iter`` EM iterations; the one with the highest
    log-likelihood is run on to convergence. Starts alternate between k-means and, when
    ``n_fine`` is given, fine mixtures grouped by shared subspace
    (:func:`subspace_group_labels`). k-means finds subspace clusters in only some starts
    (about half on the study data's layer-2 scores, none in ten on other data sets of the same
    design for layer 1), and the likelihood after a few iterations already tells them apart.

    Parameters
    ----------
    Y : (N, D) array
    n_components, n_factors : G and R < D
    n_init : screened starts
    n_fine : fine components of the grouped starts (None: k-means starts only)

    Returns
    -------
    params : one-layer DGMMParams
    log_likelihood : float
    """
    best: tuple[DGMMParams, float] | None = None
    grouped = n_fine is not None and Y.shape[0] >= 4 * (Y.shape[1] + 1) * max(n_fine, 1)
    for k in range(n_init):
        labeller: Labeller
        if grouped and n_fine is not None and k % 2 == 0:
            labeller = functools.partial(_group_labeller, n_factors=n_factors, n_fine=n_fine)
        else:
            labeller = kmeans_labels
        start = layerwise_init(Y, (n_components,), (n_factors,), rng, labeller)
        params, history = run_exact_em(Y, start, max_iter=screen_iter, tol=tol)
        if best is None or history[-1] > best[1]:
            best = (params, history[-1])
    assert best is not None
    params, history = run_exact_em(Y, best[0], max_iter=max_iter, tol=tol)
    return params, history[-1]


def _group_labeller(
    Y: Array, G: int, rng: np.random.Generator, *, n_factors: int, n_fine: int
) -> NDArray[np.intp]:
    return subspace_group_labels(Y, G, n_factors, n_fine, rng)


def hard_labels(Y: Array, params: DGMMParams) -> NDArray[np.intp]:
    """Most probable layer-1 component of every row of ``Y`` (N, D) under ``params``, (N,)."""
    G1 = params.n_components[0]
    _, resp = e_step(Y, path_model(params), G1)
    # paths enumerate layer 1 fastest: column p belongs to component p % G1
    per_comp = resp.reshape(resp.shape[0], -1, G1).sum(axis=1)
    return np.argmax(per_comp, axis=1).astype(np.intp)


# ---------------------------------------------------------------------- scores and frames
def subspace_scores(Y: Array, eta: Array, Lambda: Array, psi: Array) -> Array:
    """Generalised least-squares coordinates of rows of ``Y`` in a factor analyser's subspace.

    ``(Lambda^T Psi^-1 Lambda)^{-1} Lambda^T Psi^-1 (y - eta)``: the maximiser of the
    likelihood of ``z`` in ``y = eta + Lambda z + u``, free of any prior on ``z`` (the
    deeper layers' mixture is that prior, and it is not known yet).

    Parameters
    ----------
    Y : (n, D) ; eta : (D,) ; Lambda : (D, R) ; psi : (D,)

    Returns
    -------
    (n, R) array
    """
    Lt = Lambda / psi[:, None]
    c = cholesky(Lambda.T @ Lt, lower=True, check_finite=False)
    return cho_solve((c, True), ((Y - eta) @ Lt).T, check_finite=False).T


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


@dataclass(frozen=True)
class ClusterMoments:
    """Sizes, means and covariances of the sub-clusters of one component's scores.

    Attributes
    ----------
    n : (K,) array ; mean : (K, R) array ; cov : (K, R, R) array
    """

    n: Array
    mean: Array
    cov: Array


def cluster_moments(Z: Array, labels: NDArray[np.intp], n_clusters: int) -> ClusterMoments:
    """Moments of the rows of ``Z`` (n, R) per label; a cluster with fewer than two rows gets
    the overall covariance, so every covariance stays positive definite."""
    R = Z.shape[1]
    total = np.atleast_2d(np.cov(Z, rowvar=False)) if Z.shape[0] > 1 else np.eye(R)
    n = np.zeros(n_clusters)
    mean = np.zeros((n_clusters, R))
    cov = np.empty((n_clusters, R, R))
    for k in range(n_clusters):
        rows = Z[labels == k]
        n[k] = rows.shape[0]
        mean[k] = rows.mean(axis=0) if n[k] else Z.mean(axis=0)
        diff = rows - mean[k]
        # shrink towards the overall covariance with the weight of one row
        cov[k] = (diff.T @ diff + total) / (n[k] + 1.0)
    return ClusterMoments(n=n, mean=mean, cov=cov)


def transform_moments(m: ClusterMoments, A: Array, c: Array) -> ClusterMoments:
    """Moments of ``A z + c`` given those of ``z``."""
    return ClusterMoments(
        n=m.n, mean=m.mean @ A.T + c, cov=np.einsum("ij,kjl,ml->kim", A, m.cov, A)
    )


def _unpack_affine(theta: Array, R: int) -> tuple[Array, Array]:
    return theta[: R * R].reshape(R, R), theta[R * R :]


def registration_objective(
    theta: Array, ref_mean: Array, ref_prec: Array, const: float, moving: ClusterMoments
) -> tuple[float, Array]:
    """Negative expected log-likelihood of ``moving``'s clusters, mapped by ``z -> A z + c``,
    under the reference Gaussian clusters (cluster ``k`` to cluster ``k``), with the Jacobian.

    ``f(A, c) = sum_k n_k / 2 [tr(P_k A B_k A^T) + e_k^T P_k e_k] - n log|det A| + const``
    with ``e_k = A b_k + c - a_k``, ``(a_k, P_k)`` the reference means and precisions and
    ``(b_k, B_k)`` the moving clusters' means and covariances.

    Parameters
    ----------
    theta : (R R + R,) array, ``A`` row-major then ``c``
    ref_mean : (K, R) ; ref_prec : (K, R, R) ; const : float, added to the value
    moving : moments of K clusters, matched to the reference by position

    Returns
    -------
    value : float ; gradient : (R R + R,) array
    """
    R = ref_mean.shape[1]
    A, c = _unpack_affine(theta, R)
    lu = lu_factor(A, check_finite=False)
    diag = np.diag(lu[0])
    if np.any(diag == 0):
        return math.inf, np.zeros_like(theta)
    n = moving.n
    n_tot = float(n.sum())
    e = moving.mean @ A.T + c - ref_mean  # (K, R)
    PA = ref_prec @ A  # (K, R, R)
    PAB = PA @ moving.cov
    Pe = np.einsum("kij,kj->ki", ref_prec, e)
    value = 0.5 * float(n @ (np.einsum("kij,ij->k", PAB, A) + np.einsum("ki,ki->k", e, Pe)))
    value += const - n_tot * float(np.sum(np.log(np.abs(diag))))
    gA = np.einsum("k,kij->ij", n, PAB) + (Pe * n[:, None]).T @ moving.mean
    gA -= n_tot * lu_solve(lu, np.eye(R), trans=1, check_finite=False)
    gc = n @ Pe
    return value, np.concatenate([gA.ravel(), gc])


def random_rotation(R: int, rng: np.random.Generator) -> Array:
    """Haar-distributed orthogonal (R, R) matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((R, R)))
    return q * np.sign(np.diag(r))


def procrustes(source: Array, target: Array, weights: Array | None = None) -> Array:
    """Orthogonal ``Q`` (R, R) minimising ``sum_k w_k |Q source_k - target_k|^2``.

    Parameters
    ----------
    source, target : (K, R) arrays of matched points
    weights : (K,) array, default ones

    Returns
    -------
    (R, R) orthogonal array: ``U V^T`` from the SVD of ``sum_k w_k target_k source_k^T``.
    """
    w = np.ones(source.shape[0]) if weights is None else weights
    u, _, vt = np.linalg.svd((target * w[:, None]).T @ source)
    return u @ vt


def register_moments(
    ref: ClusterMoments, moving: ClusterMoments, rng: np.random.Generator, *, n_starts: int = 4
) -> tuple[Array, Array, float]:
    """Affine map ``z -> A z + c`` that best lays ``moving``'s clusters onto ``ref``'s.

    Both sets are expected in whitened coordinates, where the true map is close to
    orthogonal; L-BFGS starts from the weighted Procrustes rotation of the cluster means and
    from ``n_starts`` random rotations (the objective is not concave in ``A``).

    Returns
    -------
    A : (R, R) ; c : (R,) ; value : float, :func:`registration_objective` at the optimum
        divided by the moving clusters' total size (comparable across correspondences)
    """
    R = ref.mean.shape[1]
    chol = np.linalg.cholesky(ref.cov)
    # precisions from the Cholesky factors; const = sum_k n_k log|S_k|^{1/2}
    prec = np.stack([cho_solve((c, True), np.eye(R), check_finite=False) for c in chol])
    const = float(moving.n @ np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1))
    w = np.minimum(ref.n, moving.n)
    starts = [procrustes(moving.mean, ref.mean, w)]
    starts += [random_rotation(R, rng) for _ in range(n_starts)]
    best: tuple[Array, Array, float] | None = None
    for Q in starts:
        theta0 = np.concatenate([Q.ravel(), np.zeros(R)])
        res = minimize(
            registration_objective,
            theta0,
            args=(ref.mean, prec, const, moving),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 500},
        )
        if np.isfinite(res.fun) and (best is None or res.fun < best[2]):
            A, c = _unpack_affine(res.x, R)
            best = (A.copy(), c.copy(), float(res.fun))
    assert best is not None
    return best[0], best[1], best[2] / max(float(moving.n.sum()), 1.0)


def candidate_permutations(n_clusters: int, limit: int = MAX_PERMUTATIONS) -> list[tuple[int, ...]]:
    """Correspondences tried for one component: every permutation while ``K! <= limit``,
    else the identity and every single transposition (``1 + K (K - 1) / 2`` of them), to be
    applied after a Hungarian matching."""
    if math.factorial(n_clusters) <= limit:
        return list(itertools.permutations(range(n_clusters)))
    perms = [tuple(range(n_clusters))]
    for i, j in itertools.combinations(range(n_clusters), 2):
        p = list(range(n_clusters))
        p[i], p[j] = p[j], p[i]
        perms.append(tuple(p))
    return perms


def n_registrations(n_components: Sequence[int], limit: int = MAX_PERMUTATIONS) -> int:
    """Number of sub-cluster correspondences :func:`aligned_init` registers for an
    architecture: ``sum_l (G_l - 1) |candidate_permutations(G_{l+1})|``, linear in the
    number of components (never the product over components of every matching)."""
    comps = [int(g) for g in n_components]
    return sum(
        (g - 1) * len(candidate_permutations(g_up, limit)) for g, g_up in itertools.pairwise(comps)
    )


def _permute(m: ClusterMoments, perm: Sequence[int]) -> ClusterMoments:
    idx = np.asarray(perm)
    return ClusterMoments(n=m.n[idx], mean=m.mean[idx], cov=m.cov[idx])


def hungarian_order(ref: ClusterMoments, moving: ClusterMoments) -> NDArray[np.intp]:
    """Rotation-invariant matching of sub-clusters: Hungarian assignment on the distance
    between (weight, sorted covariance eigenvalues, distance of the mean to the origin).

    Returns
    -------
    (K,) int array ``order`` such that moving cluster ``order[k]`` matches reference ``k``.
    """
    from scipy.optimize import linear_sum_assignment

    def features(m: ClusterMoments) -> Array:
        ev = np.log(np.linalg.eigvalsh(m.cov))
        return np.column_stack(
            [np.log(m.n / m.n.sum() + 1e-12), ev, np.linalg.norm(m.mean, axis=1)]
        )

    fr, fm = features(ref), features(moving)
    cost = np.linalg.norm(fr[:, None, :] - fm[None, :, :], axis=2)
    _, col = linear_sum_assignment(cost)
    return np.asarray(col, dtype=np.intp)


@dataclass(frozen=True)
class Registration:
    """One candidate alignment of a component's whitened frame: ``z -> A z + c``.

    Attributes
    ----------
    A : (R, R) array ; c : (R,) array
    value : float, :func:`registration_objective` per row (lower is better)
    order : the moving sub-cluster matched to each reference sub-cluster
    """

    A: Array
    c: Array
    value: float
    order: tuple[int, ...]


def match_frames(
    moments: Sequence[ClusterMoments], rng: np.random.Generator, *, reference: int = 0
) -> list[list[Registration]]:
    """Register every component's (whitened) frame onto the reference component's frame.

    For each non-reference component independently, every candidate correspondence of its
    sub-clusters (:func:`candidate_permutations`, after a Hungarian pre-matching when there
    are too many) is registered with :func:`register_moments`. The work is linear in the
    number of components.

    Parameters
    ----------
    moments : per component, sub-cluster moments in that component's whitened frame

    Returns
    -------
    per component, its registrations sorted best first (the reference: the identity only)
    """
    ref = moments[reference]
    K = ref.n.shape[0]
    R = ref.mean.shape[1]
    out: list[list[Registration]] = []
    for g, mov in enumerate(moments):
        if g == reference:
            out.append([Registration(np.eye(R), np.zeros(R), 0.0, tuple(range(K)))])
            continue
        pre = hungarian_order(ref, mov) if math.factorial(K) > MAX_PERMUTATIONS else np.arange(K)
        regs = []
        for perm in candidate_permutations(K):
            order = pre[list(perm)].tolist()
            A, c, value = register_moments(ref, _permute(mov, order), rng)
            regs.append(Registration(A, c, value, tuple(order)))
        out.append(sorted(regs, key=lambda r: r.value))
    return out


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
    A, c = _unpack_affine(theta, R)
    lu = lu_factor(A, check_finite=False)
    diag = np.diag(lu[0])
    if np.any(diag == 0):
        return math.inf, np.zeros_like(theta)
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
        A1, c1 = _unpack_affine(res.x, R)
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


# ---------------------------------------------------------------------- the recursion
@dataclass(frozen=True)
class AlignOptions:
    """Settings of :func:`aligned_init`.

    Attributes
    ----------
    n_init_mfa : screened starts of each level's MFA (best likelihood kept)
    n_rounds : alternations of deeper-layer EM and frame L-BFGS per level
    em_iter : EM iterations of the deeper layers per round
    frame_step : run the frame L-BFGS (False: ablation "no frame refinement")
    align : register frames before pooling (False: ablation "whitened frames only")
    n_alternatives : likelihood moves: per component, at most this many runner-up
        correspondences are tried, and the reference's sub-clusters relabelled by every
        transposition; each configuration is refitted and scored by the exact likelihood of the
        level. Off (0) by default: on the two icbinb-like data sets where the top layer's
        correspondence came out wrong, the wrong one scored 90-120 nats higher (docs/recover.md)
    margin : runner-ups only within ``margin`` nats per row of the best registration
    """

    n_init_mfa: int = 10
    n_rounds: int = 5
    em_iter: int = 30
    frame_step: bool = True
    align: bool = True
    n_alternatives: int = 0
    margin: float = 1.0


def _alternate(
    scores: Sequence[Array],
    frames: Sequence[tuple[Array, Array]],
    deep: DGMMParams,
    opt: AlignOptions,
) -> tuple[list[tuple[Array, Array]], DGMMParams, float]:
    """Alternate frame L-BFGS and deeper-layer EM; return frames, deeper layers and
    :func:`aligned_loglik`."""
    R = scores[0].shape[1]
    N = sum(S.shape[0] for S in scores)
    frames = list(frames)
    previous = -math.inf
    for _ in range(opt.n_rounds if opt.frame_step else 1):
        if opt.frame_step:
            frames, _ = refine_frames(scores, frames, deep, min_rows=2 * (R + 1))
        deep, _ = run_exact_em(apply_frames(scores, frames), deep, max_iter=opt.em_iter)
        value = aligned_loglik(scores, frames, deep)
        if value - previous < 1e-3 * N:
            break
        previous = value
    return frames, deep, aligned_loglik(scores, frames, deep)


def _polish(Y: Array, params: DGMMParams, opt: AlignOptions) -> tuple[DGMMParams, float]:
    """A few exact EM iterations on this level's data; the exact log-likelihood that decides
    between correspondences (the aligned-score likelihood ignores the noise of the scores)."""
    params, history = run_exact_em(Y, params, max_iter=opt.em_iter)
    return params, history[-1]


def _then(frame: tuple[Array, Array], reg: Registration) -> tuple[Array, Array]:
    """The affine map ``frame`` followed by ``reg``."""
    A, c = frame
    return reg.A @ A, reg.A @ c + reg.c


def aligned_init(
    Y: Array,
    n_components: Sequence[int],
    n_factors: Sequence[int],
    rng: np.random.Generator,
    options: AlignOptions | None = None,
) -> DGMMParams:
    """Starting values for the exact EM with every component's latent frame aligned.

    Parameters
    ----------
    Y : (N, D) array, the data of this level (``x`` at the first call)
    n_components, n_factors : the architecture of the layers from this level up
    rng : source of randomness (k-means seeds, registration starts)
    options : see :class:`AlignOptions`

    Returns
    -------
    DGMMParams of ``len(n_components)`` layers for ``Y``
    """
    opt = options or AlignOptions()
    G, R = int(n_components[0]), int(n_factors[0])
    n_fine = math.prod(n_components)
    layer, _ = fit_mfa(Y, G, R, rng, n_init=opt.n_init_mfa, n_fine=n_fine)
    if len(n_components) == 1:
        return layer
    labels = hard_labels(Y, layer)
    scores = [
        subspace_scores(Y[labels == g], layer.eta[0][g], layer.Lambda[0][g], layer.psi[0][g])
        for g in range(G)
    ]
    G2, R2 = int(n_components[1]), int(n_factors[1])
    # a component too small to estimate its sub-clusters keeps an unaligned frame
    enough = [S.shape[0] >= 4 * (R + 1) * G2 for S in scores]
    white = [whitening(S) if S.shape[0] > R + 1 else (np.eye(R), np.zeros(R)) for S in scores]
    frames = list(white)
    candidates: list[list[Registration]] = [[] for _ in range(G)]
    if opt.align and sum(enough) >= 2:
        moments = []
        for S, (A, c) in zip(scores, white, strict=True):
            Z = S @ A.T + c
            if Z.shape[0] >= 4 * (R + 1) * G2:
                sub, _ = fit_mfa(Z, G2, R2, rng, n_init=opt.n_init_mfa, n_fine=n_fine // G)
                moments.append(cluster_moments(Z, hard_labels(Z, sub), G2))
        reference = int(np.argmax([m.n.sum() for m in moments]))
        matched = match_frames(moments, rng, reference=reference)
        for h, regs in zip(np.flatnonzero(enough).tolist(), matched, strict=True):
            candidates[h] = regs
            frames[h] = _then(white[h], regs[0])
        logger.debug(
            "level G=%d: registration values %s",
            G,
            [[round(r.value, 3) for r in regs] for regs in candidates],
        )
    deep = aligned_init(apply_frames(scores, frames), n_components[1:], n_factors[1:], rng, opt)
    frames, deep, _ = _alternate(scores, frames, deep, opt)
    best, value = _polish(Y, compose_frames(layer, frames, deep), opt)
    # A correspondence the moments cannot tell apart (sub-clusters of alike shapes) is
    # settled by the likelihood, one move at a time: relabel the reference's sub-clusters by a
    # transposition (every other component follows), or give one component a runner-up.
    chosen = {g: regs[0] for g, regs in enumerate(candidates) if regs}
    lookup = {g: {r.order: r for r in regs} for g, regs in enumerate(candidates)}
    moves: list[dict[int, Registration]] = []
    if chosen and opt.n_alternatives > 0:
        K = len(next(iter(chosen.values())).order)
        for sigma in candidate_permutations(K, limit=1)[1:]:  # the transpositions
            found = {
                g: lookup[g].get(tuple(r.order[k] for k in sigma))
                for g, r in chosen.items()
                if len(candidates[g]) > 1  # the reference keeps its labels
            }
            move = {g: v for g, v in found.items() if v is not None}
            if len(move) == len(found) > 0:
                moves.append(move)
    for g, regs in enumerate(candidates):
        for alt in regs[1 : 1 + opt.n_alternatives]:
            if alt.value - regs[0].value <= opt.margin:
                moves.append({g: alt})
    # every configuration, the current one included, is scored the same way, so that the
    # effort spent on the current one does not bias the choice
    reference_value = -math.inf
    for move in ([{}] if moves else []) + moves:
        trial = list(frames)
        for g, reg in {**chosen, **move}.items():
            trial[g] = _then(white[g], reg)
        # a fresh fit of the deeper layers where it is cheap (one layer): started from the
        # current one, it would favour the current correspondence
        start = deep
        if len(n_components) == 2:
            start, _ = fit_mfa(
                apply_frames(scores, trial), G2, R2, rng, n_init=opt.n_init_mfa, n_fine=n_fine // G
            )
        t_frames, t_deep, _ = _alternate(scores, trial, start, opt)
        t_best, t_value = _polish(Y, compose_frames(layer, t_frames, t_deep), opt)
        logger.debug("level G=%d move %s: %.1f", G, sorted(move), t_value)
        if not move:
            reference_value = t_value
            if t_value > value:
                best, value = t_best, t_value
        elif t_value > reference_value:
            frames, deep, best, value = t_frames, t_deep, t_best, t_value
            reference_value = t_value
            chosen.update(move)
    return best
