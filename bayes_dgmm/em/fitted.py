"""What a fitted DGMM estimator answers from its parameters ``params_``: posteriors, labels,
log densities, samples and the information criteria (BIC, AIC, ICL).

:class:`FittedDGMMMixin` holds these methods for
:class:`~bayes_dgmm.em.estimator.DeepGaussianMixture`, in the manner of scikit-learn's mixins:
the estimator sets ``params_`` and ``n_features_in_`` in ``fit`` and has a ``random_state``.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import xlogy
from sklearn.exceptions import NotFittedError

from bayes_dgmm._validation import RandomLike, as_generator, check_data, check_feature_names
from bayes_dgmm.em.results import n_free_parameters
from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]


class FittedDGMMMixin:
    """Prediction, scoring, sampling and model selection from ``params_``."""

    params_: DGMMParams
    n_features_in_: int
    random_state: RandomLike

    # ------------------------------------------------------------------ checks
    def _check_input(self, X: Any, n_features: int | None = None, *, reset: bool = False) -> Array:
        check_feature_names(self, X, reset=reset)
        arr = check_data(X)
        if n_features is not None and arr.shape[1] != n_features:
            raise ValueError(
                f"X has {arr.shape[1]} features, but {type(self).__name__} is expecting "
                f"{n_features} features as input (as at fit time); pass data with the same "
                "columns."
            )
        return arr

    def _check_fitted(self) -> DGMMParams:
        if not hasattr(self, "params_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(X) first."
            )
        return self.params_

    # ------------------------------------------------------------------ inference
    def predict_proba(self, X: ArrayLike, layer: int | None = None) -> Array:
        """Posterior probabilities of the paths (N, P), or of layer ``layer``'s components.

        Parameters
        ----------
        X : (N, J) array-like
        layer : int in 1..L, optional
        """
        params = self._check_fitted()
        return params.predict_proba(self._check_input(X, self.n_features_in_), layer=layer)

    def predict(self, X: ArrayLike, layer: int | None = None) -> NDArray[np.intp]:
        """Most probable global path (0-based, :func:`bayes_dgmm.path_table` order), or the
        most probable component of layer ``layer`` (1-based layer), shape (N,)."""
        return np.argmax(self.predict_proba(X, layer=layer), axis=1).astype(np.intp)

    def score_samples(self, X: ArrayLike) -> Array:
        """Log density of each row of ``X``, shape (N,)."""
        params = self._check_fitted()
        return params.score_samples(self._check_input(X, self.n_features_in_))

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean log-likelihood per sample (scikit-learn convention)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1) -> tuple[Array, NDArray[np.intp]]:
        """Draw ``n_samples`` observations and their paths: ``(X (n, J), paths (n,))``."""
        params = self._check_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral):
            raise ValueError(f"n_samples={n_samples!r} must be a positive integer.")
        if n_samples < 1:
            raise ValueError(f"n_samples={n_samples} must be a positive integer.")
        return params.sample(int(n_samples), random_state=as_generator(self.random_state))

    # ------------------------------------------------------------------ model selection
    def n_parameters(self) -> int:
        """Number of free parameters (see :func:`n_free_parameters`)."""
        params = self._check_fitted()
        return n_free_parameters(params.n_features, params.n_components, params.n_factors)

    def bic(self, X: ArrayLike) -> float:
        """Bayesian information criterion ``-2 log L + k log N`` (lower is better)."""
        params = self._check_fitted()
        Xa = self._check_input(X, self.n_features_in_)
        ll = float(np.sum(params.score_samples(Xa)))
        return -2.0 * ll + self.n_parameters() * math.log(Xa.shape[0])

    def aic(self, X: ArrayLike) -> float:
        """Akaike information criterion ``-2 log L + 2 k`` (lower is better)."""
        ll = float(np.sum(self.score_samples(X)))
        return -2.0 * ll + 2.0 * self.n_parameters()

    def icl(self, X: ArrayLike) -> float:
        """Integrated completed likelihood: BIC plus twice the entropy of the path posteriors,
        ``BIC - 2 sum_i sum_p t_ip log t_ip`` (Biernacki et al. 2000; lower is better)."""
        proba = self.predict_proba(X)
        return self.bic(X) - 2.0 * float(np.sum(xlogy(proba, proba)))
