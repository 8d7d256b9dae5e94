import numpy as np
import pytest

from bayes_dgmm.diagnostics.metrics import layer_aris, n_occupied
from bayes_dgmm.experiments.datasets import (
    icbinb_like_params,
    index_to_study_path,
    make_dgmm_data,
    make_icbinb_like,
    study_path_to_index,
)


def test_shipped_data_shapes(icbinb):
    assert icbinb.X.shape == (4000, 17)
    assert icbinb.labels.shape == (4000, 3)
    assert [z.shape for z in icbinb.scores] == [(4000, 11), (4000, 6), (4000, 2)]
    assert icbinb.labels.min() == 0
    assert icbinb.labels.max(0).tolist() == [2, 2, 1]
    assert icbinb.params.n_components == (3, 3, 2)
    assert icbinb.spec.name == "icbinb-sec3"


def test_study_path_conversion(icbinb):
    # path = layer1 + 3 (layer2 - 1) + 9 (layer3 - 1), 1-based, as in the study's README
    lab1 = icbinb.labels + 1
    study = lab1[:, 0] + 3 * (lab1[:, 1] - 1) + 9 * (lab1[:, 2] - 1)
    np.testing.assert_array_equal(study_path_to_index(study), icbinb.paths)
    np.testing.assert_array_equal(index_to_study_path(icbinb.paths), study)


def test_true_parameters_likelihood_and_bayes_classifier(icbinb):
    params = icbinb.params
    assert params.score(icbinb.X) == pytest.approx(-377797.02, abs=0.01)
    pred = params.paths[params.predict(icbinb.X)]
    aris = layer_aris(icbinb.labels, pred, params.n_components)
    assert aris == {"path": 1.0, "layer_1": 1.0, "layer_2": 1.0, "layer_3": 1.0}
    for layer in (1, 2, 3):
        np.testing.assert_array_equal(params.predict(icbinb.X, layer=layer), pred[:, layer - 1])
    assert n_occupied(params.predict(icbinb.X), 18) == 18


def test_shipped_scores_consistent_with_params(icbinb):
    # the README's check: residuals of each layer have mean ~0 and variance ~psi
    params = icbinb.params
    z = [icbinb.X, *icbinb.scores]
    for l in range(3):
        for g in range(params.n_components[l]):
            rows = icbinb.labels[:, l] == g
            resid = z[l][rows] - params.eta[l][g] - z[l + 1][rows] @ params.Lambda[l][g].T
            ratio = resid.var(0) / params.psi[l][g]
            assert np.all(np.abs(ratio - 1) < 0.25), (l, g, ratio)


def test_icbinb_like_reproducible_and_of_the_design():
    a = make_icbinb_like(random_state=5, n_samples=500)
    b = make_icbinb_like(random_state=5, n_samples=500)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.params == b.params
    assert a.X.shape == (500, 17)
    assert a.params.n_factors == (11, 6, 2)
    c = make_icbinb_like(random_state=6, n_samples=500)
    assert not np.array_equal(a.X, c.X)


def test_icbinb_like_parameter_distributions():
    # pooled over seeds, the draws follow the study's configuration
    draws = [icbinb_like_params(s) for s in range(40)]
    eta1 = np.concatenate([p.eta[0].ravel() for p in draws])
    assert eta1.std() == pytest.approx(20, rel=0.1)
    lam3 = np.concatenate([p.Lambda[2][0].ravel() for p in draws])
    assert np.mean(lam3 == 0) == pytest.approx(0.2, abs=0.05)
    assert lam3[lam3 != 0].mean() == pytest.approx(-10, abs=0.5)
    psi1 = np.concatenate([p.psi[0][0] for p in draws])
    assert psi1.mean() == pytest.approx(30, abs=0.5)


def test_make_dgmm_data_truth_recovers_labels():
    d = make_dgmm_data(2000, 10, (4, 2), (5, 2), random_state=0, separation=6.0)
    pred = d.params.paths[d.params.predict(d.X)]
    assert layer_aris(d.labels, pred, (4, 2))["layer_1"] > 0.8
