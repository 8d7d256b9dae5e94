"""Lesser reliability points: strict JSON outputs, ordered architectures, warnings that count
layers and components as the API does, scores that overflow, minibatches, not-fitted errors,
the warnings of parallel runs."""

import json
import math
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from bayes_dgmm import BayesianDeepGaussianMixture, DeepGaussianMixture, DGMMParams, DGMMSpec
from bayes_dgmm.experiments._store import RunStore, run_all
from bayes_dgmm.experiments.report import write_json


def test_json_outputs_are_strict(tmp_path):
    path = write_json(
        tmp_path / "s.json",
        {"a": math.nan, "b": np.float64(np.inf), "c": [np.nan, 1.5], "d": np.array([np.nan])},
    )

    def refuse(name):
        raise AssertionError(f"{name} in strict JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "a": None,
        "b": None,
        "c": [None, 1.5],
        "d": [None],
    }


@pytest.mark.parametrize("value", [{3, 2}, frozenset({3, 2}), {"a": 3, "b": 2}])
def test_architectures_without_order_are_refused(value):
    with pytest.raises(TypeError, match=r"n_components=.* has no order; give the layers in"):
        DGMMSpec(n_components=value, n_factors=(2, 1))
    X = np.random.default_rng(0).normal(size=(40, 4))
    with pytest.raises(TypeError, match=r"n_components=.* has no order"):
        DeepGaussianMixture(n_components=value, n_factors=(2, 1), max_iter=2).fit(X)


def test_kept_components_warning_says_how_it_counts():
    truth = DGMMParams.random(5, (2, 2), (2, 1), random_state=0)
    X, _ = truth.sample(200, random_state=1)
    eta = [a.copy() for a in truth.eta]
    eta[0][1] += 1e4  # layer-1 component 1 is far from every observation: empty
    far = truth.replace(eta=eta)
    est = DeepGaussianMixture((2, 2), n_factors=(2, 1), init=far, max_iter=3, stopping="fixed")
    with pytest.warns(ConvergenceWarning) as record:
        est.fit(X)
    (message,) = [str(w.message) for w in record if "Empty components" in str(w.message)]
    assert "(layer 1 component 1)" in message
    assert "Layers are counted from 1 and components from 0, as predict(X, layer)" in message


def test_a_score_that_overflows_is_an_error_not_nan():
    params = DGMMParams.random(5, (2, 2), (2, 1), random_state=0)
    X, _ = params.sample(50, random_state=1)
    huge = params.replace(Lambda=[L * 1e200 for L in params.Lambda])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        with pytest.raises(ValueError, match=r"row 1 .*50 such rows\) is NaN: a covariance"):
            huge.score(X)
        with pytest.raises(ValueError, match=r"not positive definite in float64 \(largest"):
            params.replace(Lambda=[L * 1e100 for L in params.Lambda]).score(X)
    assert math.isfinite(params.score(X))


def test_minibatch_larger_than_the_data_is_refused_before_any_work():
    X = np.random.default_rng(0).normal(size=(200, 5))
    est = BayesianDeepGaussianMixture((2, 2), (2, 1), progressbar=False)
    with pytest.raises(ValueError, match=r"batch_size=500 is not below the 200 rows of X"):
        est.fit(X, method="advi", init="em", batch_size=500, n=10)
    assert not hasattr(est, "model_")


def test_bayesian_predict_before_fit_is_not_fitted_error():
    est = BayesianDeepGaussianMixture((2,), (1,))
    with pytest.raises(NotFittedError, match="not fitted yet"):
        est.predict(np.zeros((3, 4)))
    with pytest.raises(NotFittedError):
        est.score(np.zeros((3, 4)))


def _warns(k):
    warnings.warn(f"run {k} is unusual", UserWarning, stacklevel=1)
    return {"k": k}


def test_warnings_of_parallel_runs_reach_the_caller(tmp_path):
    store = RunStore(tmp_path)
    with pytest.warns(UserWarning) as record:
        results = run_all(store, [(f"r{k}", {"k": k}) for k in range(3)], _warns, n_jobs=2)
    assert sorted(r["k"] for r in results.values()) == [0, 1, 2]
    assert sorted(str(w.message) for w in record) == [f"run {k} is unusual" for k in range(3)]
