"""The E-step, scoring and prediction in blocks of rows equal the unblocked computation."""

from __future__ import annotations

import numpy as np
import pytest

import bayes_dgmm.model.scoring as scoring_module
from bayes_dgmm import DeepGaussianMixture, DGMMParams
from bayes_dgmm.em.estep import chunked_statistics, path_model


@pytest.fixture(scope="module")
def data():
    truth = DGMMParams.random(6, (3, 2), (3, 1), random_state=0, separation=3.0)
    X, _ = truth.sample(2500, random_state=1)
    return truth, X


def test_chunked_statistics_equal_one_block(data):
    truth, X = data
    model = path_model(truth)
    one_ll, one = chunked_statistics(X, model, 3, 3, chunk_rows=len(X))
    assert one_ll == pytest.approx(truth.score(X), rel=1e-12)
    for rows in (1000, 333, 7):  # uneven blocks, some paths empty in a block of 7
        ll, stats = chunked_statistics(X, model, 3, 3, chunk_rows=rows)
        assert ll == pytest.approx(one_ll, rel=1e-12)
        for name in ("n", "xbar", "cxx", "zbar", "czz", "cxz1"):
            a, b = getattr(stats, name), getattr(one, name)
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * np.abs(b).max(), err_msg=name)


def test_em_in_blocks_follows_the_same_path(data, monkeypatch):
    _, X = data
    kw = dict(n_factors=(3, 1), max_iter=15, n_init=1, random_state=2)
    whole = DeepGaussianMixture((3, 2), **kw).fit(X)
    monkeypatch.setattr("bayes_dgmm.em.exact.CHUNK_ROWS", 400)
    blocks = DeepGaussianMixture((3, 2), **kw).fit(X)
    np.testing.assert_allclose(
        blocks.history_.log_likelihood, whole.history_.log_likelihood, rtol=1e-9
    )
    np.testing.assert_array_equal(blocks.predict(X), whole.predict(X))


def test_scoring_and_prediction_in_blocks(data, monkeypatch):
    truth, X = data
    scores, paths, layer2 = truth.score_samples(X), truth.predict(X), truth.predict(X, layer=2)
    # the reference: the (N, paths) log densities in one piece
    reference = np.logaddexp.reduce(truth.log_prob_paths(X), axis=1)
    np.testing.assert_allclose(scores, reference, rtol=1e-12)
    monkeypatch.setattr(scoring_module, "SCORE_CHUNK_ROWS", 300)
    np.testing.assert_allclose(truth.score_samples(X), scores, rtol=1e-12)
    np.testing.assert_array_equal(truth.predict(X), paths)
    np.testing.assert_array_equal(truth.predict(X, layer=2), layer2)
    bad = X.copy()
    bad[1234] = 1e200
    with pytest.raises(ValueError, match=r"X row 1235 \(counted from 1"):
        truth.predict(bad)
