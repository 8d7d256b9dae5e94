"""The Newton finish of the exact EM: its gradient against finite differences of the exact
log-likelihood, its end point against a long EM run, its bound on the noise variances."""

import numpy as np
import pytest

from bayes_dgmm.em import newton
from bayes_dgmm.em.aligned import run_exact_em
from bayes_dgmm.em.estep import e_step, path_model
from bayes_dgmm.em.vector import pack, unpack
from bayes_dgmm.experiments.datasets import make_dgmm_data


@pytest.fixture(scope="module")
def small():
    return make_dgmm_data(400, 5, (2, 2), (2, 1), 3, separation=3.0)


def _perturbed(params, rng, size=0.05):
    theta = pack(params)
    return unpack(theta + size * rng.normal(size=theta.shape), params)


def test_the_labels_gradient_is_the_marginal_likelihoods_gradient(small, rng):
    import jax

    params = _perturbed(small.params, rng)
    X = small.X
    grad_fn, _ = newton._compiled(params.n_components, params.n_factors, params.n_features)
    _, resp = e_step(X, path_model(params), params.n_components[0])
    with jax.enable_x64(True):
        g = np.asarray(grad_fn(pack(params), *newton._statistics(X, resp)))
    theta = pack(params)
    h = 1e-5
    fd = np.empty_like(theta)
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = h
        fd[k] = (unpack(theta + e, params).score(X) - unpack(theta - e, params).score(X)) / (2 * h)
    # log pi is over-parametrised (a shift of all logits changes nothing): both agree there too
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-4 * np.max(np.abs(fd)))


def test_newton_reaches_the_optimum_of_a_long_em_run(small, rng):
    X = small.X
    start, _ = run_exact_em(X, _perturbed(small.params, rng, 0.2), max_iter=30, tol=0.0)
    _, history = run_exact_em(X, start, max_iter=20000, tol=1e-9)
    result = newton.newton_finish(X, start, tol=1e-4)
    assert result.decrement <= 1e-4 * X.shape[0]
    assert result.log_likelihood[-1] == pytest.approx(result.params.score(X), abs=1e-6)
    # the long EM's end is the reference: Newton is at it, to within its tolerance
    assert result.log_likelihood[-1] >= history[-1] - 1e-4 * X.shape[0]
    assert result.log_likelihood[-1] <= history[-1] + 1.0


def test_newton_keeps_the_noise_variances_at_or_above_their_floor(small, rng):
    X = small.X
    start, _ = run_exact_em(X, _perturbed(small.params, rng, 0.2), max_iter=30, tol=0.0)
    floor = [np.full_like(p, 0.0) for p in start.psi]
    # a floor above the fitted noise variance of one feature of one component
    floor[0][0, 0] = 2.0 * start.psi[0][0, 0]
    result = newton.newton_finish(X, start, tol=1e-3, psi_floor=floor)
    assert np.all(result.params.psi[0] >= floor[0] * (1 - 1e-12))
    assert result.log_likelihood[-1] >= result.log_likelihood[0]


def test_the_hessian_by_paths_is_the_hessian_of_the_whole_q(rng):
    """The Hessian scattered from one term per path equals differentiating q's gradient
    whole (forward mode over the reverse-mode gradient), on a three-layer model."""
    import jax

    data = make_dgmm_data(300, 5, (2, 2, 2), (3, 2, 1), 4, separation=3.0)
    params = _perturbed(data.params, rng)
    grad_fn, hess_fn = newton._compiled(params.n_components, params.n_factors, 5)
    _, resp = e_step(data.X, path_model(params), 2)
    stats = newton._statistics(data.X, resp)
    with jax.enable_x64(True):
        H = np.asarray(hess_fn(pack(params), *stats))
        ref = np.asarray(jax.jacfwd(grad_fn)(pack(params), *stats))
    assert H.shape == (pack(params).size,) * 2
    np.testing.assert_allclose(H, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    assert np.abs(ref).max() > 1.0  # a real Hessian, not zeros on both sides
