"""Diagnostics on real NUTS runs (slow: real sampling)."""

import numpy as np
import pytest
import xarray as xr

from bayes_dgmm import BayesianDeepGaussianMixture, DeepGaussianMixture
from bayes_dgmm.datasets import make_dgmm_data
from bayes_dgmm.diagnostics import RHAT_OK, describe_fit, permute_layers, relabel_posterior


@pytest.mark.slow
def test_real_nuts_chains_in_two_labellings_are_label_switching_only():
    data = make_dgmm_data(300, 5, (2, 2), (2, 1), random_state=3, separation=5.0)
    em = DeepGaussianMixture((2, 2), n_factors=(2, 1), n_init=2, random_state=0).fit(data.X)
    swapped = permute_layers(em.params_, [np.array([1, 0]), np.array([1, 0])])
    bayes = BayesianDeepGaussianMixture((2, 2), (2, 1), random_seed=1, progressbar=False)
    chains = []
    for c, start in enumerate([em.params_, swapped]):
        bayes.fit(
            data.X,
            method="nuts",
            init=start,
            tune=300,
            draws=300,
            chains=1,
            nuts={"max_treedepth": 6},
        )
        chains.append(bayes.idata_["posterior"].to_dataset().assign_coords(chain=[c]))
    tree = xr.DataTree.from_dict({"posterior": xr.concat(chains, dim="chain")})
    rel = relabel_posterior(tree)
    for row in rel.report:
        assert row["chains_relabelled"] == [1]
        assert row["rhat_raw"] > 1.5
        assert row["rhat_relabelled"] < RHAT_OK
    text = describe_fit(tree, data.X, reference_labels=data.labels)
    assert text.startswith("label switching only"), text
    assert "same mode up to a relabelling of layers 1 and 2" in text
