import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.sparse
from sklearn.decomposition import FactorAnalysis
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from bayes_dgmm import DeepGaussianMixture, DGMMParams, path_index
from bayes_dgmm.em.estep import e_step, layer_slices, path_model, path_statistics
from bayes_dgmm.em.estimator import EXPECTED_FAILED_CHECKS, n_free_parameters, select_architecture
from bayes_dgmm.em.exact import m_step, rotate_loadings
from bayes_dgmm.em.starts import init_kmeans, init_random
from bayes_dgmm.experiments.datasets import make_dgmm_data


def _joint_gaussian(params, path):
    """Mean and covariance of (x, z1, ..., zL) on one path, by the generative recursion."""
    L = params.n_layers
    m = [np.zeros(params.n_factors[-1])]
    blocks = {(L, L): np.eye(params.n_factors[-1])}
    for l in range(L, 0, -1):  # z^(l-1) = eta + Lambda z^(l) + u
        lam = params.Lambda[l - 1][path[l - 1]]
        m.insert(0, params.eta[l - 1][path[l - 1]] + lam @ m[0])
        for k in range(l, L + 1):
            blocks[(l - 1, k)] = lam @ blocks[(l, k)]
            blocks[(k, l - 1)] = blocks[(l - 1, k)].T
        blocks[(l - 1, l - 1)] = lam @ blocks[(l, l - 1)] + np.diag(params.psi[l - 1][path[l - 1]])
    cov = np.block([[blocks[(i, j)] for j in range(L + 1)] for i in range(L + 1)])
    return np.concatenate(m), cov


def test_path_model_matches_explicit_conditioning(rng):
    params = DGMMParams.random(7, (2, 3, 2), (4, 2, 1), rng)
    model = path_model(params)
    X = rng.normal(scale=3.0, size=(5, 7))
    J = params.n_features
    for p, path in enumerate(params.paths):
        mean, cov = _joint_gaussian(params, path)
        Sxx, Szx, Szz = cov[:J, :J], cov[J:, :J], cov[J:, J:]
        np.testing.assert_allclose(model.mean[p], mean[:J], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(model.logdet[p], np.linalg.slogdet(Sxx)[1], rtol=1e-12)
        U = model.root[p]
        np.testing.assert_allclose(U.T @ U @ Sxx, np.eye(J), atol=1e-9)
        # posterior of the scores by the textbook conditioning formula
        gain = np.linalg.solve(Sxx, Szx.T).T
        post_mean = mean[J:] + (X - mean[:J]) @ gain.T
        got = model.score_mean[p] + (X - model.mean[p]) @ model.score_map[p].T
        np.testing.assert_allclose(got, post_mean, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(model.score_cov[p], Szz - gain @ Szx.T, atol=1e-9)


def test_e_step_matches_score_samples(icbinb, rng):
    for params, X in (
        (icbinb.params, icbinb.X),
        (DGMMParams.random(6, (2, 2), (3, 1), rng), rng.normal(size=(50, 6))),
    ):
        log_norm, resp = e_step(X, path_model(params), params.n_components[0])
        np.testing.assert_allclose(log_norm, params.score_samples(X), rtol=1e-10)
        np.testing.assert_allclose(resp, params.predict_proba(X), atol=1e-8)


def test_path_statistics_against_explicit_sums(rng):
    params = DGMMParams.random(6, (2, 2), (3, 1), rng)
    X, _ = params.sample(40, random_state=1)
    model = path_model(params)
    _, resp = e_step(X, model, 2)
    stats = path_statistics(X, resp, model, 3)
    for p in range(params.n_paths):
        r = resp[:, p]
        Ez = model.score_mean[p] + (X - model.mean[p]) @ model.score_map[p].T  # (N, D)
        zbar = r @ Ez / r.sum()
        second = ((Ez - zbar) * r[:, None]).T @ (Ez - zbar) + r.sum() * model.score_cov[p]
        np.testing.assert_allclose(stats.zbar[p], zbar, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(stats.czz[p], second, rtol=1e-9, atol=1e-9)
        xbar = r @ X / r.sum()
        cross = ((X - xbar) * r[:, None]).T @ (Ez[:, :3] - zbar[:3])
        np.testing.assert_allclose(stats.cxz1[p], cross, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------- exact references
def test_one_component_matches_factor_analysis():
    data = make_dgmm_data(200, 5, (1,), (2,), random_state=4)
    X = data.X
    fa = FactorAnalysis(n_components=2, tol=1e-12, max_iter=20000).fit(X)
    ref = fa.score(X) * X.shape[0]
    est = DeepGaussianMixture((1,), n_factors=(2,), tol=1e-8, max_iter=5000, random_state=0)
    est.fit(X)
    assert est.converged_
    assert est.lower_bound_ == pytest.approx(ref, rel=1e-4)
    assert est.lower_bound_ >= ref - 1e-6 * abs(ref)  # EM reaches (not just nears) the maximum


def test_mixture_of_factor_analysers_recovers_labels():
    data = make_dgmm_data(600, 8, (3,), (2,), random_state=1, separation=4.0)
    est = DeepGaussianMixture((3,), n_factors=(2,), n_init=2, random_state=0).fit(data.X)
    assert adjusted_rand_score(data.labels[:, 0], est.predict(data.X)) >= 0.95


@pytest.mark.parametrize(
    ("J", "G", "R"), [(6, (3,), (2,)), (7, (2, 3), (3, 1)), (8, (2, 2, 2), (4, 2, 1))]
)
def test_log_likelihood_never_decreases(J, G, R):
    data = make_dgmm_data(300, J, G, R, random_state=len(G))
    est = DeepGaussianMixture(
        G, n_factors=R, init="random", max_iter=40, stopping="fixed", random_state=0
    ).fit(data.X)
    ll = est.history_.log_likelihood
    assert ll.shape == (41,)
    assert np.all(np.diff(ll) >= -1e-8 * abs(ll[-1]))
    assert ll[-1] > ll[0]
    assert est.lower_bound_ == pytest.approx(est.params_.score(data.X), rel=1e-10)


def test_study_data_from_true_parameters(icbinb):
    est = DeepGaussianMixture(
        (3, 3, 2), n_factors=(11, 6, 2), init=icbinb.params, max_iter=3, stopping="fixed"
    ).fit(icbinb.X)
    ll = est.history_.log_likelihood
    assert ll[0] == pytest.approx(-377797.02, abs=0.01)
    assert np.all(np.diff(ll) > 0)
    assert adjusted_rand_score(icbinb.paths, est.predict(icbinb.X)) == 1.0
    for l in range(1, 4):
        pred = est.predict(icbinb.X, layer=l)
        assert adjusted_rand_score(icbinb.labels[:, l - 1], pred) == 1.0
    np.testing.assert_array_equal(
        est.predict(icbinb.X),
        path_index(np.column_stack([est.predict(icbinb.X, layer=l) for l in (1, 2, 3)]), (3, 3, 2)),
    )


# ---------------------------------------------------------------------- estimator behaviour
@pytest.fixture(scope="module")
def small():
    return make_dgmm_data(150, 6, (2, 2), (3, 1), random_state=0)


def _small_est(**kw):
    kw.setdefault("stopping", "fixed")
    # the estimator mechanics do not depend on the start; the default "aligned" start is
    # tested in tests/em/test_aligned.py, and k-means keeps these tests fast
    kw.setdefault("init", "kmeans")
    return DeepGaussianMixture((2, 2), n_factors=(3, 1), max_iter=15, **kw)


def test_a_given_start_runs_the_deterministic_exact_em_once(small):
    """Restarts of the exact EM from one DGMMParams start would repeat one run n_init times."""
    start = init_kmeans(small.X, (2, 2), (3, 1), np.random.default_rng(3))
    once = _small_est(init=start, n_init=1).fit(small.X)
    four = _small_est(init=start, n_init=4).fit(small.X)
    assert len(four.restarts_) == 1
    assert four.lower_bound_ == once.lower_bound_
    assert np.isfinite(four.lower_bound_) and four.lower_bound_ > start.score(small.X)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_reproducible_for_any_n_jobs(small, n_jobs):
    ref = _small_est(n_init=3, random_state=7).fit(small.X)
    est = _small_est(n_init=3, random_state=7, n_jobs=n_jobs).fit(small.X)
    assert est.params_ == ref.params_
    assert [r.log_likelihood for r in est.restarts_] == [r.log_likelihood for r in ref.restarts_]
    assert len(est.restarts_) == 3
    assert est.lower_bound_ == max(r.log_likelihood for r in est.restarts_)


def test_fit_predict_equals_fit_then_predict(small):
    a = _small_est(random_state=1).fit_predict(small.X)
    b = _small_est(random_state=1).fit(small.X).predict(small.X)
    np.testing.assert_array_equal(a, b)


def test_information_criteria_by_hand(small):
    est = _small_est(random_state=0).fit(small.X)
    N, J = small.X.shape
    # layer 1: G=2, R_0=6, R_1=3: 2 * (6 + 6*3 - 3 + 6) + 1; layer 2: G=2, R_1=3, R_2=1
    k = 2 * (6 + 18 - 3 + 6) + 1 + 2 * (3 + 3 - 0 + 3) + 1
    assert n_free_parameters(J, (2, 2), (3, 1)) == k == est.n_parameters()
    ll = est.params_.score(small.X)
    assert est.bic(small.X) == pytest.approx(-2 * ll + k * math.log(N), rel=1e-12)
    assert est.aic(small.X) == pytest.approx(-2 * ll + 2 * k, rel=1e-12)
    t = est.predict_proba(small.X)
    entropy = -np.sum(t[t > 0] * np.log(t[t > 0]))
    assert est.icl(small.X) == pytest.approx(est.bic(small.X) + 2 * entropy, rel=1e-12)
    np.testing.assert_allclose(est.history_.bic, -2 * est.history_.log_likelihood + k * math.log(N))


def test_shapes(small):
    est = _small_est(random_state=0).fit(small.X)
    X = small.X
    assert est.predict_proba(X).shape == (150, 4)
    assert est.predict_proba(X, layer=2).shape == (150, 2)
    assert est.score_samples(X).shape == (150,)
    assert est.score(X) == pytest.approx(np.mean(est.score_samples(X)))
    Xs, paths = est.sample(25)
    assert Xs.shape == (25, 6) and paths.shape == (25,) and paths.max() < 4
    assert est.n_features_in_ == 6
    assert est.history_.log_likelihood.shape == (est.n_iter_ + 1,)


@pytest.mark.parametrize("constraint", ["lower_triangular", "orthonormal", "diagonal"])
def test_constraint_rotations(constraint, rng):
    Lambda = rng.normal(size=(3, 7, 3))
    psi = rng.uniform(0.5, 2.0, size=(3, 7))
    out = rotate_loadings(Lambda, psi, constraint)
    for lam, new, p in zip(Lambda, out, psi, strict=True):
        np.testing.assert_allclose(new @ new.T, lam @ lam.T, atol=1e-12)
        if constraint == "lower_triangular":
            np.testing.assert_allclose(np.triu(new[:3], 1), 0.0, atol=1e-12)
            assert np.all(np.diag(new) > 0)
        else:
            gram = new.T @ (new / p[:, None]) if constraint == "diagonal" else new.T @ new
            np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-10)
            assert np.all(np.diff(np.diag(gram)) <= 0)


def test_constraint_keeps_one_layer_likelihood():
    data = make_dgmm_data(200, 6, (2,), (2,), random_state=5)
    kw = dict(n_factors=(2,), max_iter=10, stopping="fixed", acceleration=None, random_state=0)
    free = DeepGaussianMixture((2,), **kw).fit(data.X)
    held = DeepGaussianMixture((2,), constraint="lower_triangular", **kw).fit(data.X)
    np.testing.assert_allclose(
        held.history_.log_likelihood, free.history_.log_likelihood, rtol=1e-9
    )
    assert np.all(np.triu(held.params_.Lambda[0][:, :2], 1) == 0.0)


def test_empty_component_keeps_finite_parameters(small):
    start = init_kmeans(small.X, (2, 2), (3, 1), np.random.default_rng(0))
    pi = [np.array([1.0, 0.0]) + np.array([-1e-300, 1e-300]), start.pi[1]]
    start = DGMMParams(pi=pi, eta=start.eta, Lambda=start.Lambda, psi=start.psi)
    with pytest.warns(ConvergenceWarning, match="Empty components"):
        est = _small_est(init=start, stopping="fixed").fit(small.X)
    for name in ("pi", "eta", "Lambda", "psi"):
        assert all(np.all(np.isfinite(a)) for a in getattr(est.params_, name))
    assert np.all(np.diff(est.history_.log_likelihood) >= -1e-8 * abs(est.lower_bound_))


def test_m_step_floors_psi(small):
    params = init_random(small.X, (2, 2), (3, 1), np.random.default_rng(0))
    model = path_model(params)
    _, resp = e_step(small.X, model, 2)
    stats = path_statistics(small.X, resp, model, 3)
    var_x = small.X.var(axis=0)
    new, empty, _ = m_step(stats, params, 0.5, var_x)  # a floor that binds
    assert empty == []
    assert np.all(new.psi[0] >= 0.5 * var_x - 1e-12)


def test_a_singular_update_is_reported_as_singular_not_empty(small, monkeypatch):
    # Layer 2, component 1 holds half the rows; when its regression cannot be solved it keeps
    # its parameters and is named as singular, not filed among the empty components.
    import scipy.linalg

    import bayes_dgmm.em.exact as exact

    solve = exact.regression_update
    layer_2_component_1 = {"calls": 0}

    def failing(n, ybar, wbar, cyy, cyw, cww, floor):
        # layer 2 (D = R_1 = 3, R_2 = 1): the batch of both components fails, then component
        # 0 alone is solved and component 1 alone fails
        if ybar.shape[1:] == (3,) and cww.shape[1:] == (1, 1):
            layer_2_component_1["calls"] += 1
            if ybar.shape[0] > 1 or layer_2_component_1["calls"] % 3 == 0:
                raise scipy.linalg.LinAlgError("not positive definite")
        return solve(n, ybar, wbar, cyy, cyw, cww, floor)

    params = init_kmeans(small.X, (2, 2), (3, 1), np.random.default_rng(0))
    model = path_model(params)
    _, resp = e_step(small.X, model, 2)
    stats = path_statistics(small.X, resp, model, 3)
    monkeypatch.setattr(exact, "regression_update", failing)
    new, empty, singular = m_step(stats, params, 1e-6, small.X.var(axis=0))
    assert (empty, singular) == ([], [(2, 1)])
    np.testing.assert_array_equal(new.Lambda[1][1], params.Lambda[1][1])
    with pytest.warns(ConvergenceWarning, match=r"Singular components \(layer 2 component 1\)"):
        DeepGaussianMixture((2, 2), n_factors=(3, 1), init=params, n_init=1, max_iter=3).fit(
            small.X
        )


@pytest.mark.parametrize("init", [init_kmeans, init_random])
def test_initialisers_give_valid_parameters(init, small):
    params = init(small.X, (2, 2), (3, 1), np.random.default_rng(0))
    assert params.n_components == (2, 2) and params.n_factors == (3, 1)
    assert np.isfinite(params.score(small.X))


def test_layer_slices():
    assert layer_slices((4, 2, 1)) == [slice(0, 4), slice(4, 6), slice(6, 7)]


def test_select_architecture(small):
    grid = [((g, 2), (3, 1)) for g in (1, 2)] + [{"n_components": (2,), "n_factors": (2,)}]
    table = select_architecture(small.X, grid, max_iter=10, stopping="fixed", random_state=0)
    assert list(table["n_components"]) == [(1, 2), (2, 2), (2,)]
    assert table["selected"].sum() == 1
    assert table.loc[table["selected"], "bic"].item() == table["bic"].min()
    assert {"log_likelihood", "bic", "aic", "icl", "n_parameters"} <= set(table.columns)


@pytest.mark.parametrize("stopping", ["fixed", "deepgmm", "stationary"])
def test_stochastic_dispatch(small, stopping):
    est = _small_est(algorithm="stochastic", stopping=stopping, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(small.X)
    assert est.history_.log_likelihood.shape == (est.n_iter_ + 1,)
    if stopping == "fixed":
        assert est.n_iter_ == 15
    again = _small_est(algorithm="stochastic", stopping=stopping, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert again.fit(small.X).params_ == est.params_


def test_warns_when_not_converged(small):
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=2"):
        DeepGaussianMixture(
            (2, 2), n_factors=(3, 1), init="kmeans", max_iter=2, random_state=0
        ).fit(small.X)


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_components": (2, 2), "n_factors": (3,)}, "n_components=.* has 2 layers"),
        ({"n_factors": (7,)}, "not below the number of features"),
        ({"n_init": 0}, r"n_init=0 is not an int in the range \[1, inf\)"),
        ({"max_iter": 1.5}, r"max_iter=1.5 is not an int in the range \[1, inf\)"),
        ({"tol": -1.0}, r"tol=-1.0 is not a float in the range \[0.0, inf\)"),
        ({"reg_psi": 0.0}, r"reg_psi=0.0 is not a float in the range \(0.0, inf\)"),
        ({"tol": float("nan")}, "tol=nan is not a float"),
        ({"random_state": True}, "random_state=True is not None or an int"),
        ({"algorithm": "gibbs"}, r"algorithm='gibbs' is not one of \('exact', 'stochastic'\)"),
        ({"init": "pca"}, r"init='pca' is not one of \('aligned', 'kmeans', 'random'\)"),
        ({"constraint": "varimax"}, "constraint='varimax' is not None or one of"),
        ({"stopping": "never"}, "stopping='never' is not one of"),
    ],
)
def test_invalid_hyper_parameters(small, kwargs, match):
    est = DeepGaussianMixture(**{"n_components": (2,), "n_factors": (2,), **kwargs})
    with pytest.raises(ValueError, match=match):
        est.fit(small.X)


def test_invalid_inputs(small):
    est = DeepGaussianMixture((2,), n_factors=(2,), stopping="fixed")
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        est.predict(small.X)
    with pytest.raises(ValueError, match="n_samples=1; at least 2 are needed"):
        est.fit(small.X[:1])
    with pytest.raises(TypeError, match=r"sparse matrix.*toarray"):
        est.fit(scipy.sparse.csr_matrix(small.X))
    with pytest.raises(ValueError, match="Complex data not supported"):
        est.fit(small.X + 1j)
    with pytest.raises(ValueError, match="contains 1 NaN"):
        est.fit(np.where(np.arange(small.X.size).reshape(small.X.shape) == 3, np.nan, small.X))
    est.set_params(max_iter=3).fit(small.X)
    with pytest.raises(
        ValueError, match="X has 5 features, but DeepGaussianMixture is expecting 6"
    ):
        est.predict(small.X[:, :5])
    other = DGMMParams.random(6, (3,), (2,), 0)
    with pytest.raises(ValueError, match="does not match n_components=\\(2,\\)"):
        DeepGaussianMixture((2,), n_factors=(2,), init=other).fit(small.X)
    with pytest.raises(ValueError, match="n_samples=0 must be a positive integer"):
        est.sample(0)


# ---------------------------------------------------------------------- scikit-learn checks
@parametrize_with_checks(
    [DeepGaussianMixture(n_components=(2,), n_factors=(1,), max_iter=20, random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_paths_enumerated_once():
    # predict(layer=l) agrees with the path table used everywhere else
    table = np.array(list(itertools.product(range(2), range(2))))[:, ::-1]
    assert path_index(table, (2, 2)).tolist() == [0, 1, 2, 3]
