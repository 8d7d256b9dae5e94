"""Diagnostics for label switching and multimodality, built on ArviZ.

- :mod:`~bayes_dgmm.diagnostics.relabel`: per-layer relabelling (Hungarian on identified
  features, ECR, Stephens' KL algorithm);
- :mod:`~bayes_dgmm.diagnostics.modes`: census of modes by partition agreement (chains, VI
  runs, EM restarts);
- :mod:`~bayes_dgmm.diagnostics.posterior`: the same on a posterior ``DataTree``, r_hat of
  identified quantities before and after relabelling, and :func:`describe_fit`, a verdict in
  plain words;
- :mod:`~bayes_dgmm.diagnostics.importance`: the Pareto k of an approximation's importance
  weights (PSIS) and the threshold below which its draws are trusted;
- :mod:`~bayes_dgmm.diagnostics.stacking`: chain stacking (Yao, Vehtari & Gelman 2022) of
  chains or runs in different modes by their PSIS-LOO predictive densities.
"""

from bayes_dgmm.diagnostics.importance import PARETO_K_OK, pareto_k
from bayes_dgmm.diagnostics.modes import (
    SAME_MODE_ARI,
    ModeCensus,
    census_of_fits,
    mode_census,
    mutual_ari,
)
from bayes_dgmm.diagnostics.posterior import (
    RHAT_OK,
    PosteriorRelabelling,
    chain_census,
    describe_fit,
    identified_quantities,
    nested_rhat,
    posterior_draws,
    prior_predictive_spread,
    relabel_posterior,
)
from bayes_dgmm.diagnostics.relabel import (
    RELABEL_METHODS,
    Relabelling,
    layer_features,
    path_permutation,
    permute_layers,
    relabel_draws,
)
from bayes_dgmm.diagnostics.stacking import (
    ChainStacking,
    compare_fits,
    loo_summary,
    stack_chains,
    stack_runs,
    stacking_weights,
)

__all__ = [
    "PARETO_K_OK",
    "RELABEL_METHODS",
    "RHAT_OK",
    "SAME_MODE_ARI",
    "ChainStacking",
    "ModeCensus",
    "PosteriorRelabelling",
    "Relabelling",
    "census_of_fits",
    "chain_census",
    "compare_fits",
    "describe_fit",
    "identified_quantities",
    "layer_features",
    "loo_summary",
    "mode_census",
    "mutual_ari",
    "nested_rhat",
    "pareto_k",
    "path_permutation",
    "permute_layers",
    "posterior_draws",
    "prior_predictive_spread",
    "relabel_draws",
    "relabel_posterior",
    "stack_chains",
    "stack_runs",
    "stacking_weights",
]
