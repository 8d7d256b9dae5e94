"""Aligned layer-wise starting values, the default start of the exact EM.

:func:`aligned_init` fits layer 1 as a mixture of factor analysers, aligns every
component's latent frame onto a reference (:mod:`bayes_dgmm.em.registration`), fits the deeper
layers on the pooled aligned scores, recursively, and refines the frames. Why plain EM
fails on the study data and the steps: ``docs/aligned-start.md``; measurements:
``docs/recover.md``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm.em.driver import run_em
from bayes_dgmm.em.estep import e_step, path_model
from bayes_dgmm.em.exact import exact_step
from bayes_dgmm.em.frames import (
    aligned_loglik,
    apply_frames,
    compose_frames,
    refine_frames,
    whitening,
)
from bayes_dgmm.em.registration import (
    Registration,
    candidate_permutations,
    cluster_moments,
    match_frames,
)
from bayes_dgmm.em.starts import Labeller, factor_scores, kmeans_labels, layerwise_init
from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]

logger = logging.getLogger(__name__)


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
    if best is None:
        raise ValueError(f"n_init={n_init}: fit_mfa needs at least one start.")
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
        factor_scores(
            Y[labels == g], layer.eta[0][g], layer.Lambda[0][g], layer.psi[0][g], prior=False
        )
        for g in range(G)
    ]
    white = [whitening(S) if S.shape[0] > R + 1 else (np.eye(R), np.zeros(R)) for S in scores]
    candidates = _register(scores, white, n_components, n_factors, rng, opt)
    frames = [_then(w, regs[0]) if regs else w for w, regs in zip(white, candidates, strict=True)]
    deep = aligned_init(apply_frames(scores, frames), n_components[1:], n_factors[1:], rng, opt)
    frames, deep, _ = _alternate(scores, frames, deep, opt)
    best, value = _polish(Y, compose_frames(layer, frames, deep), opt)
    chosen = {g: regs[0] for g, regs in enumerate(candidates) if regs}
    moves = _moves(candidates, chosen, opt)
    comps, facts = tuple(int(g) for g in n_components), tuple(int(r) for r in n_factors)
    level = _Level(Y, layer, scores, white, comps, facts)
    return _settle(level, frames, deep, best, value, chosen, moves, rng, opt)


def _register(
    scores: list[Array],
    white: list[tuple[Array, Array]],
    n_components: Sequence[int],
    n_factors: Sequence[int],
    rng: np.random.Generator,
    opt: AlignOptions,
) -> list[list[Registration]]:
    """Per component, its registrations onto the reference, best first (step 3 of
    ``docs/aligned-start.md``); empty for a component too small to estimate its
    sub-clusters (it keeps an unaligned frame), and for all without ``opt.align``."""
    G, R = len(scores), int(n_factors[0])
    G2, R2 = int(n_components[1]), int(n_factors[1])
    n_fine = math.prod(n_components)
    enough = [S.shape[0] >= 4 * (R + 1) * G2 for S in scores]
    candidates: list[list[Registration]] = [[] for _ in range(G)]
    if not (opt.align and sum(enough) >= 2):
        return candidates
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
    logger.debug(
        "level G=%d: registration values %s",
        G,
        [[round(r.value, 3) for r in regs] for regs in candidates],
    )
    return candidates


def _moves(
    candidates: list[list[Registration]], chosen: dict[int, Registration], opt: AlignOptions
) -> list[dict[int, Registration]]:
    """Changes of correspondence worth scoring by the likelihood (``opt.n_alternatives``).

    A correspondence the moments cannot tell apart (sub-clusters of alike shapes) is settled
    by the likelihood, one move at a time: relabel the reference's sub-clusters by a
    transposition (every other component follows), or give one component a runner-up.
    """
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
    return moves


@dataclass(frozen=True)
class _Level:
    """One level of :func:`aligned_init`: its data, its layer's MFA, every component's
    subspace scores and whitening frame, and the architecture from this level up."""

    Y: Array
    layer: DGMMParams
    scores: list[Array]
    white: list[tuple[Array, Array]]
    n_components: tuple[int, ...]
    n_factors: tuple[int, ...]


def _settle(
    level: _Level,
    frames: list[tuple[Array, Array]],
    deep: DGMMParams,
    best: DGMMParams,
    value: float,
    chosen: dict[int, Registration],
    moves: list[dict[int, Registration]],
    rng: np.random.Generator,
    opt: AlignOptions,
) -> DGMMParams:
    """The best of the current correspondences and every one of ``moves``, by the polished
    likelihood of the level; a move is kept when it beats the current configuration."""
    G, G2, R2 = len(level.scores), level.n_components[1], level.n_factors[1]
    n_fine = math.prod(level.n_components)
    # every configuration, the current one included, is scored the same way, so that the
    # effort spent on the current one does not bias the choice
    reference_value = -math.inf
    current: list[dict[int, Registration]] = [{}] if moves else []
    for move in current + moves:
        trial = list(frames)
        for g, reg in {**chosen, **move}.items():
            trial[g] = _then(level.white[g], reg)
        # a fresh fit of the deeper layers where it is cheap (one layer): started from the
        # current one, it would favour the current correspondence
        start = deep
        if len(level.n_components) == 2:
            start, _ = fit_mfa(
                apply_frames(level.scores, trial),
                G2,
                R2,
                rng,
                n_init=opt.n_init_mfa,
                n_fine=n_fine // G,
            )
        t_frames, t_deep, _ = _alternate(level.scores, trial, start, opt)
        t_best, t_value = _polish(level.Y, compose_frames(level.layer, t_frames, t_deep), opt)
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
