"""Pathfinder against posteriors known exactly, and one it cannot approximate."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

pm = pytest.importorskip("pymc")

from bayes_dgmm.bayes.backends.pathfinder import _inverse_hessian, run_pathfinder  # noqa: E402
from bayes_dgmm.diagnostics.importance import PARETO_K_OK  # noqa: E402


def test_inverse_hessian_of_a_quadratic_is_exact_after_d_steps():
    # BFGS on a quadratic with exact line searches recovers A^-1 after d steps; with any d
    # independent (s, y = A s) pairs the updates satisfy the secant equations H y = s.
    rng = np.random.default_rng(0)
    B = rng.normal(size=(4, 4))
    A = B @ B.T + 4 * np.eye(4)
    pairs = [(s, A @ s) for s in rng.normal(size=(4, 4))]
    H = _inverse_hessian(pairs, 4)
    s, y = pairs[-1]
    np.testing.assert_allclose(H @ y, s, rtol=1e-10)
    assert np.all(np.linalg.eigvalsh(H) > 0)


def test_pathfinder_recovers_a_correlated_gaussian_posterior():
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    X = np.column_stack([a, a + 0.3 * rng.normal(size=200), rng.normal(size=200)])
    y = X @ [1.0, -0.5, 2.0] + rng.normal(size=200)
    with pm.Model() as model:
        beta = pm.Normal("beta", 0.0, 10.0, shape=3)
        pm.Normal("y", pm.math.dot(X, beta), 1.0, observed=y)
    precision = X.T @ X + np.eye(3) / 100
    mean = np.linalg.solve(precision, X.T @ y)
    cov = np.linalg.inv(precision)  # the 3 x 3 reference, not package code
    tree = run_pathfinder(model, {"beta": np.zeros(3)}, draws=4000, random_seed=0)
    post = tree["posterior"]
    assert post.attrs["pathfinder_converged"] == 1
    assert post.attrs["pathfinder_pareto_k"] < PARETO_K_OK
    draws = post["beta"].values.reshape(-1, 3)
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.1 * sd.max())
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.15, atol=0.05 * sd.max() ** 2)
    assert tree["sample_stats"]["log_importance_weight"].shape == (1, 4000)


def test_pathfinder_on_neals_funnel_says_it_has_not_converged():
    # no Gaussian approximates a funnel: q is too narrow in its neck and mouth, and the
    # importance weights p / q have a heavy tail (k 0.97 at this seed; seeds 0 and 2 gave
    # 0.75 and 0.71, close to the 0.7 line, so they make no robust test)
    with pm.Model() as model:
        v = pm.Normal("v", 0, 3)
        pm.Normal("x", 0, pm.math.exp(v / 2), shape=9)
    start = {"v": np.array(1.0), "x": np.ones(9)}
    with pytest.warns(ConvergenceWarning, match="Pareto k"):
        tree = run_pathfinder(model, start, draws=2000, random_seed=1)
    assert tree["posterior"].attrs["pathfinder_converged"] == 0
    assert tree["posterior"].attrs["pathfinder_pareto_k"] > PARETO_K_OK + 0.2


def test_pathfinder_on_a_gaussian_posterior_converges():
    with pm.Model() as model:
        pm.Normal("x", 0, 1, shape=5)
    tree = run_pathfinder(model, {"x": np.ones(5)}, draws=500, random_seed=0)
    assert tree["posterior"].attrs["pathfinder_converged"] == 1
    assert tree["posterior"].attrs["pathfinder_pareto_k"] <= PARETO_K_OK
