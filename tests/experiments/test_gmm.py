"""The GMM baselines do not depend on the data's units: the same data in other units give
the same partition, and log-likelihoods that differ by exactly the Jacobian of the units."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from bayes_dgmm.experiments.datasets import make_dgmm_data
from bayes_dgmm.experiments.methods import run_method
from bayes_dgmm.experiments.study import fit_gmm_run
from bayes_dgmm.model.spec import DGMMSpec

SPEC = DGMMSpec((2, 2), (2, 1), name="tiny")


@pytest.fixture(scope="module")
def tiny():
    return make_dgmm_data(240, 5, (2, 2), (2, 1), random_state=3, separation=5.0)


@pytest.fixture(scope="module")
def at_unit_scale(tiny):
    return run_method("gmm", tiny.X, SPEC, budget={"gmm_restarts": 2})


@pytest.mark.parametrize("scale", [1e-4, 1e-8, 1e-100, 1e4, 1e100])
def test_gmm_method_is_scale_invariant(tiny, at_unit_scale, scale):
    n, j = tiny.X.shape
    scaled = run_method("gmm", tiny.X * scale, SPEC, budget={"gmm_restarts": 2})
    assert adjusted_rand_score(at_unit_scale.paths, scaled.paths) == 1.0
    # X * c has density p(x / c) / c**J: the log-likelihood moves by -N J log c
    expected = at_unit_scale.log_likelihood - n * j * np.log(scale)
    assert scaled.log_likelihood == pytest.approx(expected, rel=1e-9, abs=1e-6)
    assert scaled.bic == pytest.approx(at_unit_scale.bic + 2 * n * j * np.log(scale), rel=1e-9)


@pytest.mark.parametrize("scale", [1e-4, 1e-100])
def test_study_gmm_run_is_scale_invariant(tiny, scale):
    n, j = tiny.X.shape
    one = fit_gmm_run(X=tiny.X, n_components=4, seed=0)
    scaled = fit_gmm_run(X=tiny.X * scale, n_components=4, seed=0)
    assert adjusted_rand_score(one["paths"], scaled["paths"]) == 1.0
    expected = one["log_likelihood"] - n * j * np.log(scale)
    assert scaled["log_likelihood"] == pytest.approx(expected, rel=1e-9)
