import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bayes_dgmm.experiments._store import RunStore, inputs_digest, run_all, run_key
from bayes_dgmm.experiments.datasets import make_dgmm_data
from bayes_dgmm.experiments.reproduce import reproduce
from bayes_dgmm.experiments.study import ExperimentSettings, run_seed


def _square(x):
    return {"value": x * x}


def test_run_store_resumes_and_skips(tmp_path):
    store = RunStore(tmp_path)
    calls = []

    def progress(done, total):
        calls.append((done, total))

    res = run_all(store, [(f"k{i}", {"x": i}) for i in range(3)], _square, progress=progress)
    assert [res[f"k{i}"]["value"] for i in range(3)] == [0, 1, 4]
    # a run finished earlier with the same inputs is never recomputed
    store.save(run_key("k3", _square, {"x": 3}), {"value": -1})
    res = run_all(store, [(f"k{i}", {"x": i}) for i in range(4)], _square)
    assert res["k3"]["value"] == -1
    with pytest.raises(ValueError, match="may only hold"):
        store.path("a/b")
    (tmp_path / "runs" / "bad.json").write_text('{"value": ')
    with pytest.raises(ValueError, match="delete it and rerun"):
        store.load("bad")


def _slow_square(x):
    time.sleep(0.5 + 0.5 * x)
    return {"value": x * x}


_KILLED_PARENT = """
import sys
from bayes_dgmm.experiments._store import RunStore, run_all
from tests.experiments.test_study import _slow_square
run_all(RunStore(sys.argv[1]), [(f"k{i}", {"x": i}) for i in range(6)], _slow_square, n_jobs=2)
"""


def test_workers_of_a_killed_parent_write_nothing(tmp_path):
    # The parent writes every result; its workers only compute. Killed after its first
    # finished run, nothing more appears in the store, although two workers were busy.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_PARENT, str(tmp_path)], cwd=root)
    runs = tmp_path / "runs"
    deadline = time.time() + 120
    while time.time() < deadline and not (runs.is_dir() and any(runs.glob("*.json"))):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = sorted(p.name for p in runs.glob("*.json"))
    assert 1 <= len(written) < 6
    time.sleep(4.0)  # the busy workers' runs (<= 3.5 s each) finish meanwhile
    assert sorted(p.name for p in runs.glob("*.json")) == written


def test_a_run_of_other_inputs_is_recomputed_not_reused(tmp_path):
    store = RunStore(tmp_path)
    X = np.arange(6.0).reshape(3, 2)
    assert run_all(store, [("k", {"x": 2})], _square)["k"]["value"] == 4
    # same name, other inputs: computed afresh, and both runs are kept apart on disk
    assert run_all(store, [("k", {"x": 3})], _square)["k"]["value"] == 9
    assert run_all(store, [("k", {"x": 2})], _square)["k"]["value"] == 4
    assert len(store.keys()) == 2
    # arrays count by their bytes, dtype and shape
    assert inputs_digest(X=X) != inputs_digest(X=X + 1e-12)
    assert inputs_digest(X=X) != inputs_digest(X=X.reshape(2, 3))
    assert inputs_digest(X=X) == inputs_digest(X=X.copy())
    with pytest.raises(ValueError, match="same run name twice"):
        run_all(store, [("k", {"x": 2}), ("k", {"x": 3})], _square)


def test_reproduce_into_a_used_folder_recomputes_for_new_inputs(tiny, tmp_path):
    settings = ExperimentSettings(n_runs=1, n_mutual=2, max_iter=3, algorithms=("exact",))
    out = tmp_path / "out"
    first = reproduce(tiny.X, (2, 2), (2, 1), out, settings, sections=("3.3",))
    other = make_dgmm_data(200, 5, (2, 2), (2, 1), random_state=1, separation=5.0)
    second = reproduce(other.X, (2, 2), (2, 1), out, settings, sections=("3.3",))
    lls = [r["best_loglik"] for r in first["sec33_summary"]]
    assert lls != [r["best_loglik"] for r in second["sec33_summary"]]
    seeded = ExperimentSettings(n_runs=1, n_mutual=2, max_iter=3, algorithms=("exact",), seed=5)
    third = reproduce(tiny.X, (2, 2), (2, 1), out, seeded, sections=("3.3",))
    assert lls != [r["best_loglik"] for r in third["sec33_summary"]]


def test_run_seed_is_deterministic():
    assert run_seed(0, 33, 1, 5) == run_seed(0, 33, 1, 5)
    assert run_seed(0, 33, 1, 5) != run_seed(0, 33, 1, 6)


@pytest.fixture(scope="module")
def tiny():
    return make_dgmm_data(240, 5, (2, 2), (2, 1), random_state=3, separation=5.0)


def test_reproduce_tiny_writes_everything_and_resumes(tiny, tmp_path):
    settings = ExperimentSettings(n_runs=2, n_mutual=3, max_iter=4, g1_grid=(2, 3), seed=1)
    out = tmp_path / "out"
    res = reproduce(tiny.X, (2, 2), (2, 1), out, settings, labels=tiny.labels)
    for name in (
        "report.md",
        "table1.csv",
        "table2.csv",
        "table3.csv",
        "fig2_first_layer_ari.png",
        "fig3_global_ari.png",
        "fig4_bic_by_iteration.png",
        "fig5_mutual_ari_exact.png",
        "fig5_mutual_ari_stochastic.png",
    ):
        assert (out / name).is_file(), name
    runs = sorted((out / "runs").glob("*.json"))
    # sec 3.2: 2 runs x (2 algorithms x 2 G + 2 GMM); sec 3.3: 3 starts x 2 algorithms + 2 GMM
    assert len(runs) == 2 * (2 * 2 + 2) + 3 * 2 + 2
    assert [r["method"] for r in res["table1"]][:3] == [
        "stochastic (ours)",
        "exact (ours)",
        "GMM VVV (ours)",
    ]
    stamps = {p.name: p.stat().st_mtime_ns for p in runs}
    again = reproduce(tiny.X, (2, 2), (2, 1), out, settings, labels=tiny.labels)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == stamps
    assert json.dumps(again["table3"]) == json.dumps(res["table3"])
    # every stored ARI is a real number in [-1, 1] computed against the truth
    for row in res["table3"]:
        assert -1 <= row["ari_path"] <= 1


def _cli(args, **kw):
    cmd = [sys.executable, "-m", "bayes_dgmm.experiments.cli", *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def test_reproduce_survives_sigkill(tiny, tmp_path):
    np.savetxt(tmp_path / "X.csv", tiny.X, delimiter=",")
    np.savetxt(tmp_path / "labels.csv", tiny.labels, delimiter=",", fmt="%d")
    spec = tmp_path / "tiny.toml"
    spec.write_text("[architecture]\nn_components = [2, 2]\nn_factors = [2, 1]\n")
    common = [
        "reproduce",
        "--data",
        str(tmp_path / "X.csv"),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--spec",
        str(spec),
        "--runs",
        "2",
        "--mutual-runs",
        "4",
        "--max-iter",
        "4",
        "--sections",
        "3.3",
        "--n-jobs",
        "1",
        "--quiet",
    ]
    killed = tmp_path / "killed"
    for _ in range(3):
        proc = _cli([*common, "--out", str(killed)])
        deadline = time.time() + 60
        runs_dir = killed / "runs"
        before = len(list(runs_dir.glob("*.json"))) if runs_dir.is_dir() else 0
        while time.time() < deadline and proc.poll() is None:
            if runs_dir.is_dir() and len(list(runs_dir.glob("*.json"))) > before:
                break
            time.sleep(0.05)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for p in runs_dir.glob("*.json"):
            json.loads(p.read_text())  # no truncated result is ever left behind
    done_before = {p.name: p.stat().st_mtime_ns for p in (killed / "runs").glob("*.json")}
    assert _cli([*common, "--out", str(killed)]).wait() == 0
    for name, stamp in done_before.items():
        assert (killed / "runs" / name).stat().st_mtime_ns == stamp  # not recomputed
    clean = tmp_path / "clean"
    assert _cli([*common, "--out", str(clean)]).wait() == 0
    a = (killed / "table3.csv").read_text()
    b = (clean / "table3.csv").read_text()
    assert a == b
