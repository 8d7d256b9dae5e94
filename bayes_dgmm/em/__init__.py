"""EM estimation of the DGMM: one EM loop and the steps and starts it runs.

- :mod:`~bayes_dgmm.em.estimator`: :class:`DeepGaussianMixture` (scikit-learn API), over
  :mod:`~bayes_dgmm.em.fitted` (what a fitted model answers), :mod:`~bayes_dgmm.em.results`
  (free parameters, history, warnings) and :mod:`~bayes_dgmm.em.restarts`;
- :mod:`~bayes_dgmm.em.driver`: the EM loop (step function, stopping rule, history), with
  :mod:`~bayes_dgmm.em.anderson` acceleration on the :mod:`~bayes_dgmm.em.vector` layout;
- :mod:`~bayes_dgmm.em.exact`, :mod:`~bayes_dgmm.em.stochastic`: the two EM steps;
- :mod:`~bayes_dgmm.em.starts`: random, k-means and layer-wise starts;
- :mod:`~bayes_dgmm.em.aligned`: the default start (aligned subspaces), with
  :mod:`~bayes_dgmm.em.registration` and :mod:`~bayes_dgmm.em.frames`;
- :mod:`~bayes_dgmm.em.newton`: the Newton steps that finish the exact EM.
"""

from typing import TYPE_CHECKING

from bayes_dgmm._lazy import lazy_getattr

#: The EM algorithms of ``DeepGaussianMixture(algorithm=...)``: the exact EM on the marginal
#: likelihood and the study's layer-wise stochastic EM.
ALGORITHMS = ("exact", "stochastic")

# Imported on first use, so that reading ALGORITHMS (the command line does) needs no
# scikit-learn.
_LAZY = {
    "DeepGaussianMixture": "bayes_dgmm.em.estimator",
    "StartWarning": "bayes_dgmm.em.restarts",
    "n_free_parameters": "bayes_dgmm.em.results",
    "select_architecture": "bayes_dgmm.em.estimator",
}

if TYPE_CHECKING:
    from bayes_dgmm.em.estimator import DeepGaussianMixture, select_architecture
    from bayes_dgmm.em.restarts import StartWarning
    from bayes_dgmm.em.results import n_free_parameters


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "ALGORITHMS",
    "DeepGaussianMixture",
    "StartWarning",
    "n_free_parameters",
    "select_architecture",
]
