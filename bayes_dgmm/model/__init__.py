"""The deep Gaussian mixture model itself: spec, parameters, densities and simulation.

- :mod:`~bayes_dgmm.model.spec`: architecture, priors and fit settings (TOML of ``models/``);
- :mod:`~bayes_dgmm.model.params`: :class:`DGMMParams`, paths, global and per-layer GMMs,
  over :mod:`~bayes_dgmm.model.arrays` (the checked, read-only arrays),
  :mod:`~bayes_dgmm.model.scoring` (densities and labels of data) and
  :mod:`~bayes_dgmm.model.params_io` (JSON and named variables);
- :mod:`~bayes_dgmm.model.density`: low-rank Gaussian log densities (Woodbury), log-sum-exp;
- :mod:`~bayes_dgmm.model.simulate`: the generative process.
"""

from bayes_dgmm.model.density import GaussianMixtureParams
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.paths import path_index, path_table
from bayes_dgmm.model.simulate import Simulation, simulate
from bayes_dgmm.model.spec import DGMMSpec, available_specs, load_spec, validate_architecture

__all__ = [
    "DGMMParams",
    "DGMMSpec",
    "GaussianMixtureParams",
    "Simulation",
    "available_specs",
    "load_spec",
    "path_index",
    "path_table",
    "simulate",
    "validate_architecture",
]
