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
