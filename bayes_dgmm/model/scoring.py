"""Data under a DGMM: the log density of every row and path, in row blocks, and the
posteriors and labels of the paths (or of one layer's components).

The kernel :func:`paths_log_density` takes arrays; the blocked functions take the kernel of
one set of parameters (``log_prob_paths: (n, J) rows -> (n, n_paths)``), so that memory
beyond the result stays flat in N. :class:`~bayes_dgmm.model.params.DGMMParams` scores through
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm.model.density import log_normalize, lowrank_logpdf
from bayes_dgmm.model.paths import aggregate_paths

Array = NDArray[np.float64]

#: Rows per block of ``score_samples`` and ``predict``.
SCORE_CHUNK_ROWS = 65536


def paths_log_density(
    X: Array, eta1: Array, Lambda1: Array, psi1: Array, m1: Array, C1: Array, log_w: Array
) -> Array:
    """Joint log density ``log pi_p + log N(x; mu_p, Sigma_p)`` of every row and path.

    Path ``p = g + G_1 s`` (component ``g`` of layer 1 over sub-path ``s`` of the layers
    above) has covariance ``diag(psi1_g) + W W^T`` with ``W = Lambda1_g C1_s``
    (:func:`~bayes_dgmm.model.density.lowrank_logpdf`: Woodbury, no inverse).

    Parameters
    ----------
    X : (N, J) ; eta1, psi1 : (G_1, J) ; Lambda1 : (G_1, J, R_1)
    m1 : (S, R_1) means and C1 : (S, R_1, R_1) Cholesky factors of ``z^(1)`` per sub-path
    log_w : (G_1 S,) log path weights

    Returns
    -------
    (N, G_1 S) array
    """
    G1 = Lambda1.shape[0]
    out = np.empty((X.shape[0], G1 * m1.shape[0]))
    for s in range(m1.shape[0]):
        for g in range(G1):
            lam, p = Lambda1[g], g + G1 * s
            mean = eta1[g] + lam @ m1[s]
            out[:, p] = lowrank_logpdf(X, mean, lam @ C1[s], psi1[g])[0] + log_w[p]
    return out


def log_density_rows(log_prob_paths: Callable[[Array], Array], X: Array, scale: float) -> Array:
    """Log density of each row of ``X``, shape (N,), :data:`SCORE_CHUNK_ROWS` rows at a time;
    ``scale`` (the largest loading or variance) goes into the errors' advice."""
    out = np.empty(X.shape[0])
    advice = (
        f"(largest loading or variance {scale:.3g}); rescale the parameters (and X) to "
        "moderate values."
    )
    try:
        with np.errstate(invalid="ignore", over="ignore"):
            for start in range(0, X.shape[0], SCORE_CHUNK_ROWS):
                rows = slice(start, start + SCORE_CHUNK_ROWS)
                out[rows] = log_normalize(log_prob_paths(X[rows]))[0]
    except np.linalg.LinAlgError:
        raise ValueError(
            f"a covariance of the model is not positive definite in float64 {advice}"
        ) from None
    bad = np.flatnonzero(np.isnan(out))
    if bad.size:
        raise ValueError(
            f"the log density of X row {bad[0] + 1} (counted from 1; {bad.size} such rows) "
            f"is NaN: a covariance overflows float64 {advice}"
        )
    return out


def path_posteriors(
    log_prob_paths: Callable[[Array], Array],
    X: Array,
    n_components: Sequence[int],
    layer: int | None,
    offset: int = 0,
) -> Array:
    """Posterior probabilities of the paths (N, n_paths), or of layer ``layer``'s components
    (N, G_l), of validated rows, the first being row ``offset`` (for the errors)."""
    log_prob = log_prob_paths(X)
    bad = ~np.any(np.isfinite(log_prob), axis=1) | np.any(np.isnan(log_prob), axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"X row {offset + i + 1} (counted from 1; {int(bad.sum())} such rows) has no "
            "finite log density under any path (largest magnitude "
            f"{float(np.max(np.abs(X[i]))):.3g}): its values are too far from the model "
            "for float64; rescale X as the training data were, or drop the row."
        )
    proba = log_normalize(log_prob)[1]
    if layer is None:
        return proba
    return aggregate_paths(proba, n_components, layer)


def predict_rows(
    log_prob_paths: Callable[[Array], Array],
    X: Array,
    n_components: Sequence[int],
    layer: int | None,
) -> NDArray[np.intp]:
    """Most probable path (or component of layer ``layer``) of each row of ``X``, computed
    :data:`SCORE_CHUNK_ROWS` rows at a time."""
    out = np.empty(X.shape[0], dtype=np.intp)
    for start in range(0, X.shape[0], SCORE_CHUNK_ROWS):
        rows = slice(start, start + SCORE_CHUNK_ROWS)
        proba = path_posteriors(log_prob_paths, X[rows], n_components, layer, start)
        out[rows] = np.argmax(proba, axis=1)
    return out
