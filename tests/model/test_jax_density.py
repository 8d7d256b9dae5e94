"""The hand-written JAX log-likelihood against the numpy density, brute force over the
global GMM (scipy), tiny noise variances, and finite differences of its gradient."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayes_dgmm import DGMMParams
from bayes_dgmm.model import jax_density


def _jax_paths(X, params):
    import jax

    with jax.enable_x64(True):
        out = jax_density.log_prob_paths(
            X, *(list(getattr(params, k)) for k in ("pi", "eta", "Lambda", "psi"))
        )
        return np.asarray(out, dtype=np.float64)


@pytest.mark.parametrize(
    "comps, facts, J", [((3,), (2,), 4), ((2, 3), (3, 1), 5), ((2, 2, 2), (3, 2, 1), 5)]
)
def test_path_densities_are_the_global_gmm_s_by_brute_force(rng, comps, facts, J):
    params = DGMMParams.random(J, comps, facts, rng)
    X, _ = params.sample(60, random_state=3)
    gmm = params.global_gmm()
    brute = np.stack(
        [
            np.log(w) + multivariate_normal(mean=mu, cov=cov).logpdf(X)
            for w, mu, cov in zip(gmm.weights, gmm.means, gmm.covariances, strict=True)
        ],
        axis=1,
    )
    ours = _jax_paths(X, params)
    np.testing.assert_allclose(ours, brute, rtol=1e-10, atol=1e-10)


def test_the_study_model_s_log_likelihood_equals_score_samples(icbinb):
    value, _ = jax_density.value_and_grad(icbinb.X, icbinb.params)
    ref = float(np.sum(icbinb.params.score_samples(icbinb.X)))
    assert value == pytest.approx(ref, rel=1e-10)


def test_tiny_noise_loses_no_accuracy(rng):
    """Layer-1 noise 1e-9 of the signal: the terms that cancel in a plain Woodbury form are
    formed as residual vectors here, so the density still equals score_samples."""
    params = DGMMParams.random(8, (2, 2), (3, 1), rng, separation=4.0)
    params = params.replace(psi=[1e-9 * params.psi[0], params.psi[1]])
    X, _ = params.sample(200, random_state=4)
    ours = logsumexp(_jax_paths(X, params), axis=1)
    np.testing.assert_allclose(ours, params.score_samples(X), rtol=1e-9, atol=1e-8)


def test_gradient_matches_central_differences(rng):
    params = DGMMParams.random(5, (2, 2), (2, 1), rng)
    X, _ = params.sample(80, random_state=5)
    _, grads = jax_density.value_and_grad(X, params)
    h = 1e-6
    for name, layer, index in [
        ("eta", 0, (1, 2)),
        ("Lambda", 0, (0, 3, 1)),
        ("psi", 1, (1, 0)),
        ("Lambda", 1, (1, 1, 0)),
        ("eta", 1, (0, 1)),
    ]:
        arrays = {k: [a.copy() for a in getattr(params, k)] for k in ("pi", "eta", "Lambda", "psi")}

        def score(delta, arrays=arrays, name=name, layer=layer, index=index):
            moved = {k: [a.copy() for a in v] for k, v in arrays.items()}
            moved[name][layer][index] += delta
            return DGMMParams(**moved).score(X)

        fd = (score(h) - score(-h)) / (2 * h)
        got = grads[("pi", "eta", "Lambda", "psi").index(name)][layer][index]
        assert got == pytest.approx(fd, rel=1e-5, abs=1e-5), (name, layer, index)
