"""bayes-dgmm: deep Gaussian mixture models with exact maths, EM baselines, PyMC inference
and ArviZ diagnostics.

Public API::

    from bayes_dgmm import DGMMParams, DGMMSpec, load_spec, simulate, path_table
    from bayes_dgmm import DeepGaussianMixture      # EM estimators (sklearn API)
    from bayes_dgmm.datasets import load_icbinb
"""

from importlib.metadata import PackageNotFoundError, version

from bayes_dgmm.em import DeepGaussianMixture
from bayes_dgmm.params import DGMMParams, GaussianMixtureParams, path_index, path_table
from bayes_dgmm.simulate import Simulation, simulate
from bayes_dgmm.spec import DGMMSpec, available_specs, load_spec, validate_architecture

try:
    __version__ = version("bayes-dgmm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "DGMMParams",
    "DGMMSpec",
    "DeepGaussianMixture",
    "GaussianMixtureParams",
    "Simulation",
    "__version__",
    "available_specs",
    "load_spec",
    "path_index",
    "path_table",
    "simulate",
    "validate_architecture",
]
