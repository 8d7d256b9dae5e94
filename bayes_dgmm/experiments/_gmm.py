"""scikit-learn's GaussianMixture as a baseline that does not depend on the data's units: it
is fitted to the data centred and divided by each feature's standard deviation (its
``reg_covar`` is absolute), and its log-likelihood and BIC are mapped back to the data's units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def location_scale(X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each column's mean and standard deviation (1 for a constant column), computed on
    ``X / max|X|`` so that neither underflows nor overflows at extreme units."""
    big = float(np.max(np.abs(X))) if X.size else 1.0
    big = big if np.isfinite(big) and big > 0 else 1.0
    Y = X / big
    scale = Y.std(axis=0) * big
    return Y.mean(axis=0) * big, np.where(scale > 0, scale, 1.0)


class ScaledGaussianMixture:
    """A fitted GaussianMixture of standardised data, used in the data's units."""

    def __init__(self, n_components: int, **kwargs: Any) -> None:
        from sklearn.mixture import GaussianMixture

        self.gmm = GaussianMixture(n_components, **kwargs)

    def fit(self, X: NDArray[np.float64]) -> ScaledGaussianMixture:
        self.center_, self.scale_ = location_scale(X)
        self.gmm.fit(self._standardise(X))
        return self

    def _standardise(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return (X - self.center_) / self.scale_

    @property
    def converged_(self) -> bool:
        return bool(self.gmm.converged_)

    @property
    def n_iter_(self) -> int:
        return int(self.gmm.n_iter_)

    def predict(self, X: NDArray[np.float64]) -> NDArray[np.intp]:
        return self.gmm.predict(self._standardise(X))

    def log_likelihood(self, X: NDArray[np.float64]) -> float:
        """Total log-likelihood of ``X`` in its units (the Jacobian of the scaling added)."""
        log_jacobian = float(np.log(self.scale_).sum())
        return float(self.gmm.score(self._standardise(X)) * X.shape[0]) - X.shape[0] * log_jacobian

    def bic(self, X: NDArray[np.float64]) -> float:
        """``-2 log L + k log N`` in the data's units."""
        log_jacobian = float(np.log(self.scale_).sum())
        return float(self.gmm.bic(self._standardise(X))) + 2 * X.shape[0] * log_jacobian
