import csv
import io
import json
import re

import numpy as np
import pytest

from bayes_dgmm.experiments.cli import main


def test_truth_command(tmp_path, capsys):
    assert main(["truth", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "-377797.02" in out
    data = json.loads((tmp_path / "truth.json").read_text())
    assert abs(data["true_loglik"] + 377797.02) < 0.01
    assert data["bayes_classifier_ari"]["layer_3"] == 1.0


def test_simulate_command(tmp_path, capsys):
    assert (
        main(
            [
                "simulate",
                "--spec",
                "mfa-2layer",
                "--n-samples",
                "30",
                "--n-features",
                "4",
                "--seed",
                "2",
                "--out",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
    X = np.loadtxt(tmp_path / "X.csv", delimiter=",", skiprows=1)
    assert X.shape == (30, 4)
    assert capsys.readouterr().out == ""


def test_cli_error_is_one_line(tmp_path, capsys):
    assert main(["simulate", "--spec", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "shipped specs" in err and "Traceback" not in err


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "no such file"),
        ("", "is empty"),
        ("a,b\n1,2\n3,x\n", r"cell 'x' at row 2 \(line 3 of the file\), column 2 is not a number"),
        ("a,b\n1,2\n3,nan\n", r"column 2 is missing \('nan'\)"),
        ("a,b\n1,2\n3\n", r"row 2 \(line 3 of the file\) has 1 cells but row 1 has 2"),
    ],
)
def test_bad_csv_errors(tmp_path, capsys, content, match):
    path = tmp_path / "X.csv"
    if content is not None:
        _write(path, content)
    code = main(
        [
            "reproduce",
            "--data",
            str(path),
            "--spec",
            "mfa-2layer",
            "--quick",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(match, err), err
    assert "Traceback" not in err


def test_too_few_rows(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "X.csv"
    np.savetxt(path, rng.normal(size=(5, 4)), delimiter=",")
    assert (
        main(
            [
                "reproduce",
                "--data",
                str(path),
                "--spec",
                "mfa-2layer",
                "--quick",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "too few for 4 paths" in capsys.readouterr().err


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


@pytest.fixture
def small(tmp_path):
    """A small data set written by `simulate` (200 rows of mfa-2layer), its folder."""
    out = tmp_path / "sim"
    argv = ["simulate", "--spec", "mfa-2layer", "--n-samples", "200", "--seed", "1"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.parametrize(
    ("content", "rows"),
    [
        ("1,2\n3,4\n5,6\n", 3),  # no header: every row is data
        ("x1,x2\n1,2\n3,4\n", 2),  # a header of text
        ("\ufeff1,2\n3,4\n5,6\n", 3),  # a byte-order mark on a header-less file
        ("\ufeffx1,x2\n1,2\n", 1),
    ],
)
def test_csv_header_is_a_row_of_text(tmp_path, content, rows):
    from bayes_dgmm.experiments.cli_io import load_csv

    path = tmp_path / "X.csv"
    path.write_text(content, encoding="utf-8")
    X = load_csv(path)
    assert X.shape == (rows, 2)
    assert X[-1].tolist() == [float(v) for v in content.strip().splitlines()[-1].split(",")]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("NA,2\n3,4\n", r"row 1 \(line 1 of the file\), column 1 is missing \('NA'\)"),
        (",2\n3,4\n", r"row 1 \(line 1 of the file\), column 1 is missing \(''\)"),
        ("NA,NA\n3,4\n", r"row 1 \(line 1 of the file\), column 1 is missing"),
        ("a,b\n1,2\n3,\n", r"row 2 \(line 3 of the file\), column 2 is missing"),
        ("a,b\n" + "1,2\n" * 99 + "n/a,2\n", r"row 100 \(line 101 of the file\), column 1 is"),
        ("a,b\n1,2\n3,inf\n", r"first at row 2, column 2, counted from 1"),
    ],
)
def test_csv_missing_cells_refused_wherever_they_are(tmp_path, content, match):
    from bayes_dgmm.experiments.cli_io import load_csv

    path = tmp_path / "X.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"--data='.*X\.csv'.*" + match):
        load_csv(path)


def test_csv_not_utf8_is_one_clean_line(tmp_path):
    from bayes_dgmm.experiments.cli_io import load_csv

    path = tmp_path / "X.csv"
    path.write_bytes("größe,b\n1,2\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"--data='.*' is not UTF-8 text"):
        load_csv(path)


def test_fit_checks_out_before_any_work(small, tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    argv = ["fit", "--data", str(small / "X.csv"), "--spec", "mfa-2layer", "--method", "exact"]
    code, err = _run([*argv, "--out", str(blocker)], capsys)
    assert code == 2 and re.search(r"--out='.*taken' is a file, not a folder", err), err
    out = tmp_path / "out"
    (out / "fit.json").mkdir(parents=True)
    code, err = _run([*argv, "--out", str(out)], capsys)
    assert code == 2 and "fit.json there is a folder" in err and "--out=" in err
    assert sorted(p.name for p in out.iterdir()) == ["fit.json"]  # nothing was fitted


def test_labels_checked_before_the_fit(small, tmp_path, capsys):
    argv = ["fit", "--data", str(small / "X.csv"), "--spec", "mfa-2layer", "--method", "exact"]
    argv += ["--out", str(tmp_path / "o")]
    lab = np.loadtxt(small / "labels.csv", delimiter=",", skiprows=1)
    bad = lab.copy()
    bad[4, 0] = 0.7
    np.savetxt(tmp_path / "frac.csv", bad, delimiter=",")
    code, err = _run([*argv, "--labels", str(tmp_path / "frac.csv")], capsys)
    assert code == 2 and re.search(r"--labels=.*row 5, column 1 holds 0\.7, not a whole", err)
    bad = lab.astype(int)
    bad[9, 1] = 7
    np.savetxt(tmp_path / "range.csv", bad, delimiter=",", fmt="%d")
    code, err = _run([*argv, "--labels", str(tmp_path / "range.csv")], capsys)
    assert code == 2
    assert re.search(r"row 10, column 2 holds 7, out of range for layer 2 .* use 0\.\.1", err)
    assert not (tmp_path / "o" / "fit.json").exists()
    code, err = _run(["fit", "--method", "exact", "--labels", str(small / "labels.csv"),
                      "--out", str(tmp_path / "o")], capsys)  # fmt: skip
    assert code == 2 and "--labels needs --data" in err


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (
            ["--budget", "em_restarts=0"],
            r"--budget em_restarts=0 is out of range; em_restarts "
            r"must be an integer >= 1",
        ),
        (["--budget", "advi_iterations=-1"], r"advi_iterations must be an integer >= 1"),
        (["--budget", "tune=-1"], r"tune must be an integer >= 0"),
        (["--budget", "draws=2.5"], r"'2\.5' is not an integer; give draws=N"),
        (["--n-jobs", "0"], r"argument --n-jobs: 0 is out of range; give a number of workers"),
        (["--seed", "-1"], r"argument --seed: -1 is out of range; give an integer 0\.\.4294967295"),
        (["--seed", "a"], r"argument --seed: 'a' is not an integer"),
    ],
)
def test_options_range_checked_at_the_start(small, tmp_path, capsys, extra, match):
    argv = ["compare", "--data", str(small / "X.csv"), "--spec", "mfa-2layer", "--quick"]
    argv += ["--methods", "exact", "--out", str(tmp_path / "o"), *extra]
    code, err = _run(argv, capsys)
    assert code == 2 and re.search(match, err), err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "comparison.csv").exists()


def test_simulate_refuses_n_features_the_spec_fixes(tmp_path, capsys):
    argv = ["simulate", "--spec", "icbinb-sec3", "--n-features", "4", "--out", str(tmp_path)]
    code, err = _run(argv, capsys)
    assert code == 2
    assert "--n-features=4, but spec 'icbinb-sec3' fixes n_features=17" in err
    assert not (tmp_path / "X.csv").exists()


def test_resumed_compare_of_other_inputs_is_recomputed(small, tmp_path, capsys):
    # the repro of the stale-resume defect, shrunk: two data sets, seeds and budgets, one --out
    other = tmp_path / "sim2"
    argv = ["simulate", "--spec", "mfa-2layer", "--n-samples", "300", "--seed", "7"]
    assert main([*argv, "--out", str(other), "--quiet"]) == 0
    out = tmp_path / "cX"
    common = ["compare", "--quick", "--methods", "stochastic", "exact", "gmm", "--spec"]
    common += ["mfa-2layer", "--out", str(out), "--n-jobs", "1", "--quiet"]
    first = [*common, "--data", str(small / "X.csv"), "--labels", str(small / "labels.csv")]
    assert main(first) == 0
    table1 = (out / "comparison.csv").read_text()
    second = [*common, "--data", str(other / "X.csv"), "--labels", str(other / "labels.csv")]
    assert main([*second, "--seed", "3", "--budget", "em_restarts=4"]) == 0
    table2 = (out / "comparison.csv").read_text()
    rows1, rows2 = table1.splitlines()[1:], table2.splitlines()[1:]
    assert all(a != b for a, b in zip(rows1, rows2, strict=True))
    n_runs = [r["n_runs"] for r in csv.DictReader(io.StringIO(table2))]
    assert n_runs == ["4", "4", "2"]  # exact, stochastic, gmm
    params = json.loads((out / "fits" / "exact.json").read_text())
    assert (
        len(params["eta"][0][0]) == np.loadtxt(other / "X.csv", delimiter=",", skiprows=1).shape[1]
    )
    assert main(first) == 0
    assert (out / "comparison.csv").read_text().splitlines()[1:] == rows1  # reused again


def test_quiet_hides_library_warnings(tmp_path, capsys, monkeypatch):
    import logging
    import warnings

    import bayes_dgmm.experiments.cli as cli

    def noisy(args):
        logging.getLogger("pymc.sampling").warning("pymc says: too few draws")
        warnings.warn_explicit("pytensor says: no g++", UserWarning, "x.py", 1, module="pytensor.x")
        return {}

    monkeypatch.setattr(cli, "_truth", noisy)
    with warnings.catch_warnings():
        assert main(["truth", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "pymc says" not in captured.err + captured.out
    assert "pytensor says" not in captured.err + captured.out


def test_ctrl_c_at_start_up_is_one_line(monkeypatch, capsys):
    import bayes_dgmm.experiments.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["truth"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and "Traceback" not in err


def test_start_up_imports_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys, bayes_dgmm.experiments.cli; "
        "print(sorted({'sklearn', 'pymc'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        (3, 7.5, r"--data='.*X\.csv' has 1 constant column\(s\) \(first: column 3, counted from 1"),
        (1, 1e300, r"--data='.*X\.csv' has values beyond 1e\+150 in magnitude \(first at row 1"),
    ],
)
def test_data_that_cannot_be_fitted_named_as_data(small, tmp_path, capsys, column, value, match):
    X = np.loadtxt(small / "X.csv", delimiter=",", skiprows=1)
    X[:, column - 1] = value if value < 1e10 else X[:, column - 1] * value
    np.savetxt(tmp_path / "X.csv", X, delimiter=",")
    argv = ["fit", "--data", str(tmp_path / "X.csv"), "--spec", "mfa-2layer", "--method", "gmm"]
    code, err = _run([*argv, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and re.search(match, err), err


def test_warnings_print_as_one_line_of_ours(tmp_path, capsys, monkeypatch):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    import bayes_dgmm.experiments.cli as cli

    def warns(args):
        # as the package's warnings reach the terminal from inside scikit-learn's fit wrapper
        warnings.warn_explicit(
            "did not converge:\n  312 nats to go", ConvergenceWarning, "sklearn/base.py", 1403
        )
        return {}

    monkeypatch.setattr(cli, "_truth", warns)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        shown = warnings.showwarning
        assert main(["truth"]) == 0
        assert warnings.showwarning is shown  # restored for the caller
    err = capsys.readouterr().err
    assert "bayes-dgmm truth: ConvergenceWarning: did not converge: 312 nats to go\n" in err
    assert "sklearn/base.py" not in err
