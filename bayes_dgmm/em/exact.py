"""Exact EM for the DGMM: closed-form M-step, identifiability rotations and the EM step.

The E-step statistics come from :mod:`bayes_dgmm.em.estep` (the posterior of the scores is
linear in ``x``), the parameter expansion from :mod:`bayes_dgmm.em.expansion`; the algebra is
in ``docs/exact-em.md``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import LinAlgError, cho_solve, cholesky

from bayes_dgmm.em.driver import Step, StepOutput
from bayes_dgmm.em.estep import (
    CHUNK_ROWS,
    EMPTY_FRACTION,
    PathStatistics,
    RegressionStatistics,
    chunked_statistics,
    layer_statistics,
    path_model,
)
from bayes_dgmm.em.expansion import frame_maps, reduce_frames, transform_statistics
from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]


def regression_update(
    n: Array, ybar: Array, wbar: Array, cyy: Array, cyw: Array, cww: Array, psi_floor: Array
) -> tuple[Array, Array, Array]:
    """Closed-form M-step of a stack of components: weighted regressions of ``y`` on ``[1, w]``.

    ``Lambda = C_yw C_ww^{-1}`` (Cholesky solve), ``eta = ybar - Lambda wbar`` and
    ``psi = diag(C_yy - Lambda C_wy) / n``, floored at ``psi_floor``.

    Parameters
    ----------
    n : (G,) expected counts (> 0)
    ybar : (G, Ry) ; wbar : (G, Rw) ; cyy : (G, Ry) ; cyw : (G, Ry, Rw) ; cww : (G, Rw, Rw)
    psi_floor : (Ry,) array, smallest allowed noise variance

    Returns
    -------
    eta (G, Ry), Lambda (G, Ry, Rw), psi (G, Ry)

    Raises
    ------
    scipy.linalg.LinAlgError if a ``cww`` is not positive definite.
    """
    Lc = cholesky(cww, lower=True, check_finite=False)
    Lambda = np.swapaxes(
        cho_solve((Lc, True), np.swapaxes(cyw, -1, -2), check_finite=False), -1, -2
    )
    eta = ybar - np.einsum("gij,gj->gi", Lambda, wbar)
    psi = (cyy - np.sum(Lambda * cyw, axis=-1)) / n[:, None]
    return eta, Lambda, np.maximum(psi, psi_floor)


def _update_components(
    rs: RegressionStatistics,
    floor: Array,
    done: NDArray[np.intp],
    eta: Array,
    Lambda: Array,
    psi: Array,
) -> list[int]:
    """Write the regression updates of components ``done`` into ``eta``, ``Lambda``, ``psi``
    (in place): all in one batch, or one by one when the batch fails, to find the singular
    components (returned; they keep their values)."""

    def update(k: NDArray[np.intp]) -> None:
        eta[k], Lambda[k], psi[k] = regression_update(
            rs.n[k], rs.ybar[k], rs.wbar[k], rs.cyy[k], rs.cyw[k], rs.cww[k], floor
        )

    try:
        update(done)
        return []
    except LinAlgError:
        singular = []
        for g in done:
            try:
                update(np.array([g]))
            except LinAlgError:
                singular.append(int(g))
        return singular


def variance_floor(var: Array, reg_psi: float) -> Array:
    """``reg_psi`` times the variance of each coordinate (a unit scale where it is 0)."""
    scale = np.where(var > 0, var, 1.0)
    return reg_psi * scale


def m_step(
    stats: PathStatistics, params: DGMMParams, reg_psi: float, var_x: Array
) -> tuple[DGMMParams, list[tuple[int, int]], list[tuple[int, int]]]:
    """Closed-form maximisation of the expected complete log-likelihood.

    The expected complete log-likelihood separates into one term per layer and component
    (the regressions) plus the weights, each maximised exactly, so the log-likelihood never
    decreases. A component with expected count below ``EMPTY_FRACTION * N`` (empty), or
    whose regressor moment is not positive definite (singular), keeps its previous
    parameters, which keeps the step monotone. The noise variances are floored at
    ``reg_psi`` times the variance of ``z^(l-1)`` (of ``x``, ``var_x``, in layer 1).

    Returns
    -------
    params : the new parameters
    empty : list of (layer, component) pairs (1-based layer, 0-based component) that kept
        their previous parameters because they hold (almost) no observation
    singular : the same for components whose update could not be computed (their scores'
        second-moment matrix is singular)
    """
    N = float(stats.n.sum())
    table = params.paths
    pi, eta, Lambda, psi = [], [], [], []
    empty: list[tuple[int, int]] = []
    singular: list[tuple[int, int]] = []
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
        full = rs.n >= EMPTY_FRACTION * N
        empty += [(l, int(g)) for g in np.flatnonzero(~full)]
        singular += [
            (l, g) for g in _update_components(rs, floor, np.flatnonzero(full), eta_l, lam_l, psi_l)
        ]
        tiny = np.finfo(np.float64).tiny
        w = np.maximum(rs.n, tiny * N)
        pi.append(w / w.sum())
        eta.append(eta_l)
        Lambda.append(lam_l)
        psi.append(psi_l)
    return DGMMParams.unchecked(pi=pi, eta=eta, Lambda=Lambda, psi=psi), empty, singular


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
    return DGMMParams.unchecked(
        pi=params.pi,
        eta=params.eta,
        Lambda=[
            rotate_loadings(lam, psi, constraint)
            for lam, psi in zip(params.Lambda, params.psi, strict=True)
        ],
        psi=params.psi,
    )


def expanded_m_step(
    stats: PathStatistics,
    params: DGMMParams,
    reg_psi: float,
    var_x: Array,
    *,
    cycles: int = 1,
) -> tuple[DGMMParams, list[tuple[int, int]], list[tuple[int, int]]]:
    """The M-step of parameter-expanded EM: ``cycles`` rounds of the closed-form M-step
    (:func:`m_step`) and the frame CM-step (:func:`frame_maps`, :func:`reduce_frames`) on
    the same E-step statistics, carried into each new parametrisation by
    :func:`transform_statistics`. Every round increases the expected complete-data
    log-likelihood of the expanded model, so the log-likelihood never decreases.

    One cycle is the default: on the study data from the aligned start, 1, 2 and 3 cycles
    reach the same optimum (ARI 1.0, converged by the Newton finish) in 82, 98 and 97 s, the
    extra cycles costing more than the Newton steps they save (``docs/em-speed.md``)."""
    new, empty, singular = m_step(stats, params, reg_psi, var_x)
    for c in range(cycles):
        maps = frame_maps(stats, new)
        new = reduce_frames(new, maps)
        if c == cycles - 1:
            break
        stats = transform_statistics(stats, new, maps)
        new, empty, singular = m_step(stats, new, reg_psi, var_x)
    return new, empty, singular


# ---------------------------------------------------------------------- the step
def canonical(params: DGMMParams) -> DGMMParams:
    """The same distribution with the redundant directions pinned: :meth:`DGMMParams.anchored`
    (location and scale of the intermediate scores) and the top layer's loadings rotated to
    lower-triangular form (``z^(L) ~ N(0, I)`` makes that rotation exact; unlike an ordering
    by variance, it is continuous in the loadings)."""
    anchored = params.anchored()
    lam = list(anchored.Lambda)
    lam[-1] = rotate_loadings(lam[-1], anchored.psi[-1], "lower_triangular")
    return DGMMParams.unchecked(pi=anchored.pi, eta=anchored.eta, Lambda=lam, psi=anchored.psi)


def exact_step(
    X: Array,
    *,
    reg_psi: float,
    constraint: str | None = None,
    expand: bool = True,
    chunk_rows: int | None = None,
) -> Step:
    """The exact EM iteration as a step of :func:`bayes_dgmm.em.driver.run_em`.

    E-step, then the M-step: with ``expand``, the parameter-expanded one
    (:func:`bayes_dgmm.em.exact.expanded_m_step`) followed by :func:`canonical`; without,
    the closed-form one. Then the identifiability ``constraint`` if any. The log-likelihood
    never decreases (without a constraint). The E-step runs ``chunk_rows`` rows at a time
    (default :data:`~bayes_dgmm.em.estep.CHUNK_ROWS`), so its memory does not grow with N.
    """
    var_x = X.var(axis=0)
    rows = CHUNK_ROWS if chunk_rows is None else int(chunk_rows)

    def step(params: DGMMParams) -> StepOutput:
        model = path_model(params)
        loglik, stats = chunked_statistics(
            X, model, params.n_components[0], params.n_factors[0], rows
        )
        if expand:
            new, empty, singular = expanded_m_step(stats, params, reg_psi, var_x)
        else:
            new, empty, singular = m_step(stats, params, reg_psi, var_x)
        if constraint is not None:
            new = apply_constraint(new, constraint)
        elif expand:
            # the working maps also move along the directions that leave the model unchanged
            # (the location and scale of intermediate scores, rotations of the top one);
            # pinning them keeps the iterates, and Anderson's secants, out of that drift
            new = canonical(new)
        return StepOutput(new, loglik, tuple(empty), tuple(singular))

    return step
