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
    """Expected complete-data terms of the working frames ``w = B z + d`` of one layer's
    components, stacked over the components.

    For component ``g`` of layer ``l``, ``z = z^(l)`` on the paths through ``g``, centred at
    their weighted mean ``m_g``. With ``beta_r = [b_r; d~_r]`` (row ``r`` of ``B`` and of
    ``d~ = d + B m_g``) the objective is
    ``-1/2 sum_r beta_r^T H_r beta_r + sum_r beta_r^T q_r + n_g log|det B|``: concave.

    Attributes
    ----------
    H : (G, R, R + 1, R + 1) array ; q : (G, R, R + 1) array ; n : (G,) array ;
    m : (G, R) array
    """

    H: Array
    q: Array
    n: Array
    m: Array


def frame_problem(stats: PathStatistics, params: DGMMParams, layer: int) -> FrameProblem:
    """Collect :class:`FrameProblem` of every component of layer ``layer`` (1-based).

    The working map acts on ``z^(l)`` inside the density of ``z^(l)`` given ``z^(l+1)``
    (layer ``l + 1``'s regression, grouped by its component ``h``), or inside
    ``z^(L) ~ N(0, I)`` at the top layer: ``B z + d - eta_h - Lambda_h z^(l+1) ~
    N(0, Psi_h)``. Every term is a moment of the E-step statistics, summed over the paths
    through each component with one product per term (no loop over paths).
    """
    table, L = params.paths, params.n_layers
    blocks = layer_slices(params.n_factors)
    sl = blocks[layer - 1]
    R = sl.stop - sl.start
    G = params.n_components[layer - 1]
    tiny = np.finfo(np.float64).tiny
    onehot = (table[:, layer - 1][None, :] == np.arange(G)[:, None]).astype(np.float64)
    wn = onehot * stats.n[None, :]  # (G, P)
    n = wn.sum(axis=1)
    zb = stats.zbar[:, sl]  # (P, R)
    m = wn @ zb / np.maximum(n, tiny)[:, None]
    own = table[:, layer - 1]
    zt = zb - m[own]  # (P, R), centred at the path's component mean
    n_p = stats.n
    P = n_p.shape[0]
    suu = np.empty((P, R + 1, R + 1))
    suu[:, :R, :R] = stats.czz[:, sl, sl] + n_p[:, None, None] * zt[:, :, None] * zt[:, None, :]
    suu[:, :R, R] = suu[:, R, :R] = n_p[:, None] * zt
    suu[:, R, R] = n_p
    if layer < L:
        up = blocks[layer]
        zb_up = stats.zbar[:, up]
        m_up = wn @ zb_up / np.maximum(n, tiny)[:, None]
        zt_up = zb_up - m_up[own]
        h = table[:, layer]
        lam, psi = params.Lambda[layer][h], params.psi[layer][h]  # (P, R, R_up), (P, R)
        suz = np.empty((P, R + 1, zt_up.shape[1]))
        suz[:, :R] = stats.czz[:, sl, up] + n_p[:, None, None] * zt[:, :, None] * zt_up[:, None, :]
        suz[:, R] = n_p[:, None] * zt_up
        target_mean = params.eta[layer][h] + np.einsum("prs,ps->pr", lam, m_up[own])
        # E[u t^T] per path, (P, R + 1, R)
        sut = suz @ np.swapaxes(lam, 1, 2) + suu[:, :, R, None] * target_mean[:, None, :]
        w = 1.0 / psi
        q = np.einsum("gp,pir,pr->gri", onehot, sut, w)
    else:
        w = np.ones((P, R))
        q = np.zeros((G, R, R + 1))
    H = np.einsum("gp,pr,pij->grij", onehot, w, suu)
    return FrameProblem(H=H, q=q, n=n, m=m)


def _frame_values(beta: Array, H: Array, q: Array, n: Array) -> Array:
    """The frame objective of every component (``-inf`` where ``det B <= 0``)."""
    R = beta.shape[1]
    sign, logdet = np.linalg.slogdet(beta[:, :, :R])
    quad = np.einsum("gri,grij,grj->g", beta, H, beta)
    value = -0.5 * quad + np.sum(beta * q, axis=(1, 2)) + n * logdet
    return np.where(sign > 0, value, -np.inf)


def _newton_directions(beta: Array, H: Array, q: Array, n: Array) -> tuple[Array, Array]:
    """Gradient and Newton step of the frame objective, one batched solve for all components.

    The gradient and Hessian of ``log|det B|`` are written in ``B^-1``'s entries; ``B`` is
    ``R x R`` and stays near the identity, so the explicit inverse is cheap and accurate.
    A component whose Hessian is singular gets a zero step (its frame stays).
    """
    G, R = beta.shape[:2]
    K = R * (R + 1)
    B_inv = np.linalg.inv(beta[:, :, :R])
    grad = q - np.einsum("grij,grj->gri", H, beta)
    grad[:, :, :R] += n[:, None, None] * np.swapaxes(B_inv, 1, 2)
    hess = -np.einsum("gijk,il->gijlk", H, np.eye(R))
    hess[:, :, :R, :, :R] -= n[:, None, None, None, None] * np.einsum(
        "gjk,gli->gijkl", B_inv, B_inv
    )
    hess = hess.reshape(G, K, K)
    rhs = -grad.reshape(G, K, 1)
    try:
        step = np.linalg.solve(hess, rhs)[..., 0]
    except np.linalg.LinAlgError:
        step = np.zeros((G, K))
        for k in range(G):
            try:
                step[k] = np.linalg.solve(hess[k], rhs[k])[:, 0]
            except np.linalg.LinAlgError:
                pass
    return grad, step.reshape(G, R, R + 1)


def solve_frames(prob: FrameProblem, max_newton: int = 20) -> tuple[Array, Array]:
    """Maximise every component's concave frame objective by Newton's method from the
    identity map, the components' steps in one batched solve, each with its own
    backtracking line search; a component stops when its Newton decrement is below 1e-10
    or no step increases its objective.

    Returns
    -------
    B : (G, R, R) ; d : (G, R), the working maps ``w = B z + d`` in ``z``'s own coordinates
    (the identity where no step increases the objective).
    """
    G, R = prob.m.shape
    beta = np.concatenate([np.broadcast_to(np.eye(R), (G, R, R)), prob.m[:, :, None]], axis=2)
    value = _frame_values(beta, prob.H, prob.q, prob.n)
    active = np.isfinite(value)
    for _ in range(max_newton):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        H, q, n = prob.H[idx], prob.q[idx], prob.n[idx]
        grad, step = _newton_directions(beta[idx], H, q, n)
        decrement = np.sum(grad * step, axis=(1, 2))
        pending = decrement > 1e-10
        accepted = np.zeros(idx.size, dtype=bool)
        t = 1.0
        while pending.any() and t > 1e-8:
            trial = beta[idx] + t * step
            trial_value = _frame_values(trial, H, q, n)
            better = pending & (trial_value > value[idx])
            beta[idx[better]] = trial[better]
            value[idx[better]] = trial_value[better]
            accepted |= better
            pending &= ~better
            t *= 0.5
        active[idx[~accepted]] = False
    B = beta[:, :, :R]
    return B, beta[:, :, R] - np.einsum("grs,gs->gr", B, prob.m)


FrameMaps = dict[tuple[int, int], tuple[Array, Array]]


def frame_maps(stats: PathStatistics, params: DGMMParams) -> FrameMaps:
    """The parameter-expansion CM-step: the best working map ``w = B z^(l) + d`` of every
    component ``g`` of every layer ``l`` given the E-step statistics and ``params``.

    The working maps enter disjoint terms of the expected complete-data log-likelihood, so
    each is solved on its own; the components of one layer are solved together
    (:func:`solve_frames`); components with no weight are skipped.

    Returns
    -------
    dict mapping ``(l, g)`` (1-based layer) to ``(B (R_l, R_l), d (R_l,))``
    """
    maps: FrameMaps = {}
    tiny = EMPTY_FRACTION * float(stats.n.sum())
    for l in range(1, params.n_layers + 1):
        prob = frame_problem(stats, params, l)
        keep = np.flatnonzero(prob.n >= tiny)
        if keep.size == 0:
            continue
        B, d = solve_frames(FrameProblem(prob.H[keep], prob.q[keep], prob.n[keep], prob.m[keep]))
        for k, g in enumerate(keep):
            maps[(l, int(g))] = (B[k], d[k])
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
    return DGMMParams.unchecked(pi=params.pi, eta=eta, Lambda=lam, psi=params.psi)


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
    for l, sl in enumerate(blocks, start=1):
        for g in range(params.n_components[l - 1]):
            found = maps.get((l, g))
            if found is not None:
                on = table[:, l - 1] == g
                T[on, sl, sl], offset[on, sl] = found
    s1 = blocks[0]
    return PathStatistics(
        n=stats.n,
        xbar=stats.xbar,
        cxx=stats.cxx,
        zbar=np.einsum("pij,pj->pi", T, stats.zbar) + offset,
        czz=sym(T @ stats.czz @ np.swapaxes(T, 1, 2)),
        cxz1=stats.cxz1 @ np.swapaxes(T[:, s1, s1], 1, 2),
    )
