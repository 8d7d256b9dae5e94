from dataclasses import replace

import numpy as np
import pytest

from bayes_dgmm.diagnostics.relabel import permute_layers
from bayes_dgmm.experiments.sbc import (
    SBCDesign,
    extreme_share,
    identified,
    rank_of_truth,
    relabel_to,
    run_sbc,
    uniformity,
)
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.spec import DGMMSpec


def test_uniformity_and_extreme_share_against_known_cases():
    rng = np.random.default_rng(0)
    flat = rng.integers(0, 100, size=2000)
    assert uniformity(flat) > 0.01
    assert extreme_share(flat) == pytest.approx(0.2, abs=0.03)  # binomial sd 0.009
    piled = np.concatenate([flat[:1000], np.zeros(300, int), np.full(300, 99)])
    assert uniformity(piled) < 1e-20
    assert extreme_share(piled) > 0.35


def test_relabelling_to_the_truth_undoes_a_permutation():
    truth = DGMMParams.random(3, (2, 2), (2, 1), random_state=0, separation=5.0)
    swapped = permute_layers(truth, [np.array([1, 0]), np.array([1, 0])])
    assert identified(swapped) != identified(truth)
    back = relabel_to(swapped, truth)
    for k, v in identified(truth).items():
        assert identified(back)[k] == pytest.approx(v, rel=1e-10)
    ranks = rank_of_truth([identified(back)] * 5, identified(truth))
    assert set(ranks.values()) == {0}  # equal values are not below the truth


@pytest.mark.slow
def test_sbc_passes_the_model_prior_and_flags_a_misspecified_one(tmp_path):
    # Data drawn from the fitted prior rank the truth uniformly; data whose layer-1
    # intercepts come from a 3x wider prior put the path means' ranks at the ends. Measured
    # on 30 simulations: extreme share of the means 0.24 (uniform: 0.2) against 0.60.
    design = SBCDesign(DGMMSpec((2, 1), (2, 1)), n_samples=50, tune=200, draws=100)
    good = run_sbc(design, 30, tmp_path / "good", methods=["nutpie"])["methods"]["nutpie"]
    wrong = replace(design, data_priors={"eta_1_scale": 3.0})
    bad = run_sbc(wrong, 30, tmp_path / "bad", methods=["nutpie"])["methods"]["nutpie"]
    assert good["extreme_share"]["mean"] < 0.4 < bad["extreme_share"]["mean"]
    assert (tmp_path / "good" / "sbc.png").is_file()
