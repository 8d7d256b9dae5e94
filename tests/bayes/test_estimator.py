"""BayesianDeepGaussianMixture: fit plumbing with a faked sampler; real fits marked slow."""

from __future__ import annotations

import time

import numpy as np
import pytest
import xarray as xr
from sklearn.exceptions import ConvergenceWarning

pm = pytest.importorskip("pymc")
from pymc.testing import mock_sample  # noqa: E402

from bayes_dgmm import DGMMParams, DGMMSpec  # noqa: E402
from bayes_dgmm.bayes.estimator import BayesianDeepGaussianMixture  # noqa: E402
from bayes_dgmm.bayes.model import params_to_point  # noqa: E402

COMPS, FACTS, J = (2, 2), (2, 1), 5


@pytest.fixture(autouse=True, scope="module")
def _fast_compile():
    # Plumbing checks need no speed: FAST_COMPILE compiles in seconds without a C cache.
    import pytensor

    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        yield


def _mock_sample_with_stats(**kwargs):
    calls.append(kwargs)
    stats = {"diverging": lambda size: np.zeros(size, dtype=bool)}
    return mock_sample(sample_stats=stats, **kwargs)


calls: list[dict] = []


@pytest.fixture
def mock_pm_sample(monkeypatch):
    calls.clear()
    monkeypatch.setattr(pm, "sample", _mock_sample_with_stats)
    yield calls


@pytest.fixture(scope="module")
def data():
    truth = DGMMParams.random(J, COMPS, FACTS, random_state=0)
    X, paths = truth.sample(30, random_state=1)
    return truth, X, paths


@pytest.fixture(scope="module")
def fitted(data):
    _, X, _ = data
    est = BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=0, progressbar=False)
    original = pm.sample
    pm.sample = _mock_sample_with_stats
    try:
        est.fit(X, method="nuts", draws=25, chains=2)
    finally:
        pm.sample = original
    return est


def test_fit_groups_and_dims(fitted, data):
    _, X, _ = data
    idata = fitted.idata_
    assert isinstance(idata, xr.DataTree)
    for group in ("posterior", "sample_stats", "log_likelihood", "labels"):
        assert group in idata.children, group
    ll = idata["log_likelihood"]["x"]
    assert ll.dims == ("chain", "draw", "obs")
    assert ll.shape == (2, 25, X.shape[0])
    assert "diverging" in idata["sample_stats"]
    assert "log_likelihood_total" in idata["sample_stats"]
    post = idata["posterior"]
    assert post["Lambda_1"].dims == ("chain", "draw", "component_1", "feature", "factor_1")
    assert isinstance(fitted.params_, DGMMParams)


def test_point_estimate_is_the_draw_of_highest_likelihood(fitted, data):
    # numpy's score_samples of every draw, not the model's compiled likelihood
    _, X, _ = data
    post = fitted.idata_["posterior"].to_dataset()
    best, best_ll = None, -np.inf
    for c in range(post.sizes["chain"]):
        for d in range(post.sizes["draw"]):
            p = DGMMParams.from_named(post.isel(chain=c, draw=d), renormalise=True)
            ll = p.score_samples(X).sum()
            if ll > best_ll:
                best, best_ll = p, ll
    assert fitted.params_.score_samples(X).sum() == pytest.approx(best_ll, rel=1e-9)
    assert fitted.params_ == best


def test_log_likelihood_is_the_dgmm_density(fitted, data):
    from bayes_dgmm.bayes.model import point_to_params

    _, X, _ = data
    draw = fitted.idata_["posterior"].to_dataset().isel(chain=1, draw=3)
    params = point_to_params(draw)
    np.testing.assert_allclose(
        fitted.idata_["log_likelihood"]["x"].isel(chain=1, draw=3).values,
        params.score_samples(X),
        rtol=1e-8,
    )


def test_label_probabilities(fitted, data):
    _, X, _ = data
    labels = fitted.idata_["labels"]
    path = labels["path_proba"]
    assert path.dims == ("obs", "path")
    np.testing.assert_allclose(path.sum("path").values, 1.0, rtol=1e-12)
    for l in (1, 2):
        comp = labels[f"component_proba_{l}"]
        assert comp.dims == ("obs", f"component_{l}")
        np.testing.assert_allclose(comp.sum(f"component_{l}").values, 1.0, rtol=1e-12)
    np.testing.assert_allclose(fitted.predict_proba(X), path.values)
    np.testing.assert_array_equal(fitted.predict(X, layer=2), comp.values.argmax(axis=1))
    assert np.isfinite(fitted.score(X))


def test_arviz_loo_runs(fitted):
    from arviz_stats import loo

    result = loo(fitted.idata_, pointwise=True)
    assert np.isfinite(result.elpd)


def test_save_load_round_trip(fitted, data, tmp_path):
    _, X, _ = data
    path = fitted.save(tmp_path / "fit.nc")
    loaded = BayesianDeepGaussianMixture.load(path)
    assert loaded.idata_.identical(fitted.idata_)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    assert loaded.params_ == fitted.params_
    assert loaded.spec_ == fitted.spec_
    assert loaded.method_ == "nuts"
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


def test_load_refuses_other_version(fitted, tmp_path, monkeypatch):
    import bayes_dgmm.bayes.io as bayes_io

    path = fitted.save(tmp_path / "fit.nc")
    monkeypatch.setattr(bayes_io, "_version", lambda: "99.0.0")
    with pytest.raises(ValueError, match=r"saved by bayes-dgmm .*, this is version 99\.0\.0"):
        BayesianDeepGaussianMixture.load(path)


def test_load_refuses_truncated_missing_and_tampered_files(fitted, tmp_path):
    path = fitted.save(tmp_path / "fit.nc")
    raw = path.read_bytes()
    cut = tmp_path / "cut.nc"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cut.nc cannot be read as a netCDF fit .*truncated"):
        BayesianDeepGaussianMixture.load(cut)
    with pytest.raises(FileNotFoundError, match=r"nothere.nc: no such file"):
        BayesianDeepGaussianMixture.load(tmp_path / "nothere.nc")
    # change one posterior value but keep every attribute: the checksum catches it
    with xr.open_datatree(path, engine="h5netcdf") as opened:
        tree = opened.load()
    post = tree["posterior"].to_dataset()
    post["psi_1"] = post["psi_1"] * 1.0001
    tree["posterior"] = post
    tampered = tmp_path / "tampered.nc"
    tree.to_netcdf(tampered, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"do not match the checksum.*modified after it was"):
        BayesianDeepGaussianMixture.load(tampered)


def test_load_refuses_damaged_attributes_cleanly(fitted, tmp_path, capfd):
    from bayes_dgmm.experiments.cli import main

    path = fitted.save(tmp_path / "fit.nc")
    raw = bytearray(path.read_bytes())
    raw[raw.find(b"bayes_dgmm_format")] ^= 0xFF  # one flipped byte in the attribute block
    flipped = tmp_path / "flipped.nc"
    flipped.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"flipped.nc cannot be read as a netCDF fit .*damaged"):
        BayesianDeepGaussianMixture.load(flipped)
    capfd.readouterr()
    assert main(["diagnose", str(flipped), "--out", str(tmp_path / "d"), "--quiet"]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "cannot be read as a netCDF fit" in err
    assert "Exception ignored" not in err and "Traceback" not in err
    with xr.open_datatree(path, engine="h5netcdf") as opened:
        tree = opened.load()
    del tree.attrs["random_seed"]
    deleted = tmp_path / "deleted.nc"
    tree.to_netcdf(deleted, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"deleted.nc lacks the attribute 'random_seed'"):
        BayesianDeepGaussianMixture.load(deleted)
    tree.attrs["random_seed"] = "{0"
    garbled = tmp_path / "garbled.nc"
    tree.to_netcdf(garbled, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"garbled.nc: the attributes written by save cannot"):
        BayesianDeepGaussianMixture.load(garbled)


def test_load_refuses_other_spec(fitted, tmp_path):
    path = fitted.save(tmp_path / "fit.nc")
    other = DGMMSpec(n_components=(3, 2), n_factors=FACTS, name="other")
    with pytest.raises(ValueError, match=r"fitted with spec 'custom'.*not the spec 'other'"):
        BayesianDeepGaussianMixture.load(path, spec=other)
    loaded = BayesianDeepGaussianMixture.load(path, spec=fitted.spec_)
    assert loaded.spec_ == fitted.spec_


def test_load_refuses_foreign_file(tmp_path):
    path = tmp_path / "other.nc"
    xr.DataTree(xr.Dataset({"a": ("x", [1.0])})).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"not a fit saved by BayesianDeepGaussianMixture"):
        BayesianDeepGaussianMixture.load(path)


def test_unknown_method(data):
    _, X, _ = data
    est = BayesianDeepGaussianMixture(COMPS, FACTS)
    with pytest.raises(ValueError, match=r"method='gibbs' is not supported; choose one of"):
        est.fit(X, method="gibbs")


def test_unknown_constraint(data):
    _, X, _ = data
    est = BayesianDeepGaussianMixture(COMPS, FACTS, constraint="rotated")
    with pytest.raises(
        ValueError,
        match=r"constraint='rotated' is not None or one of \('lower_triangular', 'ordered'\)",
    ):
        est.fit(X, method="nuts")


@pytest.mark.parametrize(
    ("method", "kwargs", "error", "match"),
    [
        (
            "advi",
            {"n": 0},
            ValueError,
            r"n \(for method='advi'\)=0 is out of range; give an int >= 1",
        ),
        ("advi", {"n": -1}, ValueError, r"n \(for method='advi'\)=-1 is out of range"),
        ("advi", {"draws": 2.5}, TypeError, r"draws \(for method='advi'\)=2.5 is not an integer"),
        ("nuts", {"tune": -5}, ValueError, r"tune \(for method='nuts'\)=-5 .* int >= 0"),
        ("nuts", {"chains": 0}, ValueError, r"chains \(for method='nuts'\)=0"),
        ("nutpie", {"draws": True}, TypeError, r"draws \(for method='nutpie'\)=True"),
        ("smc", {"cores": 0}, ValueError, r"cores \(for method='smc'\)=0"),
    ],
)
def test_method_counts_are_checked_before_any_work(data, method, kwargs, error, match):
    est = BayesianDeepGaussianMixture(COMPS, FACTS, progressbar=False)
    with pytest.raises(error, match=match):
        est.fit(data[1], method=method, **kwargs)
    assert not hasattr(est, "model_")  # refused before the model was built


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"random_seed": "a"}, TypeError, r"random_seed='a' is not None or an int in the range"),
        ({"random_seed": -1}, ValueError, r"random_seed=-1 is not None or an int in the range"),
        ({"random_seed": 2**32}, ValueError, r"random_seed=4294967296 is not None or an int in"),
        ({"progressbar": "x"}, TypeError, r"progressbar='x' is not an instance of 'bool'"),
    ],
)
def test_estimator_settings_are_checked_before_any_work(data, kwargs, error, match):
    est = BayesianDeepGaussianMixture(COMPS, FACTS, **{"progressbar": False, **kwargs})
    with pytest.raises(error, match=match):
        est.fit(data[1], method="advi", n=1)
    assert not hasattr(est, "model_")


def test_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match=r"not fitted yet"):
        BayesianDeepGaussianMixture(COMPS, FACTS).predict(np.zeros((2, J)))


def test_bad_init(data, mock_pm_sample):
    _, X, _ = data
    est = BayesianDeepGaussianMixture(COMPS, FACTS, progressbar=False)
    with pytest.raises(ValueError, match=r"init='kmeans' is not supported"):
        est.fit(X, init="kmeans")
    with pytest.raises(TypeError, match=r"is not a start"):
        est.fit(X, init=3.0)
    wrong = DGMMParams.random(J, (3, 2), FACTS, random_state=0)
    with pytest.raises(ValueError, match=r"init has n_components=\(3, 2\)"):
        est.fit(X, init=wrong)


def test_init_params_become_initvals_and_model_is_reused(data, mock_pm_sample):
    truth, X, _ = data
    est = BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=1, progressbar=False)
    est.fit(X, method="nuts", init=truth, draws=3, chains=1)
    expected = params_to_point(truth, est.model_)
    got = mock_pm_sample[-1]["initvals"]
    assert set(got) == set(expected)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])
    model = est.model_
    est.fit(X[:20], method="nuts", init=est, draws=3, chains=1)  # estimator as init
    assert est.model_ is model  # built once, data swapped
    assert est.idata_["log_likelihood"]["x"].sizes["obs"] == 20


def test_nutpie_samples_the_model_density(data, monkeypatch):
    # nutpie is driven by the model's JAX log density (bayes_dgmm.bayes.backends.nutpie); a
    # fake nutpie.sample evaluates what nutpie would see at the start and checks it against
    # PyMC's own compiled log density and gradient (the start is jittered by 0.01 per chain).
    import nutpie

    from bayes_dgmm.bayes.backends.flat import flatten_point
    from bayes_dgmm.bayes.model import transformed_point

    truth, X, _ = data
    est = BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=1, progressbar=False)
    seen: dict = {}

    def fake_sample(compiled, *, draws, tune, chains, **kw):
        x0 = compiled._make_initial_points(0)
        shared = compiled._shared_data  # what nutpie hands the functions: the data
        value, grad = compiled._make_logp_func()(x0, **shared)
        expanded = compiled._make_expand_func(0, 0, 0)(x0, **shared)
        seen.update(value=value, grad=grad, expanded=expanded, kw=kw, n=len(x0))
        idata = mock_sample(draws=draws, chains=chains, model=est.model_, random_seed=0)
        stats = xr.Dataset(
            {"depth": (("chain", "draw"), np.full((chains, draws), 3))},
            coords={"chain": np.arange(chains), "draw": np.arange(draws)},
        )
        idata["sample_stats"] = stats
        return idata

    import bayes_dgmm.bayes.backends.nutpie as backend

    monkeypatch.setattr(nutpie, "sample", fake_sample)
    monkeypatch.setattr(backend, "START_JITTER", 0.0)  # the start itself, to compare exactly
    est.fit(X, method="nutpie", init=truth, draws=3, chains=2, nuts={"max_treedepth": 5})
    model = est.model_
    point = transformed_point(model, params_to_point(truth, model))
    assert seen["value"] == pytest.approx(float(model.compile_logp()(point)), rel=1e-10)
    expected_grad = np.ravel(model.compile_dlogp()(point))
    np.testing.assert_allclose(seen["grad"], expected_grad, rtol=1e-8, atol=1e-10)
    from bayes_dgmm.model.gauge import standardised

    gauged = standardised(truth)  # the model's default gauge
    np.testing.assert_allclose(seen["expanded"]["eta_2"], gauged.eta[1], rtol=1e-10)
    np.testing.assert_allclose(seen["expanded"]["Lambda_1"], gauged.Lambda[0], rtol=1e-10)
    assert seen["kw"]["maxdepth"] == 5
    assert "tree_depth" in est.idata_["sample_stats"]
    compiled = est._nutpie_compiled
    est.fit(X[:20], method="nutpie", init=truth, draws=3, chains=1)
    assert est._nutpie_compiled is compiled  # compiled once, reused with new data
    with pytest.raises(ValueError, match=r"understands max_treedepth and target_accept"):
        est.fit(X, method="nutpie", draws=3, chains=1, nuts={"step_scale": 0.1})
    # with the jitter, each chain (seed) starts at its own point near the start
    monkeypatch.undo()
    starts = backend.initial_point_function(model, params_to_point(truth, model))
    x_start = flatten_point(model, point)
    a, b = starts(1), starts(2)
    assert 0 < np.abs(a - b).max() < 0.1 and np.abs(a - x_start).max() < 0.1


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_init_em(data, mock_pm_sample):
    _, X, _ = data
    est = BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=0, progressbar=False)
    est.fit(X, method="nuts", init="em", draws=3, chains=1)
    assert set(mock_pm_sample[-1]["initvals"]) == {rv.name for rv in est.model_.free_RVs}


def test_map_and_advi_plumbing(data, monkeypatch):
    _, X, _ = data

    def fake_run_map(model, start, *, maxiter, mode):
        seen.update(map_maxiter=maxiter)
        return mock_sample(draws=1, chains=1, model=model, random_seed=0)

    hist = np.linspace(10.0, 1.0, 5)
    seen = {}

    class FakeCheck:
        converged, window, gain = True, 500, 0.0

    def fake_run_vi(method, model, start, *, n, draws, random_seed, progressbar, **kw):
        seen.update(method=method, n=n, start=start)
        idata = mock_sample(draws=draws, model=model, random_seed=random_seed)
        idata["loss"] = xr.Dataset({"loss": ("iteration", hist)})
        return idata, FakeCheck()

    import bayes_dgmm.bayes.backends.pymc as backend

    monkeypatch.setattr(backend, "run_map", fake_run_map)
    monkeypatch.setattr(backend, "run_vi", fake_run_vi)
    est = BayesianDeepGaussianMixture.from_spec("mfa-2layer", random_seed=0, progressbar=False)
    est.fit(X, method="map", maxiter=7)
    assert est.idata_["posterior"].sizes["draw"] == 1 and seen["map_maxiter"] == 7
    with pytest.raises(ValueError, match=r"method='map' takes maxiter only .*\['tol'\]"):
        est.fit(X, method="map", tol=1e-3)
    assert est.method_ == "map"
    est.fit(X, method="fullrank_advi", n=5, draws=4)
    assert seen["method"] == "fullrank_advi" and seen["n"] == 5
    assert set(seen["start"]) == {rv.name for rv in est.model_.free_RVs}  # jittered start
    assert est.idata_["posterior"].sizes["draw"] == 4
    np.testing.assert_array_equal(est.idata_["loss"]["loss"].values, hist)
    FakeCheck.converged, FakeCheck.gain = False, 12.5
    with pytest.warns(ConvergenceWarning, match=r"did not converge in n=5 .* fell by 12.5"):
        est.fit(X, method="advi", n=5, draws=4)


def test_lazy_exports():
    import subprocess
    import sys

    code = (
        "import sys, bayes_dgmm; assert 'pymc' not in sys.modules; "
        "from bayes_dgmm import BayesianDeepGaussianMixture, build_model; "
        "assert 'pymc' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- real fits
def _recovery_data():
    from bayes_dgmm.experiments.datasets import make_dgmm_data

    return make_dgmm_data(300, J, COMPS, FACTS, random_state=3, separation=6.0)


@pytest.fixture
def real_backend():
    # Undo the module's FAST_COMPILE: real fits use the package's default (C) backend.
    import pytensor

    with pytensor.config.change_flags(mode="Mode"):
        yield


def _path_ari(est, data) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(data.paths, est.predict(data.X)))


@pytest.mark.slow
def test_advi_recovers_tiny_case(real_backend):
    data = _recovery_data()
    est = BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=0, progressbar=False)
    t0 = time.perf_counter()
    est.fit(data.X, method="advi", init="em", n=20000, draws=300)
    ari = _path_ari(est, data)
    print(f"ADVI from EM: path ARI {ari:.3f}, {time.perf_counter() - t0:.0f} s")
    assert ari >= 0.95


@pytest.mark.slow
def test_nuts_from_em_recovers_tiny_case(real_backend):
    data = _recovery_data()
    est = BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=0, progressbar=False)
    t0 = time.perf_counter()
    est.fit(data.X, method="nutpie", init="em", draws=200, tune=200, chains=2)
    ari = _path_ari(est, data)
    print(f"NUTS (nutpie) from EM: path ARI {ari:.3f}, {time.perf_counter() - t0:.0f} s")
    assert ari >= 0.95
    assert int(est.idata_["sample_stats"]["diverging"].sum()) < 30


def test_smc_with_fewer_particles_than_parameters_is_refused(data):
    from bayes_dgmm.bayes.backends.flat import n_free_variables

    _, X, _ = data
    est = BayesianDeepGaussianMixture(COMPS, FACTS, progressbar=False)
    with pytest.raises(ValueError, match=r"draws=10 particles, but the model has \d+ free"):
        est.fit(X, method="smc", draws=10)
    # Counted by hand: per layer G (eta R_in + Lambda R_in R + psi R_in) + (G - 1) weights,
    # where eta and log psi of layers >= 2 sum to zero over the components (G - 1 free each).
    by_hand = 2 * (5 + 5 * 2 + 5) + 1 + (1 * 2 + 2 * 2 * 1 + 1 * 2) + 1
    assert n_free_variables(est.model_) == by_hand == 50


def test_nutpie_runs_chains_in_threads(data):
    # A real (short) nutpie run with two chains on two cores: they share one compiled
    # density, and every draw expands to C-contiguous arrays (eta_2 is a transpose)
    truth, X, _ = data
    est = BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=0, progressbar=False)
    est.fit(X, method="nutpie", init=truth, draws=5, tune=5, chains=2, cores=2)
    post = est.idata_["posterior"]
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 5
    np.testing.assert_allclose(post["eta_2"].sum("component_2"), 0.0, atol=1e-10)
    assert np.isfinite(est.idata_["sample_stats"]["log_likelihood_total"]).all()
    assert set(est.convergence_) >= {"converged", "max_rhat", "min_ess_bulk", "divergences"}
    assert not est.converged_  # five draws cannot give 400 effective ones


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("method", ["map", "laplace", "pathfinder"])
def test_optimiser_fits_save_and_load(data, tmp_path, method):
    # real (short) optimiser fits: their convergence attributes survive netCDF
    truth, X, _ = data
    est = BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=0, progressbar=False)
    kw = {"draws": 20} if method in ("laplace", "pathfinder") else {}
    est.fit(X, method=method, init=truth, maxiter=30, **kw)
    loaded = BayesianDeepGaussianMixture.load(est.save(tmp_path / f"{method}.nc"))
    assert loaded.convergence_ == est.convergence_
    assert loaded.params_ == est.params_


def test_latent_second_moment_matches_monte_carlo():
    # z^(3) ~ N(0, I); z^(l-1) = eta + Lambda z^(l) + u, eta zero-sum over G_l components,
    # u with variance psi_scale (the noise's anchored geometric mean), drawn here by numpy
    from bayes_dgmm.bayes.model import PRIOR_DEFAULTS, latent_second_moment

    comps, facts = (3, 3, 2), (5, 4, 2)
    hyper = {**PRIOR_DEFAULTS, "eta_scale": 2.0, "Lambda_scale": 0.7, "psi_scale": 0.5}
    rng = np.random.default_rng(0)
    n = 400_000
    z = rng.normal(size=(n, facts[2]))
    for l in (2, 1):  # 0-based layer l maps z^(l+1) to z^(l)
        g, r_in, r_out = comps[l], facts[l - 1], facts[l]
        eta = rng.normal(0, hyper["eta_scale"], size=(n, g, r_in))
        eta = (eta - eta.mean(axis=1, keepdims=True))[:, 0]  # one component's zero-sum value
        lam = rng.normal(0, hyper["Lambda_scale"], size=(n, r_in, r_out))
        u = rng.normal(0, np.sqrt(hyper["psi_scale"]), size=(n, r_in))
        z = eta + np.einsum("nij,nj->ni", lam, z) + u
    mc = float(np.mean(z**2))
    assert latent_second_moment(hyper, comps, facts, "noise") == pytest.approx(mc, rel=0.02)


def test_latent_second_moment_matches_monte_carlo_in_the_standardised_gauge():
    # z^(l-1) = eta + sqrt(t) (c z^(l) + e) / sqrt(1 + |c|^2), e ~ N(0, 1): log t and eta
    # zero-sum normal over G_l, c multivariate t (a normal over a chi-square), drawn by numpy
    from bayes_dgmm.bayes.model import latent_second_moment, resolve_priors

    comps, facts = (3, 3, 2), (5, 4, 2)
    hyper = {**resolve_priors(), "eta_scale": 2.0, "t_log_sd": 0.8, "loading_nu": 3.0}
    nu = hyper["loading_nu"]
    rng = np.random.default_rng(0)
    n = 400_000
    z = rng.normal(size=(n, facts[2]))
    for l in (2, 1):  # 0-based layer l maps z^(l+1) to z^(l)
        g, r_in, r_out = comps[l], facts[l - 1], facts[l]

        def zero_sum(sd, g=g, r_in=r_in):
            v = rng.normal(0, sd, size=(n, g, r_in))
            return (v - v.mean(axis=1, keepdims=True))[:, 0]  # one component's value

        eta, log_t = zero_sum(hyper["eta_scale"]), zero_sum(hyper["t_log_sd"])
        w = rng.chisquare(nu, size=(n, r_in, 1)) / nu
        c = rng.normal(0, 1 / np.sqrt(nu), size=(n, r_in, r_out)) / np.sqrt(w)
        scale = np.sqrt(np.exp(log_t) / (1 + np.sum(c**2, axis=-1)))
        z = eta + scale * (np.einsum("nij,nj->ni", c, z) + rng.normal(size=(n, r_in)))
    mc = float(np.mean(z**2))
    assert latent_second_moment(hyper, comps, facts) == pytest.approx(mc, rel=0.02)


def test_prior_predictive_is_on_the_data_scale(data):
    from bayes_dgmm.diagnostics import prior_predictive_spread

    _, X, _ = data
    X = X * 1e3 + 5e4  # the priors follow the data's scale
    est = BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=0, progressbar=False)
    tree = est.sample_prior_predictive(X, draws=300)
    assert tree["prior_predictive"]["x"].shape == (1, 300, *X.shape)
    spread = prior_predictive_spread(tree, X)
    # eta_1 ~ N(mean, sd) per component plus a loading term of typical spread 3 sd: about
    # sqrt(1/2 + 9) = 3.1 sd; heavy-tailed over draws
    assert 1.5 < spread["median"] < 6 and spread["q90"] < 20
    wide = BayesianDeepGaussianMixture(
        COMPS, FACTS, priors={"Lambda_1_scale": 100.0}, random_seed=0, progressbar=False
    )
    assert prior_predictive_spread(wide.sample_prior_predictive(X, draws=300), X)["median"] > 30
    with pytest.raises(ValueError, match=r"draws=0 is not an int in the range \[1, inf\)"):
        est.sample_prior_predictive(X, draws=0)
    with pytest.raises(ValueError, match="no 'prior_predictive' group"):
        prior_predictive_spread(xr.DataTree(), X)


def test_prior_predictive_groups_are_stored_with_a_fit(data, tmp_path):
    _, X, _ = data
    est = BayesianDeepGaussianMixture(COMPS, FACTS, random_seed=0, progressbar=False)
    est.fit(X, method="map")
    est.sample_prior_predictive(X, draws=20)
    est.save(tmp_path / "fit.nc")
    loaded = BayesianDeepGaussianMixture.load(tmp_path / "fit.nc")
    assert loaded.idata_["prior_predictive"]["x"].shape == (1, 20, *X.shape)
    assert "Lambda_1" in loaded.idata_["prior"]


def test_diagnose_uses_the_fit_s_own_data_and_spec(fitted, data, tmp_path, capsys):
    from bayes_dgmm.experiments.cli import main

    _, X, _ = data
    path = fitted.save(tmp_path / "fit.nc")
    np.savetxt(tmp_path / "X.csv", X, delimiter=",", fmt="%.17g")
    np.savetxt(tmp_path / "other.csv", X + 1.0, delimiter=",", fmt="%.17g")
    run = ["diagnose", str(path), "--quiet"]
    # without --data: the data saved in the fit (not the 17-feature study data)
    assert main([*run, "--out", str(tmp_path / "a")]) == 0, capsys.readouterr().err
    verdict = (tmp_path / "a" / "diagnostics.json").read_text()
    assert main([*run, "--data", str(tmp_path / "X.csv"), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "diagnostics.json").read_text() == verdict
    assert main([*run, "--data", str(tmp_path / "other.csv"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "(30 x 5) is not the data the fit was fitted to (30 x 5); drop --data" in err, err
    assert main([*run, "--spec", "mfa-2layer", "--out", str(tmp_path / "d")]) == 2
    assert "fitted with spec 'custom'" in capsys.readouterr().err
    assert not (tmp_path / "c" / "diagnostics.json").exists()


def test_load_refuses_a_change_in_any_group(fitted, data, tmp_path):
    _, X, _ = data
    path = fitted.save(tmp_path / "fit.nc")
    BayesianDeepGaussianMixture.load(path)  # the saved file itself loads
    # 64 bytes XOR-ed in the stored observations (their float64 bytes, found in the file)
    raw = bytearray(path.read_bytes())
    at = raw.find(np.ascontiguousarray(X).tobytes()[:64])
    assert at > 0
    for i in range(at + 8, at + 72):
        raw[i] ^= 0x5A
    xored = tmp_path / "xored.nc"
    xored.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"xored.nc: the values of group 'observed_data' do not"):
        BayesianDeepGaussianMixture.load(xored)
    # a changed label probability, a deleted group, each through xarray
    with xr.open_datatree(path, engine="h5netcdf") as opened:
        tree = opened.load()
    groups = [g for g in tree.children if g != "posterior"]
    assert {"observed_data", "sample_stats", "labels"} <= set(groups)
    for group in groups:
        changed = tree.copy()
        ds = changed[group].to_dataset()
        name = next(n for n in ds.data_vars if ds[n].dtype.kind == "f")
        ds[name] = ds[name] + 1e-9
        changed[group] = ds
        target = tmp_path / f"{group}.nc"
        changed.to_netcdf(target, engine="h5netcdf")
        with pytest.raises(ValueError, match=rf"group '{group}' do not match the checksum"):
            BayesianDeepGaussianMixture.load(target)
    dropped = tree.copy()
    del dropped["labels"]
    dropped.to_netcdf(tmp_path / "dropped.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match=r"group 'labels' .*\(the group is missing\)"):
        BayesianDeepGaussianMixture.load(tmp_path / "dropped.nc")
