"""bayes-dgmm: deep Gaussian mixture models with exact maths, EM baselines, PyMC inference
and ArviZ diagnostics.

Public API::

    from bayes_dgmm import DGMMParams, DGMMSpec, load_spec, simulate, path_table
    from bayes_dgmm import DeepGaussianMixture      # EM estimators (sklearn API)
    from bayes_dgmm import build_model, BayesianDeepGaussianMixture  # PyMC (imported lazily)
    from bayes_dgmm.datasets import load_icbinb
"""

from typing import TYPE_CHECKING

from bayes_dgmm._lazy import lazy_getattr
from bayes_dgmm._version import __version__
from bayes_dgmm.model.density import GaussianMixtureParams
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.paths import path_index, path_table
from bayes_dgmm.model.simulate import Simulation, simulate
from bayes_dgmm.model.spec import DGMMSpec, available_specs, load_spec, validate_architecture

# The estimators are imported on first use: `import bayes_dgmm` (and the command line's
# start-up, where a Ctrl-C must meet the CLI's handler) stays light, without scikit-learn
# or PyMC.
_LAZY = {
    "DeepGaussianMixture": "bayes_dgmm.em.estimator",
    "BayesianDeepGaussianMixture": "bayes_dgmm.bayes.estimator",
    "build_model": "bayes_dgmm.bayes.model",
}

if TYPE_CHECKING:
    from bayes_dgmm.bayes.estimator import BayesianDeepGaussianMixture
    from bayes_dgmm.bayes.model import build_model
    from bayes_dgmm.em.estimator import DeepGaussianMixture


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BayesianDeepGaussianMixture",
    "DGMMParams",
    "DGMMSpec",
    "DeepGaussianMixture",
    "GaussianMixtureParams",
    "Simulation",
    "__version__",
    "available_specs",
    "build_model",
    "load_spec",
    "path_index",
    "path_table",
    "simulate",
    "validate_architecture",
]
