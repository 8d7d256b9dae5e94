"""Restarts and `reproduce` on a Dask cluster give the local run's results."""

from __future__ import annotations

import numpy as np
import pytest

distributed = pytest.importorskip("dask.distributed")

from joblib import parallel_config  # noqa: E402

from bayes_dgmm import DeepGaussianMixture  # noqa: E402
from bayes_dgmm.experiments.cli import main  # noqa: E402
from bayes_dgmm.experiments.datasets import make_dgmm_data  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as local:
        yield local


@pytest.fixture(scope="module")
def tiny():
    return make_dgmm_data(240, 5, (2, 2), (2, 1), random_state=3, separation=5.0)


def test_restarts_on_dask_equal_the_local_run(cluster, tiny):
    kw = dict(n_factors=(2, 1), n_init=3, max_iter=20, n_jobs=2, random_state=4)
    local = DeepGaussianMixture((2, 2), **kw).fit(tiny.X)
    with distributed.Client(cluster) as client, parallel_config(backend="dask"):
        with distributed.get_task_stream(client) as stream:
            remote = DeepGaussianMixture((2, 2), **kw).fit(tiny.X)
    # the restarts ran as tasks on the cluster's workers, not in this process
    workers = {task["worker"] for task in stream.data}
    assert len(stream.data) >= 3 and workers <= set(cluster.scheduler_info["workers"])
    assert remote.lower_bound_ == local.lower_bound_
    remote_values, local_values = remote.params_.to_named(), local.params_.to_named()
    assert remote_values.keys() == local_values.keys()
    for name, value in local_values.items():
        np.testing.assert_array_equal(remote_values[name], value)


def test_reproduce_with_a_scheduler_writes_the_local_tables(cluster, tiny, tmp_path):
    np.savetxt(tmp_path / "X.csv", tiny.X, delimiter=",")
    np.savetxt(tmp_path / "labels.csv", tiny.labels, delimiter=",", fmt="%d")
    spec = tmp_path / "tiny.toml"
    spec.write_text("[architecture]\nn_components = [2, 2]\nn_factors = [2, 1]\n")
    common = [
        "reproduce",
        *("--data", str(tmp_path / "X.csv"), "--labels", str(tmp_path / "labels.csv")),
        *("--spec", str(spec), "--runs", "2", "--mutual-runs", "3", "--max-iter", "4"),
        *("--sections", "3.3", "--n-jobs", "2", "--quiet"),
    ]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    address = cluster.scheduler_address
    assert main([*common, "--out", str(tmp_path / "dask"), "--scheduler", address]) == 0
    for table in ("table2.csv", "table3.csv"):
        local = (tmp_path / "local" / table).read_text()
        assert local and (tmp_path / "dask" / table).read_text() == local


def test_a_scheduler_that_does_not_answer_is_a_clear_error(tmp_path, capsys):
    argv = ["reproduce", "--spec", "mfa-2layer", "--quick", "--out", str(tmp_path / "o")]
    assert main([*argv, "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "no Dask scheduler answers there" in err and "Traceback" not in err
