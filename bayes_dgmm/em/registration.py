"""Registration of latent frames: the affine map that lays one component's sub-clusters
onto another's (step 3 of :func:`bayes_dgmm.em.aligned.aligned_init`; the method is in
``docs/recover.md``).

The sub-clusters are summarised by their moments (:class:`ClusterMoments`); every
correspondence of them is registered by L-BFGS from several starts (:func:`register_moments`)
and the best ones kept per component (:func:`match_frames`). Every function is pure: arrays
in, arrays out; randomness only through a ``Generator``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import cho_solve, eigh, lu_factor, lu_solve
from scipy.optimize import minimize

Array = NDArray[np.float64]

#: Largest number of sub-cluster correspondences tried exhaustively per component
#: (``G_{l+1}! <= 24``, i.e. up to 4 sub-clusters); above it, a ranked subset is tried.
MAX_PERMUTATIONS = 24


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


def unpack_affine(theta: Array, R: int) -> tuple[Array, Array]:
    """``(A, c)`` from the vector ``theta`` of an affine map: ``A`` (R, R) row-major, then ``c``."""
    return theta[: R * R].reshape(R, R), theta[R * R :]


def affine_factors(theta: Array, R: int) -> tuple[Array, Array, tuple[Array, Array], Array] | None:
    """``(A, c)`` of :func:`unpack_affine`, the LU factors of ``A`` and their diagonal (whose
    log magnitudes sum to ``log|det A|``); None where ``A`` is singular."""
    A, c = unpack_affine(theta, R)
    lu = lu_factor(A, check_finite=False)
    diag = np.diag(lu[0])
    if np.any(diag == 0):
        return None
    return A, c, lu, diag


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
    factors = affine_factors(theta, R)
    if factors is None:
        return math.inf, np.zeros_like(theta)
    A, c, lu, diag = factors
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


#: Largest clusters whose pairs give a joint-diagonalisation start (3 pairs of 3)
COVARIANCE_CLUSTERS = 3


def _sign_choice(W: Array) -> Array:
    """Signs ``s`` (entries +-1) maximising ``s^T W s``: the signs of the leading
    eigenvector, then single flips while one gains (a local optimum of the max-cut-like
    problem, exact when ``W`` is close to rank one, as it is near the true map)."""
    _, vec = np.linalg.eigh(0.5 * (W + W.T))
    s = np.where(vec[:, -1] >= 0, 1.0, -1.0)
    for _ in range(4 * W.shape[0]):
        gain = -4.0 * s * (W @ s - np.diag(W) * s)  # change of s^T W s when s_a flips
        a = int(np.argmax(gain))
        if gain[a] <= 1e-12 * abs(float(s @ W @ s)):
            break
        s[a] = -s[a]
    return s


def covariance_starts(ref: ClusterMoments, moving: ClusterMoments) -> list[Array]:
    """Starting maps ``A`` of :func:`register_moments` from the clusters' covariances.

    For two clusters ``k, l`` the generalised eigenvectors ``V`` of ``(B_l, B_k)`` (moving
    frame) and ``U`` of ``(S_l, S_k)`` (reference) make both covariances diagonal; if
    ``A B A^T = S`` for both clusters and the eigenvalues are distinct, ``U^T A = D V^T`` with
    ``D`` a diagonal of signs, so ``A = U^{-T} D V^T``. The signs are chosen by how well the
    other clusters' covariances and the mean differences agree in those coordinates. One start
    per pair among the :data:`COVARIANCE_CLUSTERS` largest clusters.

    Random rotations find the best registration of an 11-dimensional frame with three
    sub-clusters in few of 60 starts on the study data; these starts land in its basin.

    Returns
    -------
    list of (R, R) arrays (empty when a covariance is not positive definite)
    """
    K = ref.n.shape[0]
    big = np.argsort(-np.minimum(ref.n, moving.n), kind="stable")[:COVARIANCE_CLUSTERS]
    starts: list[Array] = []
    for k, l in itertools.combinations(sorted(big.tolist()), 2):
        try:
            _, V = eigh(moving.cov[l], moving.cov[k], check_finite=False)
            _, U = eigh(ref.cov[l], ref.cov[k], check_finite=False)
        except np.linalg.LinAlgError:
            continue
        W = np.zeros((V.shape[1], V.shape[1]))
        linear = np.zeros(V.shape[1])
        for j in range(K):
            if j not in (k, l):
                W += (V.T @ moving.cov[j] @ V) * (U.T @ ref.cov[j] @ U)
            if j != k:
                m = V.T @ (moving.mean[j] - moving.mean[k])
                r = U.T @ (ref.mean[j] - ref.mean[k])
                W += np.outer(m * r, m * r)
                linear += m * r
        s = _sign_choice(W)
        if s @ linear < 0:  # s^T W s does not see a global flip; the means do
            s = -s
        starts.append(np.linalg.solve(U.T, s[:, None] * V.T))
    return starts


def register_moments(
    ref: ClusterMoments, moving: ClusterMoments, rng: np.random.Generator, *, n_starts: int = 4
) -> tuple[Array, Array, float]:
    """Affine map ``z -> A z + c`` that best lays ``moving``'s clusters onto ``ref``'s.

    Both sets are expected in whitened coordinates, where the true map is close to
    orthogonal. The objective is not concave in ``A`` and has many local optima; L-BFGS
    starts from the weighted Procrustes rotation of the cluster means, from the
    joint-diagonalisation maps of :func:`covariance_starts` and from ``n_starts`` random
    rotations.

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
    starts = [procrustes(moving.mean, ref.mean, w), *covariance_starts(ref, moving)]
    starts += [random_rotation(R, rng) for _ in range(n_starts)]
    best: tuple[Array, Array, float] | None = None
    for Q in starts:
        # the offset that matches the weighted mean of the cluster means
        c0 = (w @ (ref.mean - moving.mean @ Q.T)) / max(float(w.sum()), 1e-300)
        theta0 = np.concatenate([Q.ravel(), c0])
        res = minimize(
            registration_objective,
            theta0,
            args=(ref.mean, prec, const, moving),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 500},
        )
        if np.isfinite(res.fun) and (best is None or res.fun < best[2]):
            A, c = unpack_affine(res.x, R)
            best = (A.copy(), c.copy(), float(res.fun))
    if best is None:
        raise FloatingPointError(
            f"registering a frame: no start of L-BFGS (of {len(starts)}) reached a finite "
            "objective; the sub-clusters' moments are degenerate."
        )
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
