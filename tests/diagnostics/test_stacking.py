"""Chain stacking against cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from arviz_base import from_dict
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from bayes_dgmm.diagnostics.stacking import stack_chains, stack_runs, stacking_weights


def _normal_fit(y, mu_draws):
    """A DataTree of draws of mu (chain, draw) for y ~ N(mu, 1), with its log-likelihood."""
    mu = np.asarray(mu_draws)
    ll = norm.logpdf(y[None, None, :], loc=mu[:, :, None])
    return from_dict(
        {"posterior": {"mu": mu}, "log_likelihood": {"y": ll}, "observed_data": {"y": y}},
        dims={"y": ["obs"]},
    )


def test_weights_of_two_units_each_best_on_its_own_points_are_their_shares():
    # unit 0 predicts 30% of the points well, unit 1 the rest: sum_i log(w p0 + (1-w) p1)
    # is f log w + (1 - f) log(1 - w) up to e^-50, maximal at w = f.
    n, f = 1000, 0.3
    elpd = np.full((n, 2), -60.0)
    elpd[: int(f * n), 0] = elpd[int(f * n) :, 1] = -10.0
    w, stacked = stacking_weights(elpd)
    assert w == pytest.approx([f, 1 - f], abs=1e-4)
    assert stacked == pytest.approx(
        -10.0 * n + n * (f * np.log(f) + (1 - f) * np.log(1 - f)), rel=1e-6
    )


def test_weights_match_a_brute_force_search_and_survive_very_low_scores():
    rng = np.random.default_rng(3)
    elpd = rng.normal(-900.0, 3.0, size=(400, 2))  # exp() of these underflows to 0
    w, stacked = stacking_weights(elpd)

    def neg(v):
        return -np.logaddexp(elpd[:, 0] + np.log(v), elpd[:, 1] + np.log1p(-v)).sum()

    best = minimize_scalar(
        neg, bounds=(1e-12, 1 - 1e-12), method="bounded", options={"xatol": 1e-10}
    )
    assert w[0] == pytest.approx(best.x, abs=1e-4)
    assert stacked == pytest.approx(-best.fun, rel=1e-9)


def test_a_chain_in_a_poor_mode_gets_no_weight():
    rng = np.random.default_rng(0)
    y = rng.normal(0.0, 1.0, size=100)
    sd = 1 / np.sqrt(y.size)
    good = rng.normal(y.mean(), sd, size=1000)
    bad = rng.normal(y.mean() + 2.0, sd, size=1000)  # 20 posterior sds away
    fit = _normal_fit(y, np.stack([good, bad, good[::-1]]))
    res = stack_chains(fit, random_state=1)
    assert res.weights[1] < 1e-3
    assert res.weights[0] + res.weights[2] == pytest.approx(1.0, abs=1e-3)
    # the stacked elpd is that of the good chains (pointwise identical), and the resampled
    # posterior holds no draw of the poor chain
    assert res.elpd_stacked == pytest.approx(res.elpd_loo[0], abs=0.05)
    assert res.elpd_loo[1] < res.elpd_loo[0] - 100
    assert not np.any(res.posterior["source"].values == 1)
    assert res.posterior.sizes["draw"] == 3000
    assert float(res.posterior["mu"].mean()) == pytest.approx(y.mean(), abs=4 * sd / np.sqrt(300))


def test_two_relabelled_modes_get_half_each_and_the_stacked_elpd_of_either():
    # a 2-component mixture's chains in the two labellings: the same likelihood per draw
    rng = np.random.default_rng(1)
    y = np.concatenate([rng.normal(-3, 1, 150), rng.normal(3, 1, 150)])
    means = np.column_stack([rng.normal(-3, 0.08, 800), rng.normal(3, 0.08, 800)])
    ll = np.logaddexp(
        norm.logpdf(y[None, :], means[:, :1]), norm.logpdf(y[None, :], means[:, 1:])
    ) + np.log(0.5)
    fit = from_dict(
        {
            "posterior": {"mean": np.stack([means, means[:, ::-1]])},
            "log_likelihood": {"y": np.stack([ll, ll])},
        },
        dims={"mean": ["component"], "y": ["obs"]},
    )
    res = stack_chains(fit, random_state=0)
    assert res.weights == pytest.approx([0.5, 0.5], abs=1e-6)
    assert res.elpd_stacked == pytest.approx(res.elpd_loo[0], rel=1e-9)
    assert res.elpd_loo[0] == pytest.approx(res.elpd_loo[1], rel=1e-12)
    counts = np.bincount(res.posterior["source"].values.ravel(), minlength=2)
    assert abs(counts[0] - counts[1]) < 4 * np.sqrt(counts.sum())  # binomial(1600, 1/2)


def test_runs_are_stacked_as_units_and_bad_input_is_named():
    rng = np.random.default_rng(2)
    y = rng.normal(size=80)
    sd = 1 / np.sqrt(y.size)
    runs = {
        "near": _normal_fit(y, rng.normal(y.mean(), sd, size=(2, 500))),
        "far": _normal_fit(y, rng.normal(y.mean() - 3, sd, size=(2, 500))),
    }
    res = stack_runs(runs, n_draws=200, random_state=0)
    assert res.names == ["near", "far"] and res.weights[0] > 0.999
    assert list(res.table().index) == ["near", "far"]
    with pytest.raises(ValueError, match="runs is empty"):
        stack_runs({})
    with pytest.raises(ValueError, match="log_likelihood"):
        stack_chains(from_dict({"posterior": {"mu": np.zeros((2, 5))}}))
    with pytest.raises(ValueError, match="elpd_pointwise"):
        stacking_weights(np.array([[0.0, np.nan]]))


def test_too_few_draws_for_psis_are_named():
    from bayes_dgmm.diagnostics.stacking import MIN_LOO_DRAWS, loo_summary

    y = np.random.default_rng(5).normal(size=40)
    short = _normal_fit(y, np.zeros((2, 10)))  # 2 chains x 10 draws: 20 < 30
    assert MIN_LOO_DRAWS == 30
    assert np.isnan(loo_summary(short)["elpd_loo"])
    with pytest.raises(ValueError, match="chain 0 has fewer than 30 draws"):
        stack_chains(short)


def _normal_mean_loo(y, sigma, tau):
    """Exact LOO of y_i ~ N(mu, sigma^2), mu ~ N(0, tau^2): sum_i log p(y_i | y_-i)."""
    out = 0.0
    for i in range(y.size):
        rest = np.delete(y, i)
        prec = 1 / tau**2 + rest.size / sigma**2
        mean = rest.sum() / sigma**2 / prec
        out += norm.logpdf(y[i], mean, np.sqrt(sigma**2 + 1 / prec))
    return out


def test_draws_of_a_wrong_gaussian_with_their_weights_give_the_exact_loo():
    # q twice as wide as the normal-mean posterior; with log p - log q per draw the
    # approximate-posterior correction recovers the analytic LOO, q's draws alone do not
    from bayes_dgmm.diagnostics.stacking import loo_summary

    rng = np.random.default_rng(0)
    sigma, tau = 1.0, 10.0
    y = rng.normal(0.3, sigma, size=20)
    prec = 1 / tau**2 + y.size / sigma**2
    post_mean, post_sd = y.sum() / sigma**2 / prec, 1 / np.sqrt(prec)
    mu = rng.normal(post_mean, 2 * post_sd, size=(1, 4000))
    log_lik = norm.logpdf(y[None, None, :], mu[..., None], sigma)
    log_p = norm.logpdf(mu, post_mean, post_sd)  # normalised: a constant would cancel
    log_q = norm.logpdf(mu, post_mean, 2 * post_sd)
    exact = _normal_mean_loo(y, sigma, tau)

    def tree(with_weights):
        groups = {"posterior": {"mu": mu}, "log_likelihood": {"y": log_lik}}
        if with_weights:
            groups["sample_stats"] = {"log_importance_weight": log_p - log_q}
        return from_dict(groups, dims={"y": ["obs"]})

    corrected = loo_summary(tree(True))["elpd_loo"]
    plain = loo_summary(tree(False))["elpd_loo"]
    assert corrected == pytest.approx(exact, abs=0.1)
    assert plain < exact - 0.3  # q's spread costs predictive density


def test_weights_too_heavy_tailed_for_psis_leave_the_plain_loo():
    # q a third as wide as the posterior: p / q has a heavy tail (Pareto k = 1 - 1/9), the
    # correction would rest on a few draws, so the draws' plain PSIS-LOO is kept
    from bayes_dgmm.bayes.backends.pathfinder import pareto_k
    from bayes_dgmm.diagnostics.stacking import loo_summary

    rng = np.random.default_rng(0)
    y = rng.normal(0.3, 1.0, size=20)
    post_mean, post_sd = y.sum() / (y.size + 0.01), 1 / np.sqrt(y.size + 0.01)
    mu = rng.normal(post_mean, post_sd / 3, size=(1, 2000))
    log_lik = norm.logpdf(y[None, None, :], mu[..., None], 1.0)
    weights = norm.logpdf(mu, post_mean, post_sd) - norm.logpdf(mu, post_mean, post_sd / 3)
    assert pareto_k(weights.ravel()) > 0.7
    groups = {"posterior": {"mu": mu}, "log_likelihood": {"y": log_lik}}
    plain = loo_summary(from_dict(groups, dims={"y": ["obs"]}))
    groups["sample_stats"] = {"log_importance_weight": weights}
    assert loo_summary(from_dict(groups, dims={"y": ["obs"]})) == plain
