"""Numerical faults and reproducibility: extreme scales, duplicated rows, constant
columns, collapsing components, identical results for identical seeds."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from bayes_dgmm import BayesianDeepGaussianMixture, DeepGaussianMixture
from bayes_dgmm.experiments.datasets import make_dgmm_data

COMPS, FACTS = (2, 2), (2, 1)


@pytest.fixture(scope="module")
def tiny():
    return make_dgmm_data(240, 5, COMPS, FACTS, random_state=3, separation=5.0)


def _finite(params) -> bool:
    return all(np.all(np.isfinite(a)) for a in params.pi + params.eta + params.Lambda + params.psi)


@pytest.mark.parametrize("algorithm", ["exact", "stochastic"])
@pytest.mark.parametrize("scale", [1e6, 1e-6])
def test_extreme_scales_give_the_same_fit(tiny, algorithm, scale):
    # The EM is equivariant under x -> c x: the same partition, and by the change of
    # variables log f_c(c x) = log f(x) - J log c per row.
    kw = dict(n_factors=FACTS, algorithm=algorithm, max_iter=60, random_state=0)
    kw["stopping"] = "fixed" if algorithm == "stochastic" else "auto"
    ref = DeepGaussianMixture(COMPS, **kw).fit(tiny.X)
    est = DeepGaussianMixture(COMPS, **kw).fit(tiny.X * scale)
    assert _finite(est.params_)
    ari = adjusted_rand_score(ref.predict(tiny.X), est.predict(tiny.X * scale))
    assert ari > 0.99, ari
    j = tiny.X.shape[1]
    expected = ref.score(tiny.X) - j * np.log(scale)
    assert est.score(tiny.X * scale) == pytest.approx(expected, rel=1e-4, abs=1e-3)


@pytest.mark.parametrize("algorithm", ["exact", "stochastic"])
def test_duplicated_rows_keep_parameters_finite(tiny, algorithm):
    # 200 copies of 3 rows pull a component onto a point mass: its variances hit the floor,
    # nothing becomes NaN and the density stays finite.
    X = np.vstack([tiny.X, np.repeat(tiny.X[:3], 200 // 3 + 1, axis=0)])
    stopping = "fixed" if algorithm == "stochastic" else "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a convergence warning is allowed here
        est = DeepGaussianMixture(
            COMPS, n_factors=FACTS, algorithm=algorithm, max_iter=60, stopping=stopping,
            init="random", n_init=3, random_state=1,
        ).fit(X)  # fmt: skip
    assert _finite(est.params_)
    assert np.all(np.isfinite(est.score_samples(X)))
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-10)


def test_single_cluster_data_with_too_many_components_stays_finite():
    # Data from one Gaussian fitted with 3 x 2 paths: components collapse or empty out.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = DeepGaussianMixture(
            (3, 2), n_factors=(2, 1), init="random", max_iter=100, random_state=0
        ).fit(X)
    assert _finite(est.params_)
    assert np.isfinite(est.score(X))


def test_constant_column_is_refused_by_every_estimator(tiny):
    X = tiny.X.copy()
    X[:, 3] = 7.5
    match = (
        r"X has 1 constant column\(s\) \(first: column 4, counted from 1, every value 7\.5\)"
        ".*drop it"
    )
    with pytest.raises(ValueError, match=match):
        DeepGaussianMixture(COMPS, n_factors=FACTS).fit(X)
    with pytest.raises(ValueError, match=match):
        BayesianDeepGaussianMixture(COMPS, FACTS).fit(X, method="map")
    # prediction on such data is fine
    est = DeepGaussianMixture(COMPS, n_factors=FACTS, max_iter=5, random_state=0).fit(tiny.X)
    assert np.all(np.isfinite(est.score_samples(X)))


def test_bayesian_fit_is_reproducible_for_a_seed(tiny):
    # ADVI: PyMC documents identical results for an identical random_seed.
    import pytensor

    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        fits = [
            BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=s, progressbar=False).fit(
                tiny.X, method="advi", n=30, draws=5
            )
            for s in (4, 4, 5)
        ]
    a, b, c = (f.idata_["posterior"]["Lambda_1"].values for f in fits)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("algorithm", ["exact", "stochastic"])
@pytest.mark.parametrize(
    ("scale", "match"),
    [
        (1e300, r"X has values beyond 1e\+150 in magnitude \(first at row \d+, column \d+"),
        (1e-300, r"X column 1 has standard deviation .* below 1e-150.*rescale"),
    ],
)
def test_scales_beyond_float64_squares_are_refused_before_fitting(tiny, algorithm, scale, match):
    est = DeepGaussianMixture(COMPS, n_factors=FACTS, algorithm=algorithm, init="random")
    with pytest.raises(ValueError, match=match):
        est.fit(tiny.X * scale)
    with pytest.raises(ValueError, match=match):
        BayesianDeepGaussianMixture(COMPS, FACTS).fit(tiny.X * scale, method="map")


def test_largest_accepted_scale_still_fits(tiny):
    kw = dict(n_factors=FACTS, init="kmeans", max_iter=20, random_state=0)
    ref = DeepGaussianMixture(COMPS, **kw).fit(tiny.X)
    scale = 1e150 / np.abs(tiny.X).max()
    est = DeepGaussianMixture(COMPS, **kw).fit(tiny.X * scale)
    assert adjusted_rand_score(ref.predict(tiny.X), est.predict(tiny.X * scale)) > 0.99


def test_predict_refuses_rows_without_a_finite_density(tiny):
    kw = dict(n_factors=FACTS, init="kmeans", max_iter=5, stopping="fixed")
    est = DeepGaussianMixture(COMPS, **kw).fit(tiny.X)
    X = tiny.X[:4].copy()
    X[2] *= 1e160
    with pytest.raises(ValueError, match=r"X row 3 \(counted from 1; 1 such rows\) has no finite"):
        est.predict(X)
    with pytest.raises(ValueError, match="no finite log density"):
        est.params_.predict_proba(X, layer=1)
    assert np.all(np.isfinite(est.predict_proba(tiny.X)))


def test_cells_are_counted_from_one():
    X = np.ones((4, 3))
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"first at row 1, column 1, counted from 1"):
        DeepGaussianMixture(COMPS, n_factors=FACTS).fit(X)
