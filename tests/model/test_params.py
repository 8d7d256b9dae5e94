import itertools

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayes_dgmm import DGMMParams, path_index, path_table, simulate

ARCHS = [
    (6, (3,), (2,)),
    (7, (2, 3), (4, 2)),
    (8, (2, 2, 3), (5, 3, 1)),
]


def _explicit_path_moments(params):
    """Means and covariances of every path by the direct recursion of eqs. (5)-(6)."""
    out = []
    for path in itertools.product(*[range(g) for g in params.n_components]):
        m, S = np.zeros(params.n_factors[-1]), np.eye(params.n_factors[-1])
        for l in reversed(range(params.n_layers)):
            lam = params.Lambda[l][path[l]]
            m = params.eta[l][path[l]] + lam @ m
            S = lam @ S @ lam.T + np.diag(params.psi[l][path[l]])
        out.append((path, m, S))
    return out


def test_path_table_order():
    table = path_table((3, 3, 2))
    assert table.shape == (18, 3)
    # layer 1 fastest: R's expand.grid(1:3, 1:3, 1:2)
    assert table[:4].tolist() == [[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0]]
    assert table[9].tolist() == [0, 0, 1]
    np.testing.assert_array_equal(path_index(table, (3, 3, 2)), np.arange(18))


@pytest.mark.parametrize(("J", "G", "R"), ARCHS)
def test_score_samples_matches_scipy(J, G, R, rng):
    params = DGMMParams.random(J, G, R, rng)
    X = rng.normal(scale=3.0, size=(40, J))
    moments = _explicit_path_moments(params)
    w = params.path_weights()
    ref_paths = np.column_stack(
        [
            np.log(w[path_index(np.array([path]), G)[0]]) + multivariate_normal(m, S).logpdf(X)
            for path, m, S in moments
        ]
    )
    # the explicit loop enumerates paths in itertools order; put them in path_table order
    order = path_index(np.array([p for p, _, _ in moments]), G)
    ref = np.empty_like(ref_paths)
    ref[:, order] = ref_paths
    np.testing.assert_allclose(params.log_prob_paths(X), ref, rtol=1e-10)
    np.testing.assert_allclose(params.score_samples(X), logsumexp(ref, axis=1), rtol=1e-10)
    np.testing.assert_allclose(
        params.global_gmm().score_samples(X), logsumexp(ref, axis=1), rtol=1e-10
    )


@pytest.mark.parametrize(("J", "G", "R"), ARCHS)
def test_global_gmm_matches_recursion(J, G, R, rng):
    params = DGMMParams.random(J, G, R, rng)
    gmm = params.global_gmm()
    for path, m, S in _explicit_path_moments(params):
        p = path_index(np.array([path]), G)[0]
        np.testing.assert_allclose(gmm.means[p], m, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gmm.covariances[p], S, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            gmm.weights[p], np.prod([params.pi[l][g] for l, g in enumerate(path)])
        )
        np.testing.assert_array_equal(gmm.paths[p], path)
    assert np.isclose(gmm.weights.sum(), 1.0)
    assert np.all(np.linalg.eigvalsh(gmm.covariances) > 0)


def test_global_gmm_against_monte_carlo():
    rng = np.random.default_rng(7)
    params = DGMMParams.random(5, (2, 2, 2), (3, 2, 1), rng)
    sim = simulate(params, 200_000, random_state=rng)
    gmm = params.global_gmm()
    for p in range(params.n_paths):
        rows = sim.X[sim.paths == p]
        n = rows.shape[0]
        assert abs(n / sim.X.shape[0] - gmm.weights[p]) < 4 * np.sqrt(
            gmm.weights[p] / sim.X.shape[0]
        )
        se = np.sqrt(np.diag(gmm.covariances[p]) / n)
        assert np.all(np.abs(rows.mean(0) - gmm.means[p]) < 5 * se)
        emp = np.cov(rows.T)
        scale = np.sqrt(np.outer(np.diag(gmm.covariances[p]), np.diag(gmm.covariances[p])))
        assert np.max(np.abs(emp - gmm.covariances[p]) / scale) < 8 / np.sqrt(n)


@pytest.mark.parametrize("layer", [1, 2, 3])
def test_layer_marginals_against_simulated_scores(layer):
    rng = np.random.default_rng(3)
    params = DGMMParams.random(6, (2, 3, 2), (4, 3, 2), rng)
    sim = simulate(params, 100_000, random_state=rng)
    marg = params.layer_gmm(layer)
    z = sim.scores[layer - 1]
    sub = (
        path_index(sim.labels[:, layer:], params.n_components[layer:])
        if layer < 3
        else np.zeros(len(z), int)
    )
    assert marg.means.shape == (len(marg.weights), params.n_factors[layer - 1])
    for s in range(len(marg.weights)):
        rows = z[sub == s]
        n = rows.shape[0]
        se = np.sqrt(np.diag(marg.covariances[s]) / n)
        assert np.all(np.abs(rows.mean(0) - marg.means[s]) < 5 * se)
        scale = np.sqrt(np.outer(np.diag(marg.covariances[s]), np.diag(marg.covariances[s])))
        assert np.max(np.abs(np.cov(rows.T) - marg.covariances[s]) / scale) < 8 / np.sqrt(n)
        assert abs(n / len(z) - marg.weights[s]) < 0.01
    # the marginal of the scores is what the layer above maps down
    if layer == 3:
        np.testing.assert_array_equal(marg.means, np.zeros((1, 2)))


def test_predict_proba_sums_to_one_and_aggregates(rng):
    params = DGMMParams.random(7, (2, 3), (4, 2), rng)
    X, _ = params.sample(300, random_state=1)
    proba = params.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    for layer in (1, 2):
        pl = params.predict_proba(X, layer=layer)
        assert pl.shape == (300, params.n_components[layer - 1])
        np.testing.assert_allclose(pl.sum(1), 1.0)
        ref = np.stack(
            [
                proba[:, params.paths[:, layer - 1] == k].sum(1)
                for k in range(params.n_components[layer - 1])
            ],
            axis=1,
        )
        np.testing.assert_allclose(pl, ref)
    with pytest.raises(ValueError, match="layer=3 is out of range"):
        params.predict(X, layer=3)


def test_json_round_trip_exact(tmp_path, rng):
    params = DGMMParams.random(6, (3, 2), (3, 1), rng)
    again = DGMMParams.from_json(params.to_json())
    assert again == params
    params.to_json(tmp_path / "p.json")
    assert DGMMParams.from_json(tmp_path / "p.json") == params
    with pytest.raises(ValueError, match="not valid JSON"):
        DGMMParams.from_json('{"format": ')


def test_sample_reproducible(rng):
    params = DGMMParams.random(6, (3, 2), (3, 1), rng)
    a, pa = params.sample(50, random_state=4)
    b, pb = params.sample(50, random_state=4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pa, pb)


def test_shape_errors(rng):
    good = DGMMParams.random(6, (3, 2), (3, 1), rng)
    kw = {k: list(getattr(good, k)) for k in ("pi", "eta", "Lambda", "psi")}
    bad = dict(kw, eta=[kw["eta"][0][:, :5], kw["eta"][1]])
    with pytest.raises(
        ValueError, match=r"eta\[0\] \(layer 1\) has shape \(3, 5\); expected \(3, 6\)"
    ):
        DGMMParams(**bad)
    bad = dict(kw, psi=[-kw["psi"][0], kw["psi"][1]])
    with pytest.raises(ValueError, match="non-positive variance"):
        DGMMParams(**bad)
    bad = dict(kw, pi=[np.array([0.5, 0.6, 0.1]), kw["pi"][1]])
    with pytest.raises(ValueError, match="not a probability vector"):
        DGMMParams(**bad)
    bad = dict(kw, psi=kw["psi"][:1])
    with pytest.raises(ValueError, match="one entry per layer"):
        DGMMParams(**bad)
    with pytest.raises(ValueError, match="has 5 features but 6 were expected"):
        good.score_samples(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        good.score_samples(np.full((3, 6), np.nan))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_anchored_keeps_the_distribution_and_pins_location_and_scale(depth):
    comps, facts = [((3,), (2,)), ((2, 3), (3, 2)), ((2, 2, 2), (4, 2, 1))][depth - 1]
    params = DGMMParams.random(6, comps, facts, random_state=depth)
    X, _ = params.sample(200, random_state=0)
    anchored = params.anchored()
    np.testing.assert_allclose(anchored.score_samples(X), params.score_samples(X), rtol=1e-10)
    for l in range(1, depth):
        np.testing.assert_allclose(anchored.eta[l].sum(axis=0), 0.0, atol=1e-10)
        np.testing.assert_allclose(np.log(anchored.psi[l]).mean(axis=0), 0.0, atol=1e-12)
    # the global GMM is the same object, path by path
    g0, g1 = params.global_gmm(), anchored.global_gmm()
    np.testing.assert_allclose(g1.means, g0.means, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g1.covariances, g0.covariances, rtol=1e-10, atol=1e-10)
    # anchoring is idempotent
    again = anchored.anchored()
    for a, b in zip(
        again.eta + again.Lambda + again.psi,
        anchored.eta + anchored.Lambda + anchored.psi,
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_arrays_are_read_only_and_attributes_fixed(rng):
    params = DGMMParams.random(5, (2, 2), (3, 1), rng)
    X = rng.normal(size=(20, 5))
    before = params.score(X)  # fills the cache of the marginals
    with pytest.raises(ValueError, match="read-only"):
        params.psi[0][:] = -1
    with pytest.raises(ValueError, match="read-only"):
        params.eta[1][0, 0] = 1e3
    with pytest.raises(AttributeError, match=r"immutable: cannot set 'eta'.*replace\(eta="):
        params.eta = [e + 1 for e in params.eta]
    with pytest.raises(TypeError, match="does not support item assignment"):
        params.eta[1] = params.eta[1] + 1
    assert params.score(X) == before


def test_replace_checks_and_gives_fresh_marginals(rng):
    params = DGMMParams.random(5, (2, 2), (3, 1), rng)
    X = rng.normal(size=(20, 5))
    before = params.score(X)
    moved = params.replace(eta=[params.eta[0], params.eta[1] + 2.0])
    assert moved.score(X) != before
    assert params.score(X) == before
    with pytest.raises(ValueError, match=r"psi\[0\] \(layer 1\) has a non-positive variance"):
        params.replace(psi=[-params.psi[0], params.psi[1]])
    with pytest.raises(TypeError, match="replace\\(\\) got 'sigma'"):
        params.replace(sigma=[1.0])


def test_copy_and_pickle_stay_read_only_and_equal(rng):
    import copy
    import pickle

    params = DGMMParams.random(5, (2, 2), (3, 1), rng)
    for other in (params.copy(), pickle.loads(pickle.dumps(params)), copy.deepcopy(params)):
        assert other == params
        assert not any(a.flags.writeable for a in other.pi + other.eta + other.Lambda + other.psi)
    # the constructor copies: later edits of the caller's arrays do not reach the parameters
    eta = [e.copy() for e in params.eta]
    again = DGMMParams(pi=params.pi, eta=eta, Lambda=params.Lambda, psi=params.psi)
    eta[0][:] = 0.0
    assert again == params


def test_complex_and_non_numeric_parameters_refused(rng):
    params = DGMMParams.random(5, (2, 2), (3, 1), rng)
    with pytest.raises(ValueError, match=r"eta\[0\] \(layer 1\) is complex"):
        params.replace(eta=[params.eta[0] + 1j, params.eta[1]])
    with pytest.raises(TypeError, match=r"psi\[1\] \(layer 2\) could not be read as a float"):
        params.replace(psi=[params.psi[0], [["a", "b", "c"], [1, 2, 3]]])
    with pytest.raises(TypeError, match="pi='ab' is not a list of arrays"):
        params.replace(pi="ab")


def test_json_contradicting_sizes_and_non_objects_refused(tmp_path, rng):
    params = DGMMParams.random(5, (2, 2), (3, 1), rng)
    for key, value in (("n_features", 7), ("n_components", [3, 2]), ("n_factors", [3, 2])):
        data = dict(params.to_dict(), **{key: value})
        with pytest.raises(ValueError, match=f"{key}=.* contradicts the arrays"):
            DGMMParams.from_dict(data)
    for text, kind in (("null", "null"), ("[1, 2]", "array"), ("3", "number")):
        with pytest.raises(ValueError, match=f"the parameters are a JSON {kind}"):
            DGMMParams.from_json(text)
    with pytest.raises(FileNotFoundError, match=r"text_or_path='nope\.json': no such file"):
        DGMMParams.from_json("nope.json")
    data = params.to_dict()
    del data["psi"]
    with pytest.raises(ValueError, match="the parameters lack 'psi'"):
        DGMMParams.from_dict(data)
