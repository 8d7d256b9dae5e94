import json

import numpy as np

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
