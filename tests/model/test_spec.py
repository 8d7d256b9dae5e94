import numpy as np
import pytest

from bayes_dgmm.model.spec import DGMMSpec, available_specs, load_spec, validate_architecture


def test_shipped_study_spec():
    spec = load_spec("icbinb-sec3")
    assert spec.n_components == (3, 3, 2)
    assert spec.n_factors == (11, 6, 2)
    assert spec.n_features == 17
    assert spec.n_paths == 18
    assert "icbinb-sec3" in available_specs()


def test_shipped_mcmc_design_spec():
    spec = load_spec("dgmm-4x2")
    assert (spec.n_components, spec.n_factors, spec.n_features) == ((4, 2), (5, 2), 10)
    assert spec.n_paths == 8


def test_toml_round_trip(tmp_path):
    spec = DGMMSpec((3, 2), (4, 1), name="t", priors={"eta_scale": 2.5}, fit={"n_init": 3})
    path = tmp_path / "t.toml"
    path.write_text(spec.to_toml())
    assert load_spec(path) == spec


@pytest.mark.parametrize(
    ("comps", "facts", "n_features", "exc", "match"),
    [
        ((), (), None, ValueError, "no layer"),
        ((3, 2), (4,), None, ValueError, "one latent dimension per layer"),
        ((3, 0), (4, 2), None, ValueError, r"n_components=\(3, 0\) contains 0"),
        ((3, 2), (4, 4), None, ValueError, "not strictly decreasing"),
        ((3,), (5,), 5, ValueError, "not below the number of features"),
        ((3.5,), (2,), None, TypeError, "must be an integer"),
        ("ab", (2,), None, TypeError, "must be an integer|not a sequence"),
    ],
)
def test_bad_architectures(comps, facts, n_features, exc, match):
    with pytest.raises(exc, match=match):
        validate_architecture(comps, facts, n_features)


def test_unknown_spec_lists_shipped():
    with pytest.raises(FileNotFoundError, match="icbinb-sec3"):
        load_spec("no-such-spec")


def test_spec_checks_feature_count():
    spec = load_spec("icbinb-sec3")
    with pytest.raises(ValueError, match="n_features=17"):
        spec.check_n_features(10)


ARCH = "[architecture]\nn_components = [2, 2]\nn_factors = [2, 1]\n"


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        (ARCH + "[priors]\nfoo = 1.0\n", ValueError, r"\[priors\] has unknown key 'foo'"),
        (ARCH + "[priors]\npsi_scale = -1\n", ValueError, r"psi_scale'\] = -1; it must be"),
        (ARCH + "[fit]\nn_inits = 5\n", ValueError, r"\[fit\] has unknown key 'n_inits'"),
        (ARCH + '[fit]\nn_init = "5"\n', ValueError, r"\[fit\] n_init = '5'; give a whole"),
        ("nmae = 'x'\n" + ARCH, ValueError, r"has unknown key 'nmae'"),
        (ARCH + "n_feature = 5\n", ValueError, r"\[architecture\] has unknown key 'n_feature'"),
        (ARCH + 'n_features = "5"\n', TypeError, r"n_features='5' is not an integer"),
    ],
)
def test_every_spec_key_is_checked_on_load(tmp_path, text, error, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(error, match=r".*bad\.toml: .*" + match):
        load_spec(path)


def test_spec_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin.toml"
    path.write_bytes(("# größe\n" + ARCH).encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.toml: not UTF-8 text"):
        load_spec(path)


@pytest.mark.parametrize("command", ["fit", "compare"])
def test_cli_refuses_a_bad_prior_before_any_work(tmp_path, capsys, command):
    from bayes_dgmm.experiments.cli import main

    spec = tmp_path / "bad.toml"
    spec.write_text(ARCH + "[priors]\nfoo = 1.0\n")
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "X.csv", rng.normal(size=(40, 4)), delimiter=",")
    argv = [command, "--data", str(tmp_path / "X.csv"), "--spec", str(spec), "--quick"]
    argv += ["--method", "map"] if command == "fit" else ["--methods", "exact", "map"]
    assert main([*argv, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "unknown key 'foo'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "runs").exists() and not (tmp_path / "o" / "fit.json").exists()
