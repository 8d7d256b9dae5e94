"""PyTensor's JAX mode for the Bayesian fits (``PYTENSOR_FLAGS=mode=JAX``)."""

from __future__ import annotations

import numpy as np
import pytest

pm = pytest.importorskip("pymc")
pytest.importorskip("jax")
import pytensor  # noqa: E402

from bayes_dgmm import BayesianDeepGaussianMixture, DGMMParams  # noqa: E402
from bayes_dgmm.bayes.backends.flat import compile_flat_logp_grad  # noqa: E402
from bayes_dgmm.bayes.model import build_model  # noqa: E402
from bayes_dgmm.model.spec import DGMMSpec  # noqa: E402


@pytest.fixture(scope="module")
def data():
    truth = DGMMParams.random(5, (2, 2), (2, 1), random_state=0, separation=4.0)
    X, _ = truth.sample(120, random_state=1)
    return truth, X


def test_jax_log_density_and_gradient_equal_the_c_backend(data):
    truth, X = data
    model = build_model(X, DGMMSpec((2, 2), (2, 1)))
    jax_fn, n = compile_flat_logp_grad(model, "JAX")
    c_fn, _ = compile_flat_logp_grad(model, "CVM")
    points = [np.random.default_rng(seed).normal(0, 0.5, size=n) for seed in range(3)]
    before = [float(jax_fn(x)[0]) for x in points]
    # the JAX function reads the model's data at every call, as the C function does
    pm.set_data({"X": truth.sample(80, random_state=2)[0]}, model=model, coords={"obs": range(80)})
    for x, old in zip(points, before, strict=True):
        (lj, gj), (lc, gc) = jax_fn(x), c_fn(x)
        assert float(lj) == pytest.approx(float(lc), rel=1e-10)
        assert float(lj) != pytest.approx(old, rel=1e-3)
        np.testing.assert_allclose(gj, gc, rtol=1e-8, atol=1e-8 * np.abs(gc).max())


def test_advi_and_map_run_in_jax_mode(data):
    truth, X = data
    with pytensor.config.change_flags(mode="JAX"):
        est = BayesianDeepGaussianMixture((2, 2), (2, 1), random_seed=0, progressbar=False)
        est.fit(X, method="advi", init=truth, n=1500, draws=100)
        mapped = BayesianDeepGaussianMixture((2, 2), (2, 1), random_seed=0, progressbar=False)
        mapped.fit(X, method="map", init=truth)
    assert est.idata_["posterior"].sizes["draw"] == 100
    # q's draws stay near the mode: their log-likelihood lies below the MAP's, by about
    # half the number of parameters (k = 27 here), not by thousands
    mean_ll = float(est.idata_["sample_stats"]["log_likelihood_total"].mean())
    best_ll = mapped.params_.score(X)
    assert best_ll - 100 < mean_ll < best_ll
