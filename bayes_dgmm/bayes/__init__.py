"""Bayesian inference of the DGMM with PyMC.

- :mod:`~bayes_dgmm.bayes.model`: :func:`build_model`, data and spec to a ``pm.Model``;
- :mod:`~bayes_dgmm.bayes.estimator`: :class:`BayesianDeepGaussianMixture`, a thin class;
- :mod:`~bayes_dgmm.bayes.backends`: one module per inference route.
"""

from bayes_dgmm.bayes.estimator import BayesianDeepGaussianMixture
from bayes_dgmm.bayes.model import build_model

__all__ = ["BayesianDeepGaussianMixture", "build_model"]
