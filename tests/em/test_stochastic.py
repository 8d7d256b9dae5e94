"""Tests of the layer-wise stochastic EM (deepgmm's algorithm, exact global GMM)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.decomposition import FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

from bayes_dgmm.em.driver import (
    STATIONARY_WINDOW,
    STATIONARY_Z,
    deepgmm_should_stop,
    stationary_drift,
)
from bayes_dgmm.em.stochastic import (
    MIN_COMPONENT_WEIGHT,
    layer_responsibilities,
    m_step_component,
    path_posterior,
    score_posterior,
    simple_kmeans_init,
    stochastic_em_iteration,
)
from bayes_dgmm.experiments.datasets import make_dgmm_data
from bayes_dgmm.model.params import DGMMParams

REG = 1e-10


@pytest.fixture(scope="module")
def small3():
    """A tiny 3-layer model and data drawn from it."""
    params = DGMMParams.random(6, (2, 2, 2), (4, 2, 1), 7)
    X, _ = params.sample(150, random_state=8)
    return params, X


# ------------------------------------------------------------------ exact pieces
def test_score_posterior_matches_dense_formulas(rng):
    G, S, D, R, N = 2, 3, 5, 2, 7
    Y = rng.normal(size=(N, D))
    eta = rng.normal(size=(G, D))
    lam = rng.normal(size=(G, D, R))
    psi = rng.uniform(0.2, 1.0, size=(G, D))
    m = rng.normal(size=(S, R))
    A = rng.normal(size=(S, R, R))
    sig = A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(R)
    post = score_posterior(Y, eta, lam, psi, m, sig)
    for g in range(G):
        for s in range(S):
            # Brute force with explicit inverses (test only).
            prec = np.linalg.inv(sig[s]) + lam[g].T @ np.diag(1 / psi[g]) @ lam[g]
            cov = np.linalg.inv(prec)
            rhs = (np.linalg.inv(sig[s]) @ m[s])[:, None] + lam[g].T @ ((Y - eta[g]) / psi[g]).T
            mean = (cov @ rhs).T
            np.testing.assert_allclose(post.means[g, s], mean, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(post.covariances[g, s], cov, rtol=1e-10, atol=1e-12)
            marg = np.diag(psi[g]) + lam[g] @ sig[s] @ lam[g].T
            mu = eta[g] + lam[g] @ m[s]
            diff = Y - mu
            quad = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(marg), diff)
            logdet = np.linalg.slogdet(marg)[1]
            dens = -0.5 * (D * np.log(2 * np.pi) + logdet + quad)
            np.testing.assert_allclose(post.log_density[:, g, s], dens, rtol=1e-10)


def test_path_posterior_is_the_exact_global_gmm(small3):
    params, X = small3
    m, S, w = params._marginal(1)
    post = score_posterior(X, params.eta[0], params.Lambda[0], params.psi[0], m, S)
    log_lik, proba = path_posterior(post.log_density, params.pi[0], w)
    np.testing.assert_allclose(log_lik, params.score_samples(X), rtol=1e-12)
    np.testing.assert_allclose(proba, params.predict_proba(X), atol=1e-12)


@pytest.mark.parametrize("layer", [1, 2, 3])
def test_layer_responsibilities_marginalise_to_layer_posteriors(small3, layer):
    params, X = small3
    proba = params.predict_proba(X)
    tau = layer_responsibilities(proba, params.n_components, layer)
    G = params.n_components[layer - 1]
    S = int(np.prod(params.n_components[layer:]))
    assert tau.shape == (X.shape[0], G, S)
    np.testing.assert_allclose(tau.sum(axis=2), params.predict_proba(X, layer=layer), atol=1e-12)
    # Sub-path marginals are the posteriors of the layers above.
    if layer < params.n_layers:
        nxt = tau.sum(axis=1).reshape(X.shape[0], -1, params.n_components[layer], order="C")
        np.testing.assert_allclose(
            nxt.sum(axis=1), params.predict_proba(X, layer=layer + 1), atol=1e-12
        )


def test_m_step_recovers_noise_free_regression(rng):
    N, S, D, R = 50, 2, 4, 2
    z = rng.normal(size=(S, N, R))
    eta, lam = rng.normal(size=D), rng.normal(size=(D, R))
    tau = np.zeros((N, S))
    tau[:, 0] = 1.0
    Y = eta + z[0] @ lam.T
    out = m_step_component(Y, tau, z, np.zeros((S, R, R)))
    assert out is not None
    np.testing.assert_allclose(out[0], eta, atol=1e-10)
    np.testing.assert_allclose(out[1], lam, atol=1e-10)
    np.testing.assert_allclose(out[2], 0.0, atol=1e-18)


# ------------------------------------------------------------------ behaviour
def test_one_layer_one_component_reaches_factor_analysis_mle():
    """With L = 1, G = 1 the iteration is the (deterministic) EM of factor analysis.

    Nothing is drawn (the draws only feed a deeper layer), so the estimates do not fluctuate:
    they converge to the MLE. The implied covariance averaged over the last 100 of 300
    iterations must equal scikit-learn's FA MLE to 1e-4 relative: both are converged
    maximisers of the same likelihood (FA is identified up to rotation, and the covariance
    removes the rotation); 1e-4 leaves room for the two algorithms' stopping points
    (measured difference: 2e-7).
    """
    data = make_dgmm_data(1000, 6, (1,), (2,), 0)
    X = data.X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fa = FactorAnalysis(2, tol=1e-10, max_iter=100_000, svd_method="lapack").fit(X)
    rng = np.random.default_rng(1)
    params = simple_kmeans_init(X, (1,), (2,), rng)
    covs = []
    for it in range(300):
        params = stochastic_em_iteration(X, params, rng, reg_psi=REG)
        if it >= 200:
            covs.append(params.global_gmm().covariances[0])
    target = fa.get_covariance()
    rel = np.abs(np.mean(covs, axis=0) - target).max() / np.abs(target).max()
    assert rel < 1e-4
    assert params.score(X) == pytest.approx(fa.score(X) * X.shape[0], rel=1e-8)


def test_one_layer_separated_components_recovered():
    # The k-means start has ARI 0.93 here; the EM takes it to the Bayes classifier's level.
    data = make_dgmm_data(1000, 6, (3,), (2,), 2, separation=3.5)
    rng = np.random.default_rng(2)
    params = simple_kmeans_init(data.X, (3,), (2,), rng)
    start = adjusted_rand_score(data.labels[:, 0], params.predict(data.X))
    for _ in range(30):
        params = stochastic_em_iteration(data.X, params, rng, reg_psi=REG)
    final = adjusted_rand_score(data.labels[:, 0], params.predict(data.X))
    assert final >= 0.95
    assert final > start


def test_two_layers_from_truth_stay_near_truth():
    data = make_dgmm_data(1000, 8, (2, 2), (3, 1), 3, separation=5.0)
    X, N = data.X, data.X.shape[0]
    rng = np.random.default_rng(3)
    params = data.params
    truth = params.score(X)
    scores = []
    for _ in range(20):
        params = stochastic_em_iteration(X, params, rng, reg_psi=REG)
        scores.append(params.score(X))
    scores_arr = np.asarray(scores)
    assert np.all(np.isfinite(scores_arr))
    # The MLE lies above the truth by about half the number of parameters (~40 here);
    # 0.05 per observation (50) bounds that and any drift downwards.
    assert np.all(np.abs(scores_arr - truth) < 0.05 * N), scores_arr - truth
    assert adjusted_rand_score(data.paths, params.predict(X)) > 0.95


def test_same_seed_is_bitwise_reproducible(small3):
    params, X = small3
    runs = []
    for _ in range(2):
        rng = np.random.default_rng(99)
        p = params
        for _ in range(3):
            p = stochastic_em_iteration(X, p, rng, reg_psi=REG)
        runs.append(p)
    assert runs[0] == runs[1]
    other = stochastic_em_iteration(X, params, np.random.default_rng(100), reg_psi=REG)
    rng = np.random.default_rng(99)
    assert stochastic_em_iteration(X, params, rng, reg_psi=REG) != other
    assert stochastic_em_iteration(X, params, np.random.default_rng(1), reg_psi=REG) != params


def test_does_not_modify_input(small3):
    params, X = small3
    before = params.copy()
    stochastic_em_iteration(X, params, np.random.default_rng(0), reg_psi=REG)
    assert params == before


def test_empty_component_keeps_its_parameters(small3):
    params, X = small3
    eta = [a.copy() for a in params.eta]
    eta[0][1] += 1e4  # layer-1 component 1 is now far from every observation
    far = DGMMParams(pi=params.pi, eta=eta, Lambda=params.Lambda, psi=params.psi)
    new = stochastic_em_iteration(X, far, np.random.default_rng(0), reg_psi=REG)
    assert new.pi[0][1] < MIN_COMPONENT_WEIGHT / X.shape[0]
    np.testing.assert_array_equal(new.eta[0][1], far.eta[0][1])
    np.testing.assert_array_equal(new.Lambda[0][1], far.Lambda[0][1])
    np.testing.assert_array_equal(new.psi[0][1], far.psi[0][1])
    for name in ("pi", "eta", "Lambda", "psi"):
        assert all(np.all(np.isfinite(a)) for a in getattr(new, name))
    # and the next iteration still runs
    stochastic_em_iteration(X, new, np.random.default_rng(1), reg_psi=REG)


def test_components_that_keep_their_values_are_reported(small3):
    # the caller learns which components were not updated, and why
    params, X = small3
    eta = [a.copy() for a in params.eta]
    eta[0][1] += 1e4
    far = DGMMParams(pi=params.pi, eta=eta, Lambda=params.Lambda, psi=params.psi)
    kept = []
    stochastic_em_iteration(X, far, np.random.default_rng(0), reg_psi=REG, kept=kept)
    assert (1, 1, "empty") in kept
    fine = []
    stochastic_em_iteration(X, params, np.random.default_rng(0), reg_psi=REG, kept=fine)
    assert fine == []


def test_psi_floor_relative_to_input_variance(small3):
    params, X = small3
    new = stochastic_em_iteration(X, params, np.random.default_rng(0), reg_psi=0.5)
    assert np.all(new.psi[0] >= 0.5 * X.var(axis=0) * (1 - 1e-12))


@pytest.mark.parametrize("bad", [0.0, -1e-3, np.nan, np.inf])
def test_reg_psi_must_be_positive(small3, bad):
    params, X = small3
    with pytest.raises(ValueError, match=r"reg_psi=.* must be a positive finite float"):
        stochastic_em_iteration(X, params, np.random.default_rng(0), reg_psi=bad)


def test_simple_kmeans_init_shapes(small3):
    X = small3[1]
    start = simple_kmeans_init(X, (2, 2, 2), (4, 2, 1), np.random.default_rng(0))
    assert start.n_components == (2, 2, 2) and start.n_factors == (4, 2, 1)
    assert np.isfinite(start.score(X))


# ------------------------------------------------------------------ stopping rule
def _r_ratio(hist):
    """deepgmm's ratio, written as in R: ma = filter(x, rep(1/5, 5), sides = 1)."""
    x = np.asarray(hist)
    ma = np.convolve(x, np.ones(5) / 5, mode="full")[: len(x)]
    ma[:4] = np.nan  # filter(..., sides = 1) gives NA for the first n - 1 values
    hh = len(x) - 1
    return (ma[hh] - ma[hh - 1]) / abs(ma[hh - 1])  # R's ma[hh + 1], ma[hh] (1-based)


def test_should_stop_on_flat_history():
    assert deepgmm_should_stop([-100.0] * 7, 1e-3)


def test_should_not_stop_while_rising_steeply():
    hist = list(-1000.0 + 50.0 * np.arange(12))
    assert not deepgmm_should_stop(hist, 1e-3)


def test_should_not_stop_before_six_iterations():
    # deepgmm forces ratio = 2 eps for hh <= 5 whatever the history
    for n in range(1, 7):
        assert not deepgmm_should_stop([-100.0] * n, 1e-3)


def test_should_stop_when_likelihood_falls():
    hist = list(-1000.0 - 10.0 * np.arange(10))
    assert deepgmm_should_stop(hist, 1e-12)


def test_should_stop_matches_r_formula(rng):
    for _ in range(50):
        hist = list(np.cumsum(rng.normal(1.0, 2.0, size=rng.integers(7, 20))) - 500.0)
        ratio = _r_ratio(hist)
        for eps in (1e-4, 1e-3, 1e-2):
            assert deepgmm_should_stop(hist, eps) == (not ratio > eps)
    # Just above and just below the threshold
    base = [-1000.0] * 6
    assert not deepgmm_should_stop([*base, -1000.0 + 5 * 1000 * 2e-3], 1e-3)
    assert deepgmm_should_stop([*base, -1000.0 + 5 * 1000 * 0.5e-3], 1e-3)


def test_fixed_run_of_the_stochastic_em_warns_that_it_is_not_assessed(small3):
    from bayes_dgmm import DeepGaussianMixture

    _, X = small3
    est = DeepGaussianMixture(
        (2, 2, 2), n_factors=(4, 2, 1), algorithm="stochastic", init="random",
        stopping="fixed", max_iter=5, random_state=0,
    )  # fmt: skip
    with pytest.warns(ConvergenceWarning, match="the stationarity rule") as caught:
        est.fit(X)
    assert not est.converged_ and est.n_iter_ == 5
    assert not any("Aitken" in str(w.message) for w in caught)


def _ar1(rng, n, phi, sd=1.0):
    e = rng.normal(0.0, sd * np.sqrt(1 - phi**2), size=n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sd)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def test_stationary_drift_is_the_difference_of_the_halves_means(rng):
    hist = list(rng.normal(-500.0, 3.0, size=80))
    drift, z = stationary_drift(hist)
    w = STATIONARY_WINDOW
    assert drift == pytest.approx(np.mean(hist[-w:]) - np.mean(hist[-2 * w : -w]), rel=1e-12)
    assert np.isfinite(z)
    # too short a history has no figure
    assert np.isnan(stationary_drift(hist[: 2 * w])[1])


def test_stationary_rule_holds_about_95_percent_of_the_time_on_white_noise():
    # Monte Carlo reference: for stationary white noise the z-score is about N(0, 1), so
    # |z| <= 2 about 95% of the time (2000 series: Monte Carlo sd 0.005)
    rng = np.random.default_rng(7)
    n = 2 * STATIONARY_WINDOW + 1
    hits = [abs(stationary_drift(_ar1(rng, n, 0.0) - 1e5)[1]) <= STATIONARY_Z for _ in range(2000)]
    assert 0.93 <= np.mean(hits) <= 0.97


def test_stationary_rule_is_conservative_on_autocorrelated_noise():
    # the lag-1 correlation of 25 points is biased low, so an AR(1) chain passes less often
    # than 95%: it runs on longer, it is never declared stationary more easily
    rng = np.random.default_rng(11)
    n = 2 * STATIONARY_WINDOW + 1
    hits = [abs(stationary_drift(_ar1(rng, n, 0.5))[1]) <= STATIONARY_Z for _ in range(2000)]
    assert 0.75 <= np.mean(hits) <= 0.93


def test_a_crawl_never_passes_the_stationarity_rule():
    # the study's stochastic EM at iteration 200-400: +7 nats per iteration, noise sd 50
    rng = np.random.default_rng(8)
    n = 2 * STATIONARY_WINDOW + 1
    passes = [
        abs(stationary_drift(-526000 + 7.0 * np.arange(n) + _ar1(rng, n, 0.3, 50.0))[1])
        <= STATIONARY_Z
        for _ in range(500)
    ]
    assert not any(passes)


def test_the_default_stochastic_run_stops_where_its_log_likelihood_is_stationary(small3):
    from bayes_dgmm import DeepGaussianMixture

    _, X = small3
    est = DeepGaussianMixture(
        (2, 2, 2), n_factors=(4, 2, 1), algorithm="stochastic", init="kmeans",
        max_iter=500, random_state=0,
    ).fit(X)  # fmt: skip
    assert est.criterion_ == "stationary" and est.converged_
    assert est.n_iter_ % STATIONARY_WINDOW == 0 and est.n_iter_ < 500
    drift, z = stationary_drift(est.history_.log_likelihood)
    assert abs(z) <= STATIONARY_Z and est.remaining_ == pytest.approx(drift)


def test_a_transient_in_the_earlier_half_does_not_pass_as_noise():
    # a fall from a wide transient into a flat stretch: the drift is judged against the
    # last half's noise, so it is not stationary
    rng = np.random.default_rng(9)
    w = STATIONARY_WINDOW
    earlier = -530000 + rng.normal(0, 20000, size=w + 1)
    last = -502000 + rng.normal(0, 1.0, size=w)
    drift, z = stationary_drift(np.concatenate([earlier, last]))
    assert abs(z) > 100 and abs(drift) > 1000
