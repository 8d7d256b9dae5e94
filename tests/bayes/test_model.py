"""The PyMC model's log density equals the numpy DGMM's and a brute-force enumeration."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

pm = pytest.importorskip("pymc")

from bayes_dgmm import DGMMParams, DGMMSpec  # noqa: E402
from bayes_dgmm.bayes.model import (  # noqa: E402
    PRIOR_DEFAULTS,
    build_model,
    params_to_point,
    point_to_params,
    resolve_priors,
    transformed_point,
)

ARCHS = {
    1: ((2,), (2,)),
    2: ((2, 2), (3, 1)),
    3: ((2, 2, 2), (3, 2, 1)),
}


@pytest.fixture(autouse=True, scope="module")
def _fast_compile():
    # Correctness checks need no speed: FAST_COMPILE compiles in seconds without a C cache.
    import pytensor

    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        yield


CASES = [
    (1, None, "standardised"),
    (2, None, "standardised"),
    (3, None, "standardised"),
    (2, "ordered", "standardised"),
    (3, "ordered", "standardised"),
    (3, "lower_triangular", "standardised"),
    (3, None, "noise"),
    (3, "lower_triangular", "noise"),
]
J = 5


class Compiled:
    """One model and one compiled function giving everything the checks need."""

    def __init__(self, depth: int, constraint: str | None, gauge: str = "standardised") -> None:
        comps, facts = ARCHS[depth]
        self.truth = DGMMParams.random(J, comps, facts, random_state=depth)
        self.X, _ = self.truth.sample(12, random_state=depth)
        self.spec = DGMMSpec(n_components=comps, n_factors=facts)
        self.model = build_model(self.X, self.spec, constraint=constraint, gauge=gauge)
        self.constraint = constraint
        m = self.model
        self.names = [v.name for v in m.unobserved_value_vars]
        outputs = [
            m.logp(),
            m.logp(vars=m.free_RVs),
            m.logp(vars=[m["x"]], sum=False)[0],
            *m.unobserved_value_vars,
        ]
        self.fn = m.compile_fn(outputs, point_fn=True)

    def random_points(self, n: int, seed: int) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(seed)
        base = transformed_point(
            self.model, params_to_point(self.truth, self.model, self.constraint)
        )
        return [
            {k: v + rng.normal(0.0, 0.3, size=np.shape(v)) for k, v in base.items()}
            for _ in range(n)
        ]

    def evaluate(self, point: dict[str, np.ndarray]) -> tuple[float, float, np.ndarray, DGMMParams]:
        logp, prior, pointwise, *values = self.fn(point)
        params = point_to_params(dict(zip(self.names, values, strict=True)))
        return float(logp), float(prior), np.asarray(pointwise), params


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"L{c[0]}-{c[1]}-{c[2]}")
def compiled(request):
    return Compiled(*request.param)


def test_logp_is_prior_plus_dgmm_loglik(compiled):
    for point in compiled.random_points(3, seed=1):
        logp, prior, pointwise, params = compiled.evaluate(point)
        expected = params.score_samples(compiled.X)
        np.testing.assert_allclose(pointwise, expected, rtol=1e-8)
        np.testing.assert_allclose(logp, prior + expected.sum(), rtol=1e-8)


def _brute_force_loglik(X: np.ndarray, params: DGMMParams) -> np.ndarray:
    """Explicit labels: every path, explicit covariances, scipy's multivariate normal."""
    terms = []
    for path in itertools.product(*(range(g) for g in params.n_components)):
        mean = np.zeros(params.n_factors[-1])
        cov = np.eye(params.n_factors[-1])
        log_w = 0.0
        for l in reversed(range(params.n_layers)):
            g = path[l]
            lam = params.Lambda[l][g]
            mean = params.eta[l][g] + lam @ mean
            cov = lam @ cov @ lam.T + np.diag(params.psi[l][g])
            log_w += np.log(params.pi[l][g])
        terms.append(log_w + multivariate_normal(mean, cov).logpdf(X))
    return logsumexp(np.stack(terms, axis=1), axis=1)


@pytest.mark.parametrize("seed", [2, 3])
def test_pointwise_loglik_matches_brute_force(compiled, seed):
    for point in compiled.random_points(2, seed=seed):
        _, _, pointwise, params = compiled.evaluate(point)
        np.testing.assert_allclose(pointwise, _brute_force_loglik(compiled.X, params), rtol=1e-8)


def test_point_round_trip_keeps_the_density(compiled):
    # params -> free variables -> model values -> params: the same distribution (ordered
    # relabels components; lower-triangular rotates the top layer's loadings).
    point = transformed_point(
        compiled.model, params_to_point(compiled.truth, compiled.model, compiled.constraint)
    )
    _, _, pointwise, params = compiled.evaluate(point)
    if compiled.constraint == "lower_triangular":
        # below the top layer the start is a projection, not the same distribution
        assert params.n_components == compiled.truth.n_components
        return
    np.testing.assert_allclose(pointwise, compiled.truth.score_samples(compiled.X), rtol=1e-9)


def test_coords_and_dims():
    comps, facts = ARCHS[2]
    X = np.random.default_rng(0).normal(size=(7, J))
    model = build_model(X, DGMMSpec(n_components=comps, n_factors=facts))
    dims = model.named_vars_to_dims
    assert dims["eta_1"] == ("component_1", "feature")
    assert dims["Lambda_1"] == ("component_1", "feature", "factor_1")
    assert dims["Lambda_2"] == ("component_2", "factor_1", "factor_2")
    assert dims["psi_2"] == ("component_2", "factor_1")
    assert dims["pi_2"] == ("component_2",)
    assert dims["x"] == ("obs", "feature")
    assert len(model.coords["path"]) == 4
    assert len(model.coords["obs"]) == 7
    np.testing.assert_array_equal(model["X"].get_value(), X)


def test_single_component_layer_has_constant_weight():
    X = np.random.default_rng(0).normal(size=(7, J))
    model = build_model(X, DGMMSpec(n_components=(2, 1), n_factors=(2, 1)))
    assert "pi_2" not in {rv.name for rv in model.free_RVs}
    assert "pi_2" in model.named_vars


def test_ordered_transform_round_trip():
    import pytensor.tensor as pt

    from bayes_dgmm.bayes.model import OrderedFirstColumn

    x = np.array([[-1.0, 5.0], [0.5, -2.0], [3.0, 0.0]])
    tr = OrderedFirstColumn()
    y = tr.forward(pt.as_tensor(x)).eval()
    np.testing.assert_allclose(tr.backward(pt.as_tensor(y)).eval(), x)
    np.testing.assert_allclose(float(tr.log_jac_det(pt.as_tensor(y)).eval()), np.sum(y[1:, 0]))


def test_lower_triangular_rotation_is_exact_for_one_layer():
    truth = DGMMParams.random(J, (2,), (2,), random_state=0)
    X, _ = truth.sample(10, random_state=0)
    model = build_model(
        X, DGMMSpec(n_components=(2,), n_factors=(2,)), constraint="lower_triangular"
    )
    point = params_to_point(truth, model, "lower_triangular")
    lam = np.zeros_like(truth.Lambda[0])
    rows, cols = np.tril_indices(J, k=-1, m=2)
    lam[:, rows, cols] = point["Lambda_1_lower"]
    lam[:, [0, 1], [0, 1]] = point["Lambda_1_diag"]
    rotated = DGMMParams(pi=truth.pi, eta=truth.eta, Lambda=[lam], psi=truth.psi)
    np.testing.assert_allclose(rotated.score_samples(X), truth.score_samples(X), rtol=1e-10)


def test_unknown_constraint_is_refused():
    X = np.random.default_rng(0).normal(size=(7, J))
    with pytest.raises(ValueError, match=r"constraint='sorted' is not supported; choose one of"):
        build_model(X, DGMMSpec(n_components=(2,), n_factors=(2,)), constraint="sorted")


def test_priors_resolution_and_errors():
    hyper = resolve_priors({"pi_alpha": 2.0}, {"eta_scale": 3})
    assert hyper["pi_alpha"] == 2.0 and hyper["eta_scale"] == 3.0
    assert hyper["psi_log_sd"] == PRIOR_DEFAULTS["psi_log_sd"]
    with pytest.raises(ValueError, match=r"unknown key 'alpha'; valid keys"):
        resolve_priors({"alpha": 1.0})
    with pytest.raises(ValueError, match=r"priors\['eta_scale'\] = -1; it must be a positive"):
        resolve_priors(None, {"eta_scale": -1})


def test_spec_priors_change_the_prior():
    X = np.random.default_rng(0).normal(size=(7, J))
    spec = DGMMSpec(n_components=(2,), n_factors=(2,), priors={"eta_1_scale": 0.5})
    model = build_model(X, spec)
    sigma = model["eta_1"].owner.inputs[-1].eval()
    np.testing.assert_allclose(sigma[0], 0.5 * X.std(axis=0))


def test_model_can_be_fed_new_data():
    X = np.random.default_rng(0).normal(size=(7, J))
    model = build_model(X, DGMMSpec(n_components=(2,), n_factors=(2,)))
    X2 = np.random.default_rng(1).normal(size=(9, J))
    pm.set_data({"X": X2}, model=model, coords={"obs": np.arange(9)})
    assert model["X"].get_value().shape == (9, J)


def test_pointwise_function_matches_numpy():
    from bayes_dgmm.bayes.model import pointwise_loglik_function

    truth = DGMMParams.random(J, (2, 2), (3, 1), random_state=4)
    X, _ = truth.sample(10, random_state=4)
    fn = pointwise_loglik_function((2, 2), (3, 1))
    args = [a for l in range(2) for a in (truth.pi[l], truth.eta[l], truth.Lambda[l], truth.psi[l])]
    np.testing.assert_allclose(fn(X, *args), truth.score_samples(X), rtol=1e-8)
    assert pointwise_loglik_function((2, 2), (3, 1)) is fn  # cached


def _exact_logpdf(x: np.ndarray, mean: np.ndarray, cov: list[list[Fraction]]) -> float:
    """Gaussian log density with the linear algebra in exact rational arithmetic."""
    n = len(mean)
    a = [[cov[i][j] for j in range(n)] + [Fraction(x[i]) - mean[i]] for i in range(n)]
    det = Fraction(1)
    for k in range(n):  # Gaussian elimination (cov is positive definite: no pivoting needed)
        det *= a[k][k]
        for i in range(k + 1, n):
            f = a[i][k] / a[k][k]
            a[i] = [a[i][j] - f * a[k][j] for j in range(n + 1)]
    sol = [Fraction(0)] * n
    for i in reversed(range(n)):
        sol[i] = (a[i][n] - sum(a[i][j] * sol[j] for j in range(i + 1, n))) / a[i][i]
    quad = sum((Fraction(x[i]) - mean[i]) * sol[i] for i in range(n))
    return -0.5 * (n * np.log(2 * np.pi) + np.log(float(det)) + float(quad))


def test_study_scale_noise_is_accurate():
    # Layer-1 noise ~1e-10 of var(x) (the study data reach 1e-8): an explicit covariance is
    # numerically singular in float64, so the reference is computed in exact arithmetic.
    from bayes_dgmm.bayes.model import pointwise_loglik_function

    base = DGMMParams.random(4, (2,), (2,), random_state=5)
    truth = DGMMParams(
        pi=base.pi, eta=[base.eta[0] * 1e3], Lambda=[base.Lambda[0] * 1e4], psi=[base.psi[0] * 1e-2]
    )
    X, _ = truth.sample(6, random_state=5)
    fn = pointwise_loglik_function((2,), (2,))
    got = fn(X, truth.pi[0], truth.eta[0], truth.Lambda[0], truth.psi[0])
    expected = []
    for x in X:
        terms = []
        for g in range(2):
            lam = [[Fraction(v) for v in row] for row in truth.Lambda[0][g]]
            cov = [
                [
                    sum(lam[i][k] * lam[j][k] for k in range(2))
                    + (Fraction(truth.psi[0][g][i]) if i == j else 0)
                    for j in range(4)
                ]
                for i in range(4)
            ]
            mean = [Fraction(v) for v in truth.eta[0][g]]
            terms.append(np.log(truth.pi[0][g]) + _exact_logpdf(x, mean, cov))
        expected.append(logsumexp(terms))
    np.testing.assert_allclose(got, expected, rtol=1e-9)


@pytest.mark.parametrize("gauge", ["standardised", "noise"])
def test_model_gradient_matches_central_differences(gauge):
    # The likelihood's gradient is the JAX density's pullback (RowLogLikVJP), chained by
    # PyTensor through the priors and transforms: the whole must equal central differences
    # of the model's own log density.
    truth = DGMMParams.random(J, (2, 2, 2), (3, 2, 1), random_state=7)
    X, _ = truth.sample(15, random_state=7)
    model = build_model(X, DGMMSpec(n_components=(2, 2, 2), n_factors=(3, 2, 1)), gauge=gauge)
    point = transformed_point(model, params_to_point(truth, model))
    fn = model.logp_dlogp_function(ravel_inputs=True, initial_point=point)
    x0 = np.concatenate([np.ravel(point[v.name]) for v in fn._grad_vars])
    _, grad = fn(x0)
    for i in np.random.default_rng(0).choice(x0.size, size=16, replace=False):
        h = 1e-5 * max(1.0, abs(x0[i]))
        e = np.zeros_like(x0)
        e[i] = h
        fd = (fn(x0 + e)[0] - fn(x0 - e)[0]) / (2 * h)
        np.testing.assert_allclose(grad[i], fd, rtol=1e-5, atol=1e-5)


def test_prior_keys_documented_in_the_study_spec():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "models" / "icbinb-sec3.toml").read_text()
    documented = dict(re.findall(r"^#\s+(\w+) = ([0-9.e-]+)", text, flags=re.M))
    assert {k: float(v) for k, v in documented.items()} == resolve_priors()  # default gauge


def test_raw_redundant_directions_leave_the_likelihood_unchanged():
    # The raw anchoring is what "ordered" uses (without a constraint the latent layers are
    # ZeroSumNormal and have no such direction). A common shift of eta_l_raw (and of
    # log t_l_raw) over the components is the anchoring's redundant direction: the
    # pointwise likelihood must not move, the prior must.
    c = Compiled(3, "ordered")
    base = c.random_points(1, seed=5)[0]
    _, prior0, pointwise0, _ = c.evaluate(base)
    moved = dict(base)
    rng = np.random.default_rng(0)
    for l in (2, 3):
        key = f"eta_{l}_raw_ordered_first_column__"
        shift = rng.normal(size=base[key].shape[1])
        # on the ordered scale a common shift moves the first column's start only
        moved[key] = base[key] + np.where(np.arange(base[key].shape[0])[:, None] == 0, shift, 0)
        moved[key][:, 1:] = base[key][:, 1:] + shift[1:]
        moved[f"log_t_{l}_raw"] = base[f"log_t_{l}_raw"] + rng.normal(
            size=base[f"log_t_{l}_raw"].shape[1]
        )
    _, prior1, pointwise1, params1 = c.evaluate(moved)
    np.testing.assert_allclose(pointwise1, pointwise0, rtol=1e-10)
    assert abs(prior1 - prior0) > 1e-3
    for l in (1, 2):
        np.testing.assert_allclose(params1.eta[l].sum(axis=0), 0.0, atol=1e-10)
        total = np.sum(params1.Lambda[l] ** 2, axis=-1) + params1.psi[l]
        np.testing.assert_allclose(np.log(total).mean(axis=0), 0.0, atol=1e-12)


def test_latent_layers_are_zero_sum_without_redundant_directions():
    # Without a constraint the anchored eta_l, log t_l (l >= 2) are ZeroSumNormal over the
    # components: (G - 1) free values per coordinate instead of G, and their prior is the law
    # of G iid normals minus their mean, i.e. N(0, sigma^2) in orthonormal coordinates of the
    # zero-sum subspace (the reference below, built with numpy and scipy).
    from scipy.stats import norm

    zs, raw = Compiled(3, None), Compiled(3, "ordered")
    n_zs = sum(np.size(v) for v in zs.random_points(1, seed=0)[0].values())
    n_raw = sum(np.size(v) for v in raw.random_points(1, seed=0)[0].values())
    comps, facts = ARCHS[3]
    dims = (J, *facts)
    assert n_raw - n_zs == sum(2 * dims[l - 1] for l in (2, 3))  # one per coordinate, twice
    m = zs.model
    point = zs.random_points(1, seed=1)[0]
    eta2 = zs.evaluate(point)[3].eta[1]  # (G, r_in), as the model computes it
    np.testing.assert_allclose(eta2.sum(axis=0), 0.0, atol=1e-12)
    G = comps[1]
    basis = np.linalg.svd(np.eye(G) - 1.0 / G)[0][:, : G - 1]  # orthonormal, sums to zero
    sigma = resolve_priors()["eta_scale"]
    expected = norm.logpdf(eta2.T @ basis, scale=sigma).sum()
    value = m.rvs_to_values[m["eta_2_zs"]]
    prior = m.compile_fn(m.logp(vars=[m["eta_2_zs"]], jacobian=True), inputs=[value])(
        {value.name: point[value.name]}
    )
    assert float(prior) == pytest.approx(expected, rel=1e-6)  # a wrong constant is O(1)


def test_every_path_density_at_tiny_noise_matches_scipy():
    # Layer-1 noise 1e-8 of var(x): every path's log density against scipy on the explicit
    # covariance (the textbook difference form of the quadratic would lose all digits here)
    import jax

    from bayes_dgmm.model.jax_density import log_prob_paths
    from bayes_dgmm.model.paths import path_table

    comps, facts, n_feat = (3, 2), (3, 1), 6
    base = DGMMParams.random(n_feat, comps, facts, random_state=11)
    X0, _ = base.sample(40, random_state=11)
    psi1 = base.psi[0] / base.psi[0].mean() * 1e-8 * X0.var(axis=0).mean()
    truth = DGMMParams(pi=base.pi, eta=base.eta, Lambda=base.Lambda, psi=[psi1, base.psi[1]])
    X, _ = truth.sample(40, random_state=12)
    with jax.enable_x64(True):
        got = np.asarray(log_prob_paths(X, truth.pi, truth.eta, truth.Lambda, truth.psi))
    expected = np.empty_like(got)
    for p, (g1, g2) in enumerate(path_table(comps)):
        lam2, lam1 = truth.Lambda[1][g2], truth.Lambda[0][g1]
        S = lam2 @ lam2.T + np.diag(truth.psi[1][g2])
        cov = lam1 @ S @ lam1.T + np.diag(truth.psi[0][g1])
        log_w = np.log(truth.pi[0][g1]) + np.log(truth.pi[1][g2])
        mean = truth.eta[0][g1] + lam1 @ truth.eta[1][g2]
        expected[:, p] = log_w + multivariate_normal(mean, cov).logpdf(X)
    # these covariances have condition numbers near 1e8, so either side's rounding error is
    # ~1e8 eps relative: 2.2e-8 was measured between OpenBLAS kernels (Haswell), hence 1e-7
    # relative, and 1e-7 nats near zero
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-7)


def test_graph_likelihood_equals_the_jax_likelihood():
    # The PyTensor-graph form (for Numba on tiny models) and the JAX Op give one model:
    # the same pointwise log density and the same gradient of the whole log density.
    truth = DGMMParams.random(J, (2, 2, 2), (3, 2, 1), random_state=9)
    X, _ = truth.sample(20, random_state=9)
    spec = DGMMSpec(n_components=(2, 2, 2), n_factors=(3, 2, 1))
    out = {}
    for likelihood in ("jax", "graph"):
        model = build_model(X, spec, likelihood=likelihood)
        point = transformed_point(model, params_to_point(truth, model))
        rows = model.compile_fn(model.logp(vars=[model["x"]], sum=False)[0], point_fn=True)
        fn = model.logp_dlogp_function(ravel_inputs=True, initial_point=point)
        x0 = np.concatenate([np.ravel(point[v.name]) for v in fn._grad_vars])
        out[likelihood] = (np.asarray(rows(point)), *fn(x0))
    np.testing.assert_allclose(out["graph"][0], truth.score_samples(X), rtol=1e-10)
    np.testing.assert_allclose(out["jax"][0], out["graph"][0], rtol=1e-10)
    np.testing.assert_allclose(out["jax"][2], out["graph"][2], rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match=r"likelihood='numpy' is not supported"):
        build_model(X, spec, likelihood="numpy")
