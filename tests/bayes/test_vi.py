"""ADVI started from a diagonal Laplace approximation and stopped when the ELBO stops."""

from __future__ import annotations

import numpy as np
import pytest

pm = pytest.importorskip("pymc")

from bayes_dgmm.bayes.backends.vi import ELBOConvergence, laplace_sd, run_vi  # noqa: E402

N_OBS, SIGMA, PRIOR_SD = 50, 2.0, 10.0


@pytest.fixture(scope="module")
def conjugate():
    """y ~ N(mu, 2^2), mu ~ N(0, 10^2): the posterior of mu is Gaussian, known exactly."""
    y = np.random.default_rng(0).normal(3.0, SIGMA, size=N_OBS)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, PRIOR_SD)
        pm.Normal("y", mu, SIGMA, observed=y)
    precision = 1 / PRIOR_SD**2 + N_OBS / SIGMA**2
    return model, y.sum() / SIGMA**2 / precision, precision**-0.5


@pytest.fixture(scope="module")
def regression():
    """Two strongly correlated coefficients of a linear regression, known posterior."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    X = np.column_stack([a, a + 0.3 * rng.normal(size=200)])
    y = X @ [1.0, -0.5] + rng.normal(size=200)
    with pm.Model() as model:
        beta = pm.Normal("beta", 0.0, 10.0, shape=2)
        pm.Normal("y", pm.math.dot(X, beta), 1.0, observed=y)
    precision = X.T @ X + np.eye(2) / 100
    cov = np.linalg.inv(precision)  # the 2 x 2 reference, not package code
    return model, np.linalg.solve(precision, X.T @ y), cov


def test_elbo_convergence_stops_on_a_plateau_only():
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 20.0, size=4000)
    crawl = ELBOConvergence(window=500)
    losses = 1e4 - 0.2 * np.arange(4000) + noise  # falls 100 per window, noise se ~1.3
    for i in range(1, 4001):
        crawl(None, losses[:i], i)  # never raises: it is still gaining
    assert not crawl.converged and crawl.gain == pytest.approx(100, abs=10)
    flat = ELBOConvergence(window=500)
    with pytest.raises(StopIteration):
        for i in range(1, 4001):
            flat(None, (1e4 + noise)[:i], i)
    assert flat.converged and flat.iteration == 1000


def test_laplace_sd_is_the_posterior_sd_of_a_gaussian(conjugate):
    model, mean, sd = conjugate
    assert laplace_sd(model, {"mu": np.array(mean)}) == pytest.approx([sd], rel=1e-4)
    # away from the mode the curvature of a Gaussian is the same
    assert laplace_sd(model, {"mu": np.array(mean + 3)}) == pytest.approx([sd], rel=1e-4)


def test_advi_converges_to_the_exact_posterior(conjugate):
    model, mean, sd = conjugate
    idata, check = run_vi(
        "advi",
        model,
        {"mu": np.array(0.0)},
        n=20000,
        draws=4000,
        random_seed=0,
        progressbar=False,
        window=200,
    )
    assert check.converged and idata["loss"].attrs["converged"] == 1
    draws = idata["posterior"]["mu"].values.ravel()
    # 4000 draws: the mean's Monte Carlo se is sd/63; q's own error is a few % of sd
    assert abs(draws.mean() - mean) < 0.2 * sd
    assert draws.std() == pytest.approx(sd, rel=0.15)


def test_fullrank_advi_finds_the_correlation(regression):
    model, mean, cov = regression
    idata, check = run_vi(
        "fullrank_advi",
        model,
        {"beta": mean + 0.1},
        n=30000,
        draws=4000,
        random_seed=0,
        progressbar=False,
        window=300,
    )
    assert check.converged
    draws = idata["posterior"]["beta"].values.reshape(-1, 2)
    corr = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    assert corr < -0.9  # the reference is strongly correlated; mean-field could not say so
    assert np.corrcoef(draws.T)[0, 1] == pytest.approx(corr, abs=0.05)
    np.testing.assert_allclose(draws.std(axis=0), np.sqrt(np.diag(cov)), rtol=0.2)


def test_advi_that_cannot_converge_in_its_budget_says_so(conjugate):
    model, *_ = conjugate
    _, check = run_vi(
        "advi",
        model,
        {"mu": np.array(-50.0)},
        n=300,
        draws=10,
        random_seed=0,
        progressbar=False,
        window=100,
    )
    assert not check.converged


def test_laplace_draws_the_exact_gaussian_posterior(regression):
    from bayes_dgmm.bayes.backends.flat import compile_flat_logp_grad
    from bayes_dgmm.bayes.backends.laplace import negative_hessian, run_laplace

    model, mean, cov = regression
    fn, _ = compile_flat_logp_grad(model)
    # the Hessian of a Gaussian log density is its precision, everywhere
    np.testing.assert_allclose(negative_hessian(fn, mean + 1.0), np.linalg.inv(cov), rtol=1e-5)
    idata = run_laplace(model, {"beta": mean + 0.5}, draws=4000, random_seed=0)
    post = idata["posterior"]
    assert post.attrs["laplace_converged"] == 1
    assert post.attrs["laplace_newton_decrement"] < 0.1
    draws = post["beta"].values.reshape(-1, 2)
    se = np.sqrt(np.diag(cov) / 4000)
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mean), 5 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.1, atol=0.1 * np.abs(cov).max())
    assert "observed_data" in idata.children


def test_minibatch_likelihood_is_unbiased_and_minibatch_advi_fits():
    import warnings

    from bayes_dgmm import BayesianDeepGaussianMixture, DGMMParams
    from bayes_dgmm.bayes.model import build_model, params_to_point, transformed_point
    from bayes_dgmm.model.spec import DGMMSpec

    truth = DGMMParams.random(5, (2, 2), (2, 1), random_state=0, separation=4.0)
    X, _ = truth.sample(3000, random_state=1)
    spec = DGMMSpec((2, 2), (2, 1))
    full, batches = build_model(X, spec), build_model(X, spec, batch_size=200)
    point = transformed_point(full, params_to_point(truth, full))
    exact = float(full.compile_logp()(point))
    noisy = batches.compile_logp()
    draws = np.array([float(noisy(point)) for _ in range(400)])
    # the mean of the scaled batch log densities is the full one, within 4 standard errors
    assert abs(draws.mean() - exact) < 4 * draws.std() / np.sqrt(draws.size)
    assert draws.std() > 1.0  # and they are random batches, not the full data
    est = BayesianDeepGaussianMixture((2, 2), (2, 1), random_seed=0, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        est.fit(X, method="advi", init=truth, batch_size=200, n=5000, draws=200)
    assert est.converged_
    assert est.idata_["observed_data"]["x"].shape == X.shape
    # q's draws score the full data about as well as the truth does (k = 27 parameters)
    mean_ll = float(est.idata_["sample_stats"]["log_likelihood_total"].mean())
    assert truth.score(X) - 100 < mean_ll < truth.score(X) + 100
    with pytest.raises(ValueError, match="batch_size=200 is for method='advi'"):
        est.fit(X, method="map", batch_size=200)


def test_advi_whose_step_gives_nan_raises_a_fit_error():
    import pytensor.tensor as pt

    from bayes_dgmm._validation import FitError

    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.Potential("wall", pt.switch(mu > 0.5, np.nan, 0.0))  # NaN beyond 0.5
    with pytest.raises(FitError, match=r"method='advi' diverged: .* of n=2000 iterations"):
        run_vi(
            "advi",
            model,
            {"mu": np.array(0.0)},
            n=2000,
            draws=10,
            random_seed=0,
            progressbar=False,
            sd=np.array([5.0]),
        )
