"""The posterior mode (MAP route, Laplace centre) and the top layer's exact rotations."""

from __future__ import annotations

import numpy as np
import pytest

pm = pytest.importorskip("pymc")

from bayes_dgmm import DGMMParams, DGMMSpec  # noqa: E402
from bayes_dgmm.bayes.backends.flat import compile_flat_logp_grad, flatten_point  # noqa: E402
from bayes_dgmm.bayes.backends.laplace import (  # noqa: E402
    negative_hessian,
    rotation_directions,
    run_laplace,
)
from bayes_dgmm.bayes.backends.mode import MODE_GTOL, posterior_mode, run_map  # noqa: E402
from bayes_dgmm.bayes.model import build_model, params_to_point, transformed_point  # noqa: E402


@pytest.fixture(scope="module")
def dgmm():
    """A small DGMM whose top layer has R_L = 2 (one exact rotation per top component)."""
    truth = DGMMParams.random(5, (2, 2), (3, 2), random_state=0, separation=5.0)
    X, _ = truth.sample(300, random_state=1)
    model = build_model(X, DGMMSpec((2, 2), (3, 2)))
    return truth, X, model


def _linear_model(seed):
    """A linear regression with a normal prior: its posterior is Gaussian."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(100, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.normal(size=100)
    with pm.Model() as model:
        beta = pm.Normal("beta", 0.0, 10.0, shape=3)
        pm.Normal("y", pm.math.dot(X, beta), 1.0, observed=y)
    return X, y, model


def test_map_of_a_gaussian_posterior_is_its_mean():
    X, y, model = _linear_model(1)
    mean = np.linalg.solve(X.T @ X + np.eye(3) / 100, X.T @ y)  # closed form
    tree = run_map(model, {"beta": np.zeros(3)})
    post = tree["posterior"]
    np.testing.assert_allclose(post["beta"].values[0, 0], mean, atol=1e-5)
    assert post.attrs["optimizer_success"] == 1
    assert post.attrs["optimizer_max_abs_gradient"] <= MODE_GTOL


def test_mode_of_a_dgmm_is_a_local_maximum(dgmm):
    truth, _, model = dgmm
    found = posterior_mode(model, params_to_point(truth, model))
    assert found.converged and found.max_abs_gradient <= MODE_GTOL
    fn, n = compile_flat_logp_grad(model)
    x_truth = flatten_point(model, transformed_point(model, params_to_point(truth, model)))
    assert found.logp >= float(fn(x_truth)[0])
    # brute force: no small step in 200 random directions rises above it
    rng = np.random.default_rng(0)
    steps = rng.normal(size=(200, n)) * 1e-3
    assert max(float(fn(found.x + d)[0]) for d in steps) <= found.logp + 1e-9


def test_a_stalled_optimiser_is_not_a_converged_mode(dgmm):
    truth, _, model = dgmm
    with pytest.warns(match=r"method='map' did not converge in maxiter=3 .* largest gradient"):
        tree = run_map(model, params_to_point(truth, model), maxiter=3)
    assert tree["posterior"].attrs["optimizer_success"] == 0
    assert tree["posterior"].attrs["optimizer_max_abs_gradient"] > MODE_GTOL


def test_top_layer_rotations_leave_the_log_density_unchanged(dgmm):
    truth, _, model = dgmm
    fn, _ = compile_flat_logp_grad(model)
    x = flatten_point(model, transformed_point(model, params_to_point(truth, model)))
    Q = rotation_directions(model, x)
    assert Q.shape == (x.size, 2)  # G_L = 2 components, one rotation each
    np.testing.assert_allclose(Q.T @ Q, np.eye(2), atol=1e-12)
    # rotate the second top component's loadings by a finite angle, with numpy
    rotated = params_to_point(truth, model)
    c, s = np.cos(0.7), np.sin(0.7)
    rotated["c_2"] = rotated["c_2"].copy()
    rotated["c_2"][1] = rotated["c_2"][1] @ np.array([[c, -s], [s, c]])
    x_rot = flatten_point(model, transformed_point(model, rotated))
    assert float(fn(x_rot)[0]) == pytest.approx(float(fn(x)[0]), abs=1e-8)
    # the rotation's path leaves x along the span of Q
    t = 1e-6
    rotated["c_2"][1] = params_to_point(truth, model)["c_2"][1] @ np.array(
        [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    )
    d = (flatten_point(model, transformed_point(model, rotated)) - x) / t
    np.testing.assert_allclose(Q @ (Q.T @ d), d, atol=1e-6 * np.abs(d).max())


def test_laplace_converges_off_the_exact_rotations(dgmm):
    truth, _, model = dgmm
    tree = run_laplace(model, params_to_point(truth, model), draws=10, random_seed=0)
    attrs = tree["posterior"].attrs
    assert attrs["laplace_converged"] == 1 and attrs["laplace_rotation_directions"] == 2
    assert attrs["laplace_nonpositive_eigenvalues"] == 0
    # at the mode the Hessian vanishes along the rotations (to finite-difference noise)
    fn, _ = compile_flat_logp_grad(model)
    found = posterior_mode(model, params_to_point(truth, model))
    H = negative_hessian(fn, found.x)
    Q = rotation_directions(model, found.x)
    assert np.abs(H @ Q).max() < 1e-3 * np.abs(H).max()


def test_the_mode_search_never_ends_below_its_best_point(monkeypatch):
    # scipy's BFGS can end at a worse point than it evaluated when a line search fails
    # (measured on the study data); the search returns the best point it saw instead
    import scipy.optimize

    import bayes_dgmm.bayes.backends.mode as mode

    with pm.Model() as model:
        pm.Normal("beta", 0.0, 1.0, shape=2)
    real_minimize = scipy.optimize.minimize

    def failing_minimize(fun, x0, **kwargs):
        fun(x0)
        res = real_minimize(fun, x0, **kwargs)
        res.x = x0 + 10.0  # a point 100 nats below the start
        return res

    monkeypatch.setattr(mode.scipy.optimize, "minimize", failing_minimize)
    found = posterior_mode(model, {"beta": np.array([0.5, -0.5])})
    assert found.logp == pytest.approx(-np.log(2 * np.pi), abs=1e-6)  # at the mean
    np.testing.assert_allclose(found.x, 0.0, atol=1e-4)


def test_laplace_draws_of_a_gaussian_posterior_have_equal_importance_weights():
    # the posterior of a linear model with a normal prior is Gaussian, so the Laplace
    # approximation is exact: log p - log q is the same for every draw (to the Hessian's
    # differencing error, ~1e-5 here; a wrong log q varies by order one across draws)
    _, _, model = _linear_model(2)
    tree = run_laplace(model, {"beta": np.zeros(3)}, draws=200, random_seed=0)
    weights = tree["sample_stats"]["log_importance_weight"].values
    assert weights.shape == (1, 200)
    assert np.ptp(weights) < 1e-3


def test_map_finishes_with_newton_steps_where_bfgs_stops_early():
    # One BFGS iteration leaves the Gaussian posterior's mode far; the Newton steps on the
    # finite-difference Hessian reach it and certify it (positive definite, decrement ~0).
    X, y, model = _linear_model(2)
    mean = np.linalg.solve(X.T @ X + np.eye(3) / 100, X.T @ y)
    tree = run_map(model, {"beta": np.zeros(3)}, maxiter=1)
    post = tree["posterior"]
    assert post.attrs["optimizer_nit"] == 1
    np.testing.assert_allclose(post["beta"].values[0, 0], mean, atol=1e-5)
    assert post.attrs["optimizer_success"] == 1
    assert post.attrs["optimizer_nonpositive_eigenvalues"] == 0
    assert post.attrs["optimizer_newton_decrement"] < 1e-6
