import csv
import json
import re

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from bayes_dgmm import DGMMParams
from bayes_dgmm.experiments.cli import main
from bayes_dgmm.experiments.compare import compare_methods
from bayes_dgmm.experiments.datasets import make_dgmm_data
from bayes_dgmm.experiments.methods import run_method
from bayes_dgmm.model.spec import DGMMSpec

SPEC = DGMMSpec((2, 2), (2, 1), name="tiny")
BUDGET = {"em_restarts": 2, "em_max_iter": 20, "sem_max_iter": 60, "gmm_restarts": 2}


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
    params = DGMMParams.from_json(tmp_path / "fits" / "exact.json")
    assert exact["log_likelihood"] == pytest.approx(params.score(tiny.X), rel=1e-10)
    pred = params.paths[params.predict(tiny.X)]
    from bayes_dgmm.diagnostics.metrics import layer_aris

    assert exact["ari_path"] == pytest.approx(layer_aris(tiny.labels, pred, (2, 2))["path"])
    assert exact["empty_paths"] == 4 - len(np.unique(params.predict(tiny.X)))
    # the stochastic EM runs to its stationarity rule within its own budget, sem_max_iter
    stochastic = rows[1]
    match = re.fullmatch(
        r"stationary: .* nats, z = (\S+) \(criterion: within ±2\) after (\d+) its",
        stochastic["evidence"],
    )
    assert match, stochastic["evidence"]
    n_iter = int(match.group(2))
    assert stochastic["converged"] == (abs(float(match.group(1))) <= 2.0)
    assert n_iter == 60 or (n_iter % 25 == 0 and stochastic["converged"])
    for name in ("comparison.csv", "comparison.png", "report.md"):
        assert (tmp_path / name).is_file()
    (stored,) = (tmp_path / "runs").glob("compare-exact-*.json")
    stamp = stored.stat().st_mtime_ns
    compare_methods(tiny.X, SPEC, tmp_path, methods=["exact"], labels=tiny.labels, budget=BUDGET)
    assert stored.stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "runs").glob("compare-exact-*.json"))) == 1


def test_compare_recomputes_runs_of_other_inputs(tiny, tmp_path):
    # A rerun into the same folder with other data, seed or budget must not reuse the first
    # run's numbers; a rerun of the first inputs reuses them again.
    kw = dict(methods=["exact", "stochastic"], budget=BUDGET, n_jobs=1)
    first = compare_methods(tiny.X, SPEC, tmp_path, labels=tiny.labels, **kw)
    exact_fit = (tmp_path / "fits" / "exact.json").read_text()
    other = make_dgmm_data(300, 5, (2, 2), (2, 1), random_state=7, separation=5.0)
    second = compare_methods(other.X, SPEC, tmp_path, labels=other.labels, **kw)
    for a, b in zip(first, second, strict=True):
        assert a["log_likelihood"] != b["log_likelihood"]
    # the Bayesian methods' start (fits/exact.json) is the fit of the new data
    params = DGMMParams.from_json(tmp_path / "fits" / "exact.json")
    assert params.score(other.X) == pytest.approx(second[0]["log_likelihood"], rel=1e-10)
    runs = set((tmp_path / "runs").glob("compare-exact-*.json"))
    compare_methods(tiny.X, SPEC, tmp_path, labels=tiny.labels, random_state=3, **kw)
    # another seed is another run (its fit may land on the same optimum: on this small data
    # set two seeds' fits can agree to the last digit, so the numbers cannot tell)
    assert len(set((tmp_path / "runs").glob("compare-exact-*.json")) - runs) == 1
    bigger = {**BUDGET, "em_restarts": 3}
    fourth = compare_methods(tiny.X, SPEC, tmp_path, labels=tiny.labels, **{**kw, "budget": bigger})
    assert fourth[0]["n_runs"] == 3
    again = compare_methods(tiny.X, SPEC, tmp_path, labels=tiny.labels, **kw)
    assert again == first
    assert (tmp_path / "fits" / "exact.json").read_text() == exact_fit
    assert len(list((tmp_path / "runs").glob("compare-exact-*.json"))) == 4


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
    assert "draws=10 particles, but the model has 50 free parameters" in rows[1]["skipped"]
    report = (tmp_path / "report.md").read_text()
    assert "Not run at this budget" in report and "**smc**" in report
    assert not list((tmp_path / "runs").glob("compare-smc*"))  # a rerun will try again


def test_a_failing_method_is_an_error_not_a_skipped_row(tiny, tmp_path, monkeypatch):
    # Only a budget the method cannot run with becomes a "not run" row; any other failure
    # reaches the caller instead of being filed as skipped.
    import bayes_dgmm.experiments.compare as compare_module

    def broken(method, *args, **kwargs):
        raise ValueError("the covariance update failed")

    monkeypatch.setattr(compare_module, "run_method", broken)
    with pytest.raises(ValueError, match="the covariance update failed"):
        compare_methods(tiny.X, SPEC, tmp_path, methods=["gmm"], budget=BUDGET, n_jobs=1)


def test_run_method_errors(tiny):
    with pytest.raises(ValueError, match="method='vb' is not one of"):
        run_method("vb", tiny.X, SPEC)
    with pytest.raises(ValueError, match="budget has unknown keys"):
        run_method("gmm", tiny.X, SPEC, budget={"iterations": 3})
    with pytest.raises(ValueError, match=r"budget em_restarts=0 is out of range; .* >= 1"):
        run_method("exact", tiny.X, SPEC, budget={"em_restarts": 0})
    with pytest.raises(ValueError, match=r"budget vi_draws=2\.0 is out of range; .*integer"):
        run_method("advi", tiny.X, SPEC, budget={"vi_draws": 2.0})


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


def test_compare_command_exits_non_zero_when_a_method_cannot_run(tiny, tmp_path, capsys):
    import pytensor

    np.savetxt(tmp_path / "X.csv", tiny.X, delimiter=",")
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC.to_toml())
    argv = ["compare", "--data", str(tmp_path / "X.csv"), "--spec", str(spec), "--quiet"]
    argv += ["--methods", "gmm", "smc", "--budget", "smc_draws=10", "gmm_restarts=1"]
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        code = main([*argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(r"error: could not run smc \(method='smc' with draws=10 particles", err)
    assert (tmp_path / "o" / "comparison.csv").is_file()  # the other methods are kept


def test_compare_reports_a_default_method_the_budget_cannot_run_and_succeeds(
    tiny, tmp_path, capsys, monkeypatch
):
    # Without --methods, a method of the default list that the budget cannot run (SMC on the
    # study model at the default budget) is reported as not run and the command succeeds.
    import pytensor

    import bayes_dgmm.experiments.cli as cli

    monkeypatch.setattr(cli, "DEFAULT_METHODS", ("gmm", "smc"))
    np.savetxt(tmp_path / "X.csv", tiny.X, delimiter=",")
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC.to_toml())
    argv = ["compare", "--data", str(tmp_path / "X.csv"), "--spec", str(spec)]
    argv += ["--budget", "smc_draws=10", "gmm_restarts=1", "--out", str(tmp_path / "o")]
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        assert main(argv) == 0
    report = (tmp_path / "o" / "report.md").read_text()
    assert "Not run at this budget" in report and "**smc**" in report
    # the printed table's row says why, not a row of blanks
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| smc")]
    assert re.match(
        r"\| smc \| not run \| method='smc' with draws=10 particles, but the model has \d+", row
    )


def test_compare_reports_psis_loo_of_the_bayesian_fits(tiny, tmp_path):
    from scipy.special import logsumexp

    from bayes_dgmm.bayes.io import read_fit

    budget = {**BUDGET, "em_max_iter": 200, "advi_iterations": 4000, "vi_draws": 400}
    rows = compare_methods(
        tiny.X, SPEC, tmp_path, methods=["exact", "laplace", "advi"], budget=budget, n_jobs=1
    )
    by = {r["method"]: r for r in rows}
    assert "elpd_loo" not in by["exact"]
    loo = (tmp_path / "loo_compare.csv").read_text().splitlines()
    assert len(loo) == 3 and {line.split(",")[0] for line in loo[1:]} == {"laplace", "advi"}
    for method in ("laplace", "advi"):
        ll = read_fit(tmp_path / "fits" / f"{method}.nc").tree["log_likelihood"]["x"]
        ll = ll.stack(s=("chain", "draw")).transpose("obs", "s").values
        lppd = float((logsumexp(ll, axis=1) - np.log(ll.shape[1])).sum())
        # plain importance-sampling LOO: PSIS's reference where the Pareto k are small
        is_loo = float((np.log(ll.shape[1]) - logsumexp(-ll, axis=1)).sum())
        assert by[method]["elpd_loo"] < lppd  # p_loo > 0
        if method == "advi":
            # converged q on a 50-parameter model: p_loo near 50 (59 measured) and PSIS equal
            # to plain importance sampling within 0.2 nats (measured)
            assert by[method]["converged"]
            assert 25 < lppd - by[method]["elpd_loo"] < 100
            assert by[method]["elpd_loo"] == pytest.approx(is_loo, abs=2.0)
    assert "Predictive comparison (PSIS-LOO)" in (tmp_path / "report.md").read_text()


def test_compare_shows_evidence_time_split_and_rank_plots(tiny, tmp_path):
    budget = {**BUDGET, "chains": 2, "tune": 30, "draws": 30, "max_treedepth": 4}
    budget["em_max_iter"] = 50  # room for two Newton steps after the EM
    rows = compare_methods(
        tiny.X, SPEC, tmp_path, methods=["exact", "nutpie"], budget=budget, n_jobs=1
    )
    exact, nuts = rows
    # the exact EM ends with Newton steps: their decrement is the evidence
    assert re.match(r"Newton decrement: \S+ nats \(criterion: <= 0\.24\)", exact["evidence"])
    est_remaining = float(exact["evidence"].split()[2])
    assert exact["converged"] == (est_remaining < 0.24)
    assert "compile_s" not in exact
    # nutpie compiles its C-backend log density; the split is part of the wall time
    assert 0 < nuts["compile_s"] < nuts["seconds"]
    assert re.match(r"r_hat \d\.\d+ \(criterion: < 1\.01\), ESS bulk \d", nuts["evidence"])
    assert "tree depth" in nuts["evidence"]
    assert (tmp_path / "rank_nutpie.png").is_file()
    report = (tmp_path / "report.md").read_text()
    assert "![nutpie: rank plot of E[x_0 | layer" in report
    assert "rank_exact.png" not in report


def test_tables_show_the_loo_comparison_in_tenths_of_a_nat():
    from bayes_dgmm.experiments.report import markdown_table

    row = {"method": "advi", "elpd": -378653.14, "se": 358.43, "p_loo": 1212.66, "weight": 0.0}
    line = markdown_table([row]).splitlines()[-1]
    assert line == "| advi | -378653.1 | 358.4 | 1212.7 | 0.000 |"


def test_methods_in_worker_processes_give_the_sequential_table(tiny, tmp_path):
    # n_jobs=2 runs the methods after the exact EM in two processes; the table is the same
    # as one process gives (but for the times), and the workers' warnings reach the caller
    kw = dict(methods=["gmm", "stochastic", "exact"], labels=tiny.labels, n_jobs=1)
    budget = {**BUDGET, "sem_max_iter": 3}  # too short: the stochastic EM warns
    with pytest.warns(match="did not"):
        one = compare_methods(tiny.X, SPEC, tmp_path / "one", budget=budget, **kw)
    with pytest.warns(match="did not"):
        two = compare_methods(tiny.X, SPEC, tmp_path / "two", budget=budget, **{**kw, "n_jobs": 2})
    assert [r["method"] for r in two] == ["exact", "stochastic", "gmm"]
    for a, b in zip(one, two, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"
        }
    assert (tmp_path / "two" / "fits" / "stochastic.json").is_file()


def test_compare_into_a_reused_folder_keeps_only_this_call_s_fits(tiny, tmp_path):
    out = tmp_path / "o"
    compare_methods(tiny.X, SPEC, out, methods=["exact", "gmm"], budget=BUDGET, n_jobs=1)
    assert (out / "fits" / "exact.json").is_file()
    (out / "rank_map.png").write_bytes(b"an earlier call's plot")
    other = tiny.X[::-1] + 1.0
    rows = compare_methods(other, SPEC, out, methods=["gmm"], budget=BUDGET, n_jobs=1)
    assert [r["method"] for r in rows] == ["gmm"]
    assert list((out / "fits").iterdir()) == []
    assert not (out / "rank_map.png").exists()


@pytest.mark.parametrize("damage", ["{}", '{"method": "gmm"}', "[1, 2]", "{not json", "paths"])
def test_a_damaged_stored_row_is_recomputed(tiny, tmp_path, caplog, damage):
    out = tmp_path / "o"
    budget = {**BUDGET, "gmm_restarts": 1}
    (first,) = compare_methods(tiny.X, SPEC, out, methods=["gmm"], budget=budget, n_jobs=1)
    (record,) = (out / "runs").glob("compare-gmm-*.json")
    if damage == "paths":  # a valid row whose partition lost an observation
        row = json.loads(record.read_text())
        row["paths"] = row["paths"][1:]
        damage = json.dumps(row)
    record.write_text(damage)
    with caplog.at_level("WARNING", logger="bayes_dgmm"):
        (again,) = compare_methods(tiny.X, SPEC, out, methods=["gmm"], budget=budget, n_jobs=1)
    assert "is damaged" in caplog.text and "it is recomputed" in caplog.text
    assert {k: v for k, v in again.items() if k != "seconds"} == {
        k: v for k, v in first.items() if k != "seconds"
    }
    with (out / "comparison.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["method"] == "gmm" and float(row["log_likelihood"]) == first["log_likelihood"]


def test_stochastic_em_too_short_to_test_says_not_measured(tiny):
    from bayes_dgmm.experiments.compare import summarise

    budget = {**BUDGET, "sem_max_iter": 10, "em_restarts": 1}
    result = run_method("stochastic", tiny.X, SPEC, budget=budget)
    row = summarise(result, SPEC)
    assert row["converged"] is False
    assert (
        row["evidence"] == "stationary: not measured, 10 its are fewer than the 50 the test needs"
    )
    with pytest.warns(ConvergenceWarning, match=r"not measured: 10 iterations are fewer than"):
        run_method("stochastic", tiny.X, SPEC, budget=budget)


@pytest.mark.parametrize(
    ("method", "convergence", "expected"),
    [
        (
            "map",
            {"max_abs_gradient": 1880.0},
            "largest gradient entry 1.88e+03 (criterion: <= 0.001)",
        ),
        ("pathfinder", {"pareto_k": 6.45}, "Pareto k 6.45 (criterion: < 0.7)"),
        (
            "laplace",
            {"nonpositive_eigenvalues": 0, "newton_decrement": 201.0},
            "0 negative Hessian eigenvalues (criterion: none), Newton decrement 201 "
            "(criterion: < 0.1)",
        ),
    ],
)
def test_evidence_names_the_criterion_apart_from_the_figure(method, convergence, expected):
    from bayes_dgmm.experiments.compare import convergence_evidence
    from bayes_dgmm.experiments.methods import MethodResult

    result = MethodResult(
        method=method,
        paths=np.zeros(4, dtype=np.intp),
        log_likelihood=0.0,
        bic=0.0,
        seconds=0.0,
        partitions=np.zeros((1, 4), dtype=np.intp),
        scores=np.zeros(1),
        extra={"convergence": convergence},
        converged=False,
    )
    assert convergence_evidence(result) == expected
