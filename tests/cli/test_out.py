"""The output folder: no input file, no file of another run and no file that bayes-dgmm did
not write is written over; an empty --out is refused."""

import pytest

from bayes_dgmm.experiments.cli import main

SIM = ["simulate", "--spec", "mfa-2layer", "--n-samples", "40", "--quiet"]


def _run(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.fixture
def sim(tmp_path):
    out = tmp_path / "sim"
    assert main([*SIM, "--seed", "1", "--out", str(out)]) == 0
    return out


def _fit(sim, out, *extra):
    return [
        "fit",
        *("--data", str(sim / "X.csv"), "--spec", "mfa-2layer", "--method", "gmm", "--quick"),
        *("--out", str(out), "--quiet", *extra),
    ]


def test_fit_does_not_write_over_its_labels(sim, capsys):
    truth = (sim / "labels.csv").read_bytes()
    code, err = _run(_fit(sim, sim, "--labels", str(sim / "labels.csv")), capsys)
    assert code == 2 and "writes labels.csv, which is its input --labels=" in err, err
    code, err = _run(_fit(sim, sim, "--labels", str(sim / "labels.csv"), "--overwrite"), capsys)
    assert code == 2 and "which is its input --labels=" in err, err
    assert (sim / "labels.csv").read_bytes() == truth
    # without --labels, simulate's labels.csv is another run's file
    code, err = _run(_fit(sim, sim), capsys)
    assert code == 2 and "holds labels.csv of another run (`bayes-dgmm simulate`)" in err
    assert (sim / "labels.csv").read_bytes() == truth


def test_empty_out_is_refused(sim, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _run(_fit(sim, ""), capsys)
    assert code == 2 and "--out: empty; give a folder" in err, err
    assert not (tmp_path / "fit.json").exists()


def test_simulate_keeps_files_it_did_not_write_and_other_runs(tmp_path, sim, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "X.csv").write_text("my,data\n1,2\n")
    code, err = _run([*SIM, "--seed", "1", "--out", str(mine)], capsys)
    assert code == 2 and "holds X.csv, which bayes-dgmm did not write" in err, err
    assert (mine / "X.csv").read_text() == "my,data\n1,2\n"
    first = (sim / "X.csv").read_bytes()
    assert main([*SIM, "--seed", "1", "--out", str(sim)]) == 0  # a rerun of the same run
    assert (sim / "X.csv").read_bytes() == first
    code, err = _run([*SIM, "--seed", "2", "--out", str(sim)], capsys)
    assert code == 2 and "holds X.csv, labels.csv, params.json of another run" in err, err
    assert (sim / "X.csv").read_bytes() == first
    assert main([*SIM, "--seed", "2", "--out", str(sim), "--overwrite"]) == 0
    assert (sim / "X.csv").read_bytes() != first


def test_a_rerun_of_fit_writes_over_its_own_files(tmp_path, sim, capsys):
    out = tmp_path / "o"
    assert main(_fit(sim, out)) == 0
    before = (out / "fit.json").read_text()
    assert main(_fit(sim, out)) == 0
    assert (out / "fit.json").read_text().split('"seconds"')[0] == before.split('"seconds"')[0]
    code, err = _run(_fit(sim, out, "--seed", "3"), capsys)
    assert code == 2 and "of another run (`bayes-dgmm fit` with other inputs)" in err, err


def test_overwrite_removes_the_replaced_run_s_other_files(tmp_path, sim, capsys):
    out = tmp_path / "o"
    budget = ["--budget", "em_restarts=1", "em_max_iter=5"]
    exact = _fit(sim, out, *budget)
    exact[exact.index("gmm")] = "exact"
    assert main(exact) == 0
    assert (out / "params.json").is_file()
    code, err = _run(_fit(sim, out), capsys)
    assert code == 2 and "of another run (`bayes-dgmm fit` with other inputs)" in err, err
    assert main(_fit(sim, out, "--overwrite")) == 0
    # the GMM has no DGMM parameters: the exact fit's params.json is not left beside its labels
    assert not (out / "params.json").exists()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "fit.json",
        "fit.png",
        "labels.csv",
        "report.md",
    ]
