"""One clear line for the input mistakes and interruptions a user meets: labels written by
`fit`, a single-column CSV, an --out that cannot be made, Ctrl-C, a sample too large."""

import signal
import time

import numpy as np
import pytest

import bayes_dgmm.experiments.cli as cli
from bayes_dgmm.experiments.cli import main
from bayes_dgmm.experiments.cli_io import read_labels
from bayes_dgmm.model.spec import load_spec


def test_labels_written_by_fit_read_back_by_their_names(tmp_path):
    # fit writes path,layer_1,layer_2 (path first); simulate writes layer1,layer2,path
    path = tmp_path / "labels.csv"
    path.write_text("path,layer_1,layer_2\n3,1,1\n0,0,0\n2,1,0\n1,0,1\n")
    got = read_labels(path, np.zeros((4, 5)), load_spec("mfa-2layer"))
    np.testing.assert_array_equal(got, [[1, 1], [0, 0], [1, 0], [0, 1]])
    path.write_text("layer2,path,layer1\n1,3,1\n0,0,0\n0,2,1\n1,1,0\n")
    got = read_labels(path, np.zeros((4, 5)), load_spec("mfa-2layer"))
    np.testing.assert_array_equal(got, [[1, 1], [0, 0], [1, 0], [0, 1]])
    path.write_text("layer_1,layer_3\n1,1\n0,0\n1,0\n0,1\n")
    with pytest.raises(ValueError, match=r"names the layer columns \[1, 3\]; the spec has"):
        read_labels(path, np.zeros((4, 5)), load_spec("mfa-2layer"))


def test_single_column_csv(tmp_path, capsys):
    data = tmp_path / "X.csv"
    data.write_text("x\n" + "\n".join(f"{i}.5" for i in range(20)) + "\n")
    argv = ["fit", "--data", str(data), "--spec", "mfa-2layer", "--method", "gmm"]
    assert main([*argv, "--quick", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "has a single column; a DGMM needs two features or more" in err, err
    # cells separated by spaces are one text cell
    data.write_text("a b c\n" + "\n".join(f"{i}.5 {i}.25 {i}" for i in range(20)) + "\n")
    assert main([*argv, "--quick", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "separate cells by commas, tabs or semicolons, not spaces" in err, err


def test_benchmark_out_that_cannot_be_made(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    argv = ["benchmark", "--datasets", "iris", "--methods", "kmeans", "--seeds", "1"]
    assert main([*argv, "--out", str(tmp_path / "file" / "sub"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out='" in err and "cannot be created" in err, err


def test_interrupted_fit_does_not_promise_saved_runs(tmp_path, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_method", interrupt)
    assert main(["fit", "--method", "exact", "--quick", "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err
    assert "interrupted; its results were not written" in err and "resume" not in err


def test_ctrl_c_in_a_garbage_collector_callback_interrupts_cleanly(capsys, monkeypatch):
    class RaisesOnCollect:
        def __del__(self):
            raise KeyboardInterrupt  # as a Ctrl-C landing in JAX's gc callback

    def command(args):
        obj = RaisesOnCollect()
        del obj  # the interrupt is "ignored" by Python, and passed on by the CLI's hook
        for _ in range(1000):
            time.sleep(0.001)
        raise AssertionError("the interrupt did not reach the command")

    monkeypatch.setattr(cli, "_truth", command)
    # a process started in the background by a non-interactive shell inherits SIGINT
    # ignored, and then no interrupt reaches Python; the test is about the hook, so it runs
    # with Python's own handler whatever the parent shell did
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main(["truth"]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert "Exception ignored" not in err and "interrupted" in err, err


def test_simulate_too_many_samples_is_one_line(tmp_path, capsys):
    argv = ["simulate", "--spec", "mfa-2layer", "--n-samples", "10000000000"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--n-samples=10000000000: 10000000000 rows" in err, err
    assert "GiB, more than this machine's" in err
