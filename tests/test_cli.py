import json
import re

import numpy as np
import pytest

from bayes_dgmm.cli import main


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
        ("a,b\n1,2\n3,x\n", "cell 'x' at data row 2, column 2 is not a number"),
        ("a,b\n1,2\n3,nan\n", "NaN or infinite"),
        ("a,b\n1,2\n3\n", "different numbers of cells"),
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
