import json

import numpy as np
import pytest

from bayes_dgmm.cli import main
from bayes_dgmm.datasets import make_dgmm_data
from bayes_dgmm.experiments.compare import compare_methods
from bayes_dgmm.experiments.methods import run_method
from bayes_dgmm.spec import DGMMSpec

SPEC = DGMMSpec((2, 2), (2, 1), name="tiny")
BUDGET = {"em_restarts": 2, "em_max_iter": 20, "gmm_restarts": 2}


@pytest.fixture(scope="module")
def tiny():
    return make_dgmm_data(240, 5, (2, 2), (2, 1), random_state=3, separation=5.0)


def test_compare_em_and_gmm(tiny, tmp_path):
    rows = compare_methods(
        tiny.X,
        SPEC,
        tmp_path,
        methods=["gmm", "stochastic", "exact"],
        labels=tiny.labels,
        budget=BUDGET,
        n_jobs=1,
    )
    assert [r["method"] for r in rows] == ["exact", "stochastic", "gmm"]  # exact first
    exact = rows[0]
    # the log-likelihood in the table is that of the saved fit, recomputed independently
    from bayes_dgmm import DGMMParams

    params = DGMMParams.from_json(tmp_path / "fits" / "exact.json")
    assert exact["log_likelihood"] == pytest.approx(params.score(tiny.X), rel=1e-10)
    pred = params.paths[params.predict(tiny.X)]
    from bayes_dgmm.metrics import layer_aris

    assert exact["ari_path"] == pytest.approx(layer_aris(tiny.labels, pred, (2, 2))["path"])
    assert exact["empty_paths"] == 4 - len(np.unique(params.predict(tiny.X)))
    for name in ("comparison.csv", "comparison.png", "report.md"):
        assert (tmp_path / name).is_file()
    stamp = (tmp_path / "runs" / "compare-exact.json").stat().st_mtime_ns
    compare_methods(tiny.X, SPEC, tmp_path, methods=["exact"], labels=tiny.labels, budget=BUDGET)
    assert (tmp_path / "runs" / "compare-exact.json").stat().st_mtime_ns == stamp


def test_method_the_budget_cannot_run_is_reported_not_fatal(tiny, tmp_path):
    import pytensor

    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        rows = compare_methods(
            tiny.X,
            SPEC,
            tmp_path,
            methods=["gmm", "smc"],
            labels=tiny.labels,
            budget={**BUDGET, "smc_draws": 10},
            n_jobs=1,
        )
    assert [r["method"] for r in rows] == ["gmm", "smc"]
    assert "ari_path" in rows[0]
    assert "draws=10 particles, but the model has 54 free parameters" in rows[1]["skipped"]
    report = (tmp_path / "report.md").read_text()
    assert "Not run at this budget" in report and "**smc**" in report
    assert not (tmp_path / "runs" / "compare-smc.json").exists()  # a rerun will try again


def test_run_method_errors(tiny):
    with pytest.raises(ValueError, match="method='vb' is not one of"):
        run_method("vb", tiny.X, SPEC)
    with pytest.raises(ValueError, match="budget has unknown keys"):
        run_method("gmm", tiny.X, SPEC, budget={"iterations": 3})


def test_fit_command(tiny, tmp_path, capsys):
    np.savetxt(tmp_path / "X.csv", tiny.X, delimiter=",")
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC.to_toml())
    out = tmp_path / "out"
    assert (
        main(
            [
                "fit",
                "--data",
                str(tmp_path / "X.csv"),
                "--spec",
                str(spec),
                "--method",
                "exact",
                "--budget",
                "em_restarts=1",
                "em_max_iter=10",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    fit = json.loads((out / "fit.json").read_text())
    labels = np.loadtxt(out / "labels.csv", delimiter=",", skiprows=1)
    assert labels.shape == (240, 3)
    assert fit["occupied_paths"] == len(np.unique(labels[:, 0]))
    assert (
        main(
            [
                "fit",
                "--data",
                str(tmp_path / "X.csv"),
                "--spec",
                str(spec),
                "--method",
                "exact",
                "--budget",
                "steps=3",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "use KEY=VALUE with KEY one of" in capsys.readouterr().err
