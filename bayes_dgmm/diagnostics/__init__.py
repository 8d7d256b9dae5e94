"""Diagnostics for label switching and multimodality, built on ArviZ.

- :mod:`~bayes_dgmm.diagnostics.relabel`: per-layer relabelling (Hungarian on identified
  features, ECR, Stephens' KL algorithm);
- :mod:`~bayes_dgmm.diagnostics.modes`: census of modes by partition agreement.
"""

from bayes_dgmm.diagnostics.modes import SAME_MODE_ARI, ModeCensus, mode_census, mutual_ari
from bayes_dgmm.diagnostics.relabel import (
    RELABEL_METHODS,
    Relabelling,
    layer_features,
    path_permutation,
    permute_layers,
    relabel_draws,
)

__all__ = [
    "RELABEL_METHODS",
    "SAME_MODE_ARI",
    "ModeCensus",
    "Relabelling",
    "layer_features",
    "mode_census",
    "mutual_ari",
    "path_permutation",
    "permute_layers",
    "relabel_draws",
]
