"""Starting values for the EM algorithms, built layer by layer.

Both strategies partition the current level's data (``x`` for layer 1, then the pooled
posterior scores of the layer below), fit a factor analyser to every part in closed form
(probabilistic PCA loadings, diagonal residual variances), and pass the posterior scores
``E[z | y]`` (under a standard normal prior) up to the next layer:

- ``"kmeans"``: the partition is k-means (scikit-learn ``KMeans``, seeded from ``rng``);
- ``"random"``: every observation goes to a component drawn uniformly at random.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import cho_solve, cholesky

from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]

Labeller = Callable[[Array, int, np.random.Generator], NDArray[np.intp]]

#: Smallest initial noise variance, as a fraction of the part's own variance.
INIT_PSI_FRACTION = 1e-3


def kmeans_labels(Y: Array, n_components: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """k-means partition of the rows of ``Y`` (N, R) into ``n_components`` parts, shape (N,)."""
    from sklearn.cluster import KMeans

    seed = int(rng.integers(2**31 - 1))
    km = KMeans(n_clusters=n_components, n_init=1, random_state=seed)
    return km.fit_predict(Y).astype(np.intp)


def random_labels(Y: Array, n_components: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """Uniform random partition of the rows of ``Y`` (N, R), shape (N,)."""
    return np.asarray(rng.integers(n_components, size=Y.shape[0]), dtype=np.intp)


def factor_analyser(Y: Array, n_factors: int, total_cov: Array) -> tuple[Array, Array, Array]:
    """Closed-form factor analyser of the rows of ``Y`` (n, R_in).

    The covariance is shrunk towards ``total_cov`` with the weight of one observation, so
    parts with fewer rows than dimensions (or one row) still give positive variances. The
    loadings are the probabilistic-PCA ones, ``U_R (ev_R - sigma^2)^{1/2}``; the noise
    variances are the residual diagonal, floored at ``INIT_PSI_FRACTION`` of the variance.

    Parameters
    ----------
    Y : (n, R_in) array (n may be 0)
    n_factors : int, R < R_in
    total_cov : (R_in, R_in) array, covariance of all rows of this level

    Returns
    -------
    eta (R_in,), Lambda (R_in, R), psi (R_in,)
    """
    n = Y.shape[0]
    mean = Y.mean(axis=0) if n else np.zeros(total_cov.shape[0])
    resid = Y - mean
    cov = (resid.T @ resid + total_cov) / (n + 1)
    ev, vec = np.linalg.eigh(cov)
    ev, vec = ev[::-1], vec[:, ::-1]
    sigma2 = float(np.mean(ev[n_factors:]))
    top = np.maximum(ev[:n_factors] - sigma2, 1e-6 * max(ev[0], np.finfo(np.float64).tiny))
    Lambda = vec[:, :n_factors] * np.sqrt(top)
    var = np.diag(cov)
    tiny = np.finfo(np.float64).tiny
    psi = np.maximum(var - np.sum(Lambda**2, axis=1), INIT_PSI_FRACTION * var + tiny)
    return mean, Lambda, psi


def factor_scores(Y: Array, eta: Array, Lambda: Array, psi: Array, *, prior: bool = True) -> Array:
    """Scores of the rows of ``Y`` under the factor analyser ``y = eta + Lambda z + u``.

    ``prior=True``: the posterior means ``E[z | y]`` under ``z ~ N(0, I)``,
    ``(I + Lambda^T Psi^-1 Lambda)^{-1} Lambda^T Psi^-1 (y - eta)``. ``prior=False``: the
    generalised least-squares (Bartlett) coordinates in the subspace,
    ``(Lambda^T Psi^-1 Lambda)^{-1} Lambda^T Psi^-1 (y - eta)``, the maximiser of the
    likelihood of ``z`` free of any prior on it (for the aligned start, where the deeper
    layers' mixture is that prior and is not known yet).

    Parameters
    ----------
    Y : (n, R_in) ; eta : (R_in,) ; Lambda : (R_in, R) ; psi : (R_in,)

    Returns
    -------
    (n, R) array
    """
    Lt = Lambda / psi[:, None]
    M = Lambda.T @ Lt
    if prior:
        M[np.diag_indices_from(M)] += 1.0
    c = cholesky(M, lower=True, check_finite=False)
    return cho_solve((c, True), ((Y - eta) @ Lt).T, check_finite=False).T


def layerwise_init(
    X: Array,
    n_components: Sequence[int],
    n_factors: Sequence[int],
    rng: np.random.Generator,
    labeller: Labeller,
) -> DGMMParams:
    """Parameters fitted layer by layer from partitions given by ``labeller``.

    Parameters
    ----------
    X : (N, J) array
    n_components, n_factors : the architecture, layer 1 first
    rng : source of randomness for the partitions
    labeller : ``(Y, G, rng) -> (N,) labels``, e.g. :func:`kmeans_labels`

    Returns
    -------
    DGMMParams with weights from the part sizes (an empty part gets the weight of half an
    observation).
    """
    Y = X
    pi, eta, Lambda, psi = [], [], [], []
    for G, R in zip(n_components, n_factors, strict=True):
        labels = labeller(Y, G, rng)
        total_cov = np.atleast_2d(np.cov(Y, rowvar=False))
        scores = np.empty((Y.shape[0], R))
        eta_l, lam_l, psi_l = [], [], []
        for g in range(G):
            rows = labels == g
            e, lam, p = factor_analyser(Y[rows], R, total_cov)
            scores[rows] = factor_scores(Y[rows], e, lam, p)
            eta_l.append(e)
            lam_l.append(lam)
            psi_l.append(p)
        counts = np.bincount(labels, minlength=G).astype(np.float64)
        counts = np.maximum(counts, 0.5)
        pi.append(counts / counts.sum())
        eta.append(np.stack(eta_l))
        Lambda.append(np.stack(lam_l))
        psi.append(np.stack(psi_l))
        Y = scores
    return DGMMParams(pi=pi, eta=eta, Lambda=Lambda, psi=psi)


def init_kmeans(
    X: Array, n_components: Sequence[int], n_factors: Sequence[int], rng: np.random.Generator
) -> DGMMParams:
    """k-means on ``x``, then on the pooled scores of each layer (module docstring)."""
    return layerwise_init(X, n_components, n_factors, rng, kmeans_labels)


def init_random(
    X: Array, n_components: Sequence[int], n_factors: Sequence[int], rng: np.random.Generator
) -> DGMMParams:
    """Uniform random partitions of ``x`` and of each layer's pooled scores."""
    return layerwise_init(X, n_components, n_factors, rng, random_labels)


INITIALISERS: dict[str, Callable[..., DGMMParams]] = {
    "kmeans": init_kmeans,
    "random": init_random,
}
