import numpy as np
import pytest

from bayes_dgmm.experiments import benchmark
from bayes_dgmm.experiments.benchmark import load_real, run_benchmark


def test_load_real_preprocesses_as_mixes_and_drops_constant_columns():
    from sklearn.datasets import load_digits

    X, y = load_real("digits")  # raw pixel values, as mixes clustered them
    assert X.shape == (1797, 61)  # 3 of the 64 pixels are constant
    raw = load_digits().data
    np.testing.assert_array_equal(X, raw[:, raw.std(axis=0) > 0])
    assert set(np.unique(y)) == set(range(10))
    W, _ = load_real("wine")  # standardised
    np.testing.assert_allclose(W.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(W.std(axis=0), 1, atol=1e-12)
    with pytest.raises(ValueError, match="data set 'mnist' is not one of"):
        load_real("mnist")


def test_benchmark_on_iris_scores_and_resumes(tmp_path, monkeypatch):
    # one candidate architecture keeps the BIC step short
    monkeypatch.setattr(benchmark, "architecture_grid", lambda k, j: [((k, 1), (2, 1))])
    rows = run_benchmark(tmp_path, data=["iris"], methods=["kmeans", "gmm"], seeds=2)
    by = {r["method"]: r for r in rows}
    # standardised iris: k-means ARI about 0.62, a 3-component GMM about 0.9 (literature)
    assert 0.55 < by["kmeans"]["ari_mean"] < 0.7
    assert by["gmm"]["ari_mean"] > 0.75
    assert by["gmm"]["model"].startswith("GMM ")
    assert "mixes" not in by["kmeans"]  # mixes published no iris figure
    stored = sorted((tmp_path / "runs").glob("bench-iris-*.json"))
    assert len(stored) == 4
    stamps = [p.stat().st_mtime_ns for p in stored]
    again = run_benchmark(tmp_path, data=["iris"], methods=["kmeans", "gmm"], seeds=2)
    assert again == rows
    assert [p.stat().st_mtime_ns for p in stored] == stamps
    assert "mean (sd) over seeds" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="methods contains 'svm'"):
        run_benchmark(tmp_path, data=["iris"], methods=["svm"])


def test_a_diverged_advi_run_is_recorded_as_failed(tmp_path, monkeypatch):
    from bayes_dgmm._validation import FitError

    monkeypatch.setattr(benchmark, "architecture_grid", lambda k, j: [((k, 1), (2, 1))])

    def diverge(*args):
        raise FitError("method='advi' diverged: its step gave NaN parameters after 7 of n=9")

    monkeypatch.setattr(benchmark, "_advi", diverge)
    rows = run_benchmark(tmp_path, data=["iris"], methods=["kmeans", "advi"], seeds=2)
    by = {r["method"]: r for r in rows}
    assert by["advi"]["failed"] == 2 and by["advi"]["converged"] == 0
    assert np.isnan(by["advi"]["ari_mean"])
    assert by["kmeans"]["failed"] == 0 and 0.55 < by["kmeans"]["ari_mean"] < 0.7
