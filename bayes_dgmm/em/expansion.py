"""Parameter expansion of the exact EM: an affine working frame per component and layer.

The frame CM-step (:func:`frame_problem`, :func:`solve_frame`, :func:`frame_maps`) moves each
component's latent frame to its best value on the E-step statistics, :func:`reduce_frames`
folds the frames back into the parameters, and :func:`transform_statistics` carries the
statistics into the new parametrisation (used by :func:`bayes_dgmm.em.exact.expanded_m_step`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm.em.estep import EMPTY_FRACTION, PathStatistics, layer_slices
from bayes_dgmm.model.density import sym
from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]


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
