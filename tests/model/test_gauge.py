"""The gauges of the latent layers: exact maps, their constraints, and the model's start."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_dgmm import DGMMParams
from bayes_dgmm.model.gauge import (
    check_gauge,
    from_latent_coordinates,
    in_gauge,
    latent_coordinates,
    standardised,
)


def _collapsed(seed: int) -> DGMMParams:
    """Random 3-layer parameters whose latent noise is nearly collapsed on some rows (as the
    study's maximum-likelihood fit's: uniquenesses down to 5e-8) and whose scales are far
    from any gauge."""
    p = DGMMParams.random(6, (2, 3, 2), (4, 2, 1), random_state=seed)
    rng = np.random.default_rng(seed)
    psi = [p.psi[0], p.psi[1] * 10 ** rng.uniform(-7, 2, p.psi[1].shape), p.psi[2] * 40.0]
    eta = [p.eta[0], p.eta[1] + 25.0, p.eta[2] * 7.0]
    return DGMMParams(
        pi=p.pi, eta=eta, Lambda=[p.Lambda[0], p.Lambda[1] * 9.0, p.Lambda[2]], psi=psi
    )


@pytest.mark.parametrize("gauge", ["standardised", "noise"])
def test_the_map_into_a_gauge_keeps_the_density(gauge):
    p = _collapsed(0)
    X, _ = p.sample(300, random_state=1)
    moved = in_gauge(p, gauge)
    np.testing.assert_allclose(moved.score_samples(X), p.score_samples(X), rtol=1e-9, atol=0)
    # and every layer's mixture of scores is the same up to the gauge's affine map: the
    # partition of the paths does not move
    np.testing.assert_array_equal(moved.predict(X), p.predict(X))


def test_standardised_gauge_holds_its_constraints_and_is_idempotent():
    s = standardised(_collapsed(2))
    for l in (1, 2):
        np.testing.assert_allclose(s.eta[l].sum(axis=0), 0.0, atol=1e-10)
        total = np.sum(s.Lambda[l] ** 2, axis=-1) + s.psi[l]
        np.testing.assert_allclose(np.log(total).mean(axis=0), 0.0, atol=1e-12)
        # bounded loadings: a row's loadings are at most its total variance
        assert np.all(np.abs(s.Lambda[l]) <= np.sqrt(total)[..., None] * (1 + 1e-12))
    again = standardised(s)
    for a, b in zip(again.Lambda + again.psi + again.eta, s.Lambda + s.psi + s.eta, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_latent_coordinates_round_trip_at_collapsed_noise():
    s = standardised(_collapsed(3))
    c, log_t = latent_coordinates(s.Lambda[1], s.psi[1])
    assert np.max(np.linalg.norm(c, axis=-1)) > 100  # the collapse is present
    lam, psi = from_latent_coordinates(c, log_t)
    np.testing.assert_allclose(lam, s.Lambda[1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(psi, s.psi[1], rtol=1e-9)


def test_unknown_gauge_is_refused():
    with pytest.raises(ValueError, match=r"gauge='scaled' is not supported; choose one of"):
        check_gauge("scaled")


@pytest.mark.parametrize("constraint", [None, "ordered", "lower_triangular"])
def test_model_starts_at_the_em_fit_exactly(constraint):
    # params -> the model's free variables -> its deterministic DGMM parameters: the same
    # density; lower_triangular is exact at the top layer only (below it the lower triangle
    # is kept), so there the top layer's loadings and noise are compared with the LQ form
    pytest.importorskip("pymc")
    from bayes_dgmm import DGMMSpec
    from bayes_dgmm.bayes.model import build_model, params_to_point, point_to_params

    p = _collapsed(4)
    if constraint == "lower_triangular":
        p = DGMMParams(pi=p.pi[:2], eta=p.eta[:2], Lambda=p.Lambda[:2], psi=p.psi[:2])
    X, _ = p.sample(50, random_state=5)
    model = build_model(X, DGMMSpec(p.n_components, p.n_factors), constraint=constraint)
    point = params_to_point(p, model, constraint)
    names = [v.name for v in model.unobserved_value_vars]
    values = model.compile_fn(model.unobserved_value_vars, inputs=model.value_vars, point_fn=False)
    from bayes_dgmm.bayes.model import transformed_point

    tp = transformed_point(model, point)
    out = values(**{v.name: tp[v.name] for v in model.value_vars})
    q = point_to_params(dict(zip(names, out, strict=True)))
    if constraint != "lower_triangular":
        np.testing.assert_allclose(q.score_samples(X), p.score_samples(X), rtol=1e-9)
        return
    from bayes_dgmm.em.exact import rotate_loadings

    s = standardised(p)
    lq = rotate_loadings(s.Lambda[1], np.ones(s.Lambda[1].shape[:2]), "lower_triangular")
    np.testing.assert_allclose(q.Lambda[1], lq, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(q.psi[1], s.psi[1], rtol=1e-9)
