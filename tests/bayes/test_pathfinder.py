"""Pathfinder against posteriors known exactly, and one it cannot approximate."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

pm = pytest.importorskip("pymc")

from bayes_dgmm.bayes.backends.pathfinder import (  # noqa: E402
    PARETO_K_OK,
    _inverse_hessian,
    pareto_k,
    run_pathfinder,
)


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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pathfinder_on_neals_funnel_says_it_has_not_converged(seed):
    # no Gaussian approximates a funnel: the importance weights are far from uniform and
    # PSIS's Pareto k is far above 0.7 (6.8 measured, or a failed tail fit: inf)
    with pm.Model() as model:
        v = pm.Normal("v", 0, 3)
        pm.Normal("x", 0, pm.math.exp(v / 2), shape=9)
    start = {"v": np.array(1.0), "x": np.ones(9)}
    with pytest.warns(ConvergenceWarning, match="Pareto k"):
        tree = run_pathfinder(model, start, draws=2000, random_seed=seed)
    assert tree["posterior"].attrs["pathfinder_converged"] == 0
    assert tree["posterior"].attrs["pathfinder_pareto_k"] > 2 * PARETO_K_OK


def test_pareto_k_of_exact_draws_is_small_and_of_bad_ones_infinite():
    assert pareto_k(np.zeros(1000) + 1e-9 * np.arange(1000)) < 0.5
    assert pareto_k(np.array([0.0, -np.inf, 1.0] * 100)) == np.inf
