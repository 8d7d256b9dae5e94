"""Property tests over random architectures (depth 1-3, small dimensions) and parameters."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayes_dgmm import DGMMParams, simulate

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def architectures(draw):
    depth = draw(st.integers(1, 3))
    comps = tuple(draw(st.integers(1, 3)) for _ in range(depth))
    top = draw(st.integers(1, 2))
    facts = [top]
    for _ in range(depth - 1):
        facts.insert(0, facts[0] + draw(st.integers(1, 2)))
    n_features = facts[0] + draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    return n_features, comps, tuple(facts), seed


@SETTINGS
@given(architectures())
def test_densities_and_covariances(arch):
    J, comps, facts, seed = arch
    params = DGMMParams.random(J, comps, facts, random_state=seed)
    gmm = params.global_gmm()
    np.testing.assert_allclose(gmm.weights.sum(), 1.0)
    np.testing.assert_allclose(gmm.covariances, np.swapaxes(gmm.covariances, 1, 2))
    assert np.all(np.linalg.eigvalsh(gmm.covariances) > 0)
    sim = simulate(params, 50, random_state=seed)
    logp = params.score_samples(sim.X)
    assert np.all(np.isfinite(logp))
    proba = params.predict_proba(sim.X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(logp, gmm.score_samples(sim.X), rtol=1e-9)
    for layer in range(1, len(comps) + 1):
        np.testing.assert_allclose(params.predict_proba(sim.X, layer=layer).sum(axis=1), 1.0)


@SETTINGS
@given(architectures())
def test_json_round_trip_is_exact(arch):
    J, comps, facts, seed = arch
    params = DGMMParams.random(J, comps, facts, random_state=seed)
    again = DGMMParams.from_json(params.to_json())
    assert again == params
    assert DGMMParams.from_named(params.to_named()) == params


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architectures())
def test_exact_em_never_decreases_the_likelihood(arch):
    from bayes_dgmm.em.estimator import DeepGaussianMixture

    J, comps, facts, seed = arch
    params = DGMMParams.random(J, comps, facts, random_state=seed)
    sim = simulate(params, 150, random_state=seed)
    est = DeepGaussianMixture(
        comps,
        n_factors=facts,
        max_iter=15,
        tol=0,
        stopping="fixed",
        random_state=seed,
        init="random",
    ).fit(sim.X)
    ll = np.asarray(est.history_.log_likelihood)
    assert np.all(np.isfinite(ll))
    assert np.all(np.diff(ll) >= -1e-7 * np.abs(ll[:-1]))
