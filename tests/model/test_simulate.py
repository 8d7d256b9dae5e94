import numpy as np
import pytest

from bayes_dgmm import DGMMParams, simulate


def test_simulate_structure_and_frequencies():
    params = DGMMParams.random(6, (3, 2), (3, 1), random_state=0)
    sim = simulate(params, 50_000, random_state=1)
    assert sim.X.shape == (50_000, 6)
    assert [z.shape[1] for z in sim.scores] == [3, 1]
    for l in range(2):
        freq = np.bincount(sim.labels[:, l]) / 50_000
        np.testing.assert_allclose(freq, params.pi[l], atol=0.01)
    # top scores are standard normal
    assert abs(sim.scores[-1].mean()) < 0.02
    assert abs(sim.scores[-1].var() - 1) < 0.03
    # x given z1 and g1 is eta + Lambda z1 + noise of variance psi
    g = sim.labels[:, 0] == 1
    resid = sim.X[g] - params.eta[0][1] - sim.scores[0][g] @ params.Lambda[0][1].T
    np.testing.assert_allclose(resid.var(0), params.psi[0][1], rtol=0.05)


def test_simulate_reproducible_and_checked():
    params = DGMMParams.random(6, (3, 2), (3, 1), random_state=0)
    a = simulate(params, 20, random_state=np.random.default_rng(3))
    b = simulate(params, 20, random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(a.X, b.X)
    with pytest.raises(ValueError, match="n_samples=0 must be a positive integer"):
        simulate(params, 0)
    with pytest.raises(TypeError, match="random_state='x' is not a seed"):
        simulate(params, 5, random_state="x")
