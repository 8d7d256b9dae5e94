"""EM estimation of the DGMM: one EM loop and the steps and starts it runs.

- :mod:`~bayes_dgmm.em.estimator`: :class:`DeepGaussianMixture` (scikit-learn API);
- :mod:`~bayes_dgmm.em.driver`: the EM loop (step function, stopping rule, history);
- :mod:`~bayes_dgmm.em.exact`, :mod:`~bayes_dgmm.em.stochastic`: the two EM steps;
- :mod:`~bayes_dgmm.em.starts`: random, k-means and layer-wise starts;
- :mod:`~bayes_dgmm.em.aligned`: the default start (aligned subspaces).
"""

from bayes_dgmm.em.estimator import (
    DeepGaussianMixture,
    StartWarning,
    n_free_parameters,
    select_architecture,
)

__all__ = ["DeepGaussianMixture", "StartWarning", "n_free_parameters", "select_architecture"]
