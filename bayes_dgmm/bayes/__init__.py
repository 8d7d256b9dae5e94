"""Bayesian inference of the DGMM with PyMC.

- :mod:`~bayes_dgmm.bayes.model`: :func:`build_model`, data and spec to a ``pm.Model``;
- :mod:`~bayes_dgmm.bayes.estimator`: :class:`BayesianDeepGaussianMixture`, a thin class;
- :mod:`~bayes_dgmm.bayes.backends`: one module per inference route (PyMC, nutpie);
- :mod:`~bayes_dgmm.bayes.postprocess`: log-likelihoods, point estimates, label probabilities;
- :mod:`~bayes_dgmm.bayes.io`: save and load fits.
"""

from typing import TYPE_CHECKING

from bayes_dgmm._lazy import lazy_getattr

#: The inference methods of ``BayesianDeepGaussianMixture.fit``.
METHODS = ("map", "laplace", "pathfinder", "advi", "fullrank_advi", "nuts", "nutpie", "smc")

# Imported on first use, so that reading METHODS (the command line does) needs no PyMC.
_LAZY = {
    "BayesianDeepGaussianMixture": "bayes_dgmm.bayes.estimator",
    "build_model": "bayes_dgmm.bayes.model",
}

if TYPE_CHECKING:
    from bayes_dgmm.bayes.estimator import BayesianDeepGaussianMixture
    from bayes_dgmm.bayes.model import build_model


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["METHODS", "BayesianDeepGaussianMixture", "build_model"]
