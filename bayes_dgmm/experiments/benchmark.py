"""Clustering benchmark on real data that ships with scikit-learn (no download).

For each data set (constant columns dropped; standardised column by column except digits,
whose raw pixel values are kept: the preprocessing ``mixes`` used for its figures): the DGMM
architecture is chosen by BIC
(:func:`~bayes_dgmm.em.estimator.select_architecture`) among a small grid whose first layer
has as many components as there are classes (k-means and ``mixes`` are given that number
too; the labels are used for nothing else but scoring). Then, for every seed: k-means,
scikit-learn's ``GaussianMixture`` (covariance type chosen by BIC), the exact EM, the
study's stochastic EM and one Bayesian method started from the exact EM's fit, each scored
by the ARI of its partition (layer 1 for the DGMMs) against the classes. Each finished
(data set, method, seed) is saved at once, so an interrupted benchmark resumes.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm._validation import FitError
from bayes_dgmm._version import __version__
from bayes_dgmm.experiments._store import RunStore, inputs_digest

log = logging.getLogger(__name__)

Array = NDArray[np.float64]

#: data set -> (scikit-learn loader name, number of classes)
REAL_DATA: dict[str, tuple[str, int]] = {
    "wine": ("load_wine", 3),
    "iris": ("load_iris", 3),
    "breast_cancer": ("load_breast_cancer", 2),
    "digits": ("load_digits", 10),
}
#: Data sets not standardised: ``mixes`` clustered digits' raw pixel values (0-16).
RAW_DATA = frozenset({"digits"})
#: The methods of the benchmark, in table order.
BENCH_METHODS = ("kmeans", "gmm", "exact", "stochastic", "advi")
#: Published mean ARI over 10 runs of the ``mixes`` package (its README and notebook
#: ``experiments/clustering-experiment.ipynb``: wine standardised, digits raw, k-means
#: starts).
ANCHORS: dict[str, dict[str, float]] = {
    "wine": {"mixes DGMM": 0.975, "mixes GMM": 0.946, "mixes k-means": 0.873},
    "digits": {"mixes DGMM": 0.698, "mixes GMM": 0.641, "mixes k-means": 0.633},
}


def load_real(name: str) -> tuple[Array, NDArray[np.intp]]:
    """Observations (constant columns dropped; standardised unless in :data:`RAW_DATA`)
    and classes of a data set."""
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler

    if name not in REAL_DATA:
        raise ValueError(f"data set {name!r} is not one of {list(REAL_DATA)}.")
    bunch = getattr(datasets, REAL_DATA[name][0])()
    X = np.asarray(bunch.data, dtype=np.float64)
    X = X[:, X.std(axis=0) > 0]
    if name not in RAW_DATA:
        X = StandardScaler().fit_transform(X)
    return X, np.asarray(bunch.target, dtype=np.intp)


def architecture_grid(
    n_classes: int, n_features: int
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Two-layer candidates: layer 1 with ``n_classes`` components, layer 2 with 1 or 2,
    and (R1, 1) factors for R1 in 2..3 (below the number of features)."""
    return [((n_classes, g2), (r1, 1)) for g2 in (1, 2) for r1 in (2, 3) if r1 < n_features]


def run_benchmark(
    out: str | Path,
    *,
    data: Sequence[str] = tuple(REAL_DATA),
    methods: Sequence[str] = BENCH_METHODS,
    seeds: int = 10,
    advi_iterations: int = 10000,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the benchmark into ``out`` (``runs/``, ``benchmark.csv``, ``summary.csv``,
    ``report.md``); returns the summary rows (mean, sd of ARI per data set and method)."""
    from bayes_dgmm.experiments.report import Report, write_csv

    bad = [m for m in methods if m not in BENCH_METHODS]
    if bad:
        raise ValueError(f"methods contains {bad[0]!r}; choose from {list(BENCH_METHODS)}.")
    for name in data:
        if name not in REAL_DATA:
            raise ValueError(f"data contains {name!r}; choose from {list(REAL_DATA)}.")
    store = RunStore(out)
    rows: list[dict[str, Any]] = []
    selections: dict[str, dict[str, Any]] = {}
    for name in data:
        X, y = load_real(name)
        # the raw data sets' runs differ from the standardised ones stored before
        raw = {"preprocessing": "raw"} if name in RAW_DATA else {}
        key = f"select-{name}-{inputs_digest(data=name, version=__version__, **raw)[:16]}"
        if not store.done(key):
            if progress:
                progress(f"{name}: choosing the architecture by BIC")
            store.save(key, _select(X, REAL_DATA[name][1]))
        selections[name] = store.load(key)
        G, R = tuple(selections[name]["n_components"]), tuple(selections[name]["n_factors"])
        gmm_type = str(selections[name]["gmm_covariance_type"])
        for method in methods:
            for seed in range(seeds):
                digest = inputs_digest(
                    data=name,
                    **raw,
                    method=method,
                    seed=seed,
                    G=G,
                    R=R,
                    gmm=gmm_type,
                    advi_iterations=advi_iterations,
                    version=__version__,
                )
                key = f"bench-{name}-{method}-{seed}-{digest[:16]}"
                if not store.done(key):
                    if progress:
                        progress(f"{name}: {method}, seed {seed}")
                    row = _run_one(method, X, y, G, R, gmm_type, seed, advi_iterations)
                    store.save(key, row)
                rows.append({"data": name, "method": method, "seed": seed, **store.load(key)})
    out = Path(out)
    write_csv(out / "benchmark.csv", rows)
    summary = summarise_benchmark(rows, selections)
    write_csv(out / "summary.csv", summary)
    report = Report("Clustering benchmark on scikit-learn's data sets")
    report.section(
        "Setting",
        "Constant columns dropped; wine, iris and breast_cancer standardised, digits on its "
        "raw pixel values, as `mixes` did. DGMM architectures chosen by BIC with "
        "layer 1 at the number of classes; GaussianMixture's covariance type by BIC. ARI of "
        "the partition (DGMMs: layer 1) against the classes; mean (sd) over seeds. "
        "`converged` counts the fits whose own criterion held. `mixes` is the published "
        "mean ARI of that package's DGMM / GMM / k-means.",
    )
    report.table(summary)
    report.write(out)
    return summary


def _select(X: Array, n_classes: int) -> dict[str, Any]:
    """BIC choice of the DGMM architecture and of GaussianMixture's covariance type."""
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    from bayes_dgmm.em.estimator import select_architecture

    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = select_architecture(
            X, architecture_grid(n_classes, X.shape[1]), random_state=0, n_init=1
        )
        types = ("full", "tied", "diag", "spherical")
        bics = {
            t: GaussianMixture(n_classes, covariance_type=t, n_init=4, random_state=0).fit(X).bic(X)
            for t in types
        }
    best = table[table["selected"]].iloc[0]
    return {
        "n_components": [int(g) for g in best["n_components"]],
        "n_factors": [int(r) for r in best["n_factors"]],
        "grid": [
            {
                "n_components": [int(g) for g in r["n_components"]],
                "n_factors": [int(f) for f in r["n_factors"]],
                "bic": float(r["bic"]),
                "converged": bool(r["converged"]),
            }
            for _, r in table.iterrows()
        ],
        "gmm_covariance_type": min(bics, key=bics.__getitem__),
        "gmm_bic": {t: float(b) for t, b in bics.items()},
    }


def _run_one(
    method: str,
    X: Array,
    y: NDArray[np.intp],
    G: tuple[int, ...],
    R: tuple[int, ...],
    gmm_type: str,
    seed: int,
    advi_iterations: int,
) -> dict[str, Any]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    from bayes_dgmm import DeepGaussianMixture

    t0 = time.perf_counter()
    row: dict[str, Any] = {}
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "kmeans":
            labels = KMeans(len(np.unique(y)), n_init=10, random_state=seed).fit_predict(X)
            row["converged"] = True
        elif method == "gmm":
            gm = GaussianMixture(
                len(np.unique(y)), covariance_type=gmm_type, n_init=1, random_state=seed
            ).fit(X)
            labels, row["converged"] = gm.predict(X), bool(gm.converged_)
        elif method in ("exact", "stochastic"):
            kw: dict[str, Any] = (
                {"algorithm": "stochastic", "init": "random"} if method == "stochastic" else {}
            )
            est = DeepGaussianMixture(G, n_factors=R, random_state=seed, **kw).fit(X)
            labels, row["converged"] = est.predict(X, layer=1), bool(est.converged_)
            row["log_likelihood"] = float(est.score(X) * X.shape[0])
        else:
            try:
                labels, extra = _advi(X, G, R, seed, advi_iterations)
            except FitError as exc:  # recorded as a failed run; the others go on
                labels, extra = None, {"converged": False, "failed": str(exc)}
            row.update(extra)
    row["ari"] = float("nan") if labels is None else float(adjusted_rand_score(y, labels))
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def _advi(
    X: Array, G: tuple[int, ...], R: tuple[int, ...], seed: int, iterations: int
) -> tuple[NDArray[np.intp], dict[str, Any]]:
    """ADVI from the exact EM's fit of the same seed; its layer-1 partition, convergence
    and PSIS-LOO."""
    from bayes_dgmm import DeepGaussianMixture
    from bayes_dgmm.bayes.estimator import BayesianDeepGaussianMixture
    from bayes_dgmm.diagnostics.stacking import loo_summary

    em = DeepGaussianMixture(G, n_factors=R, random_state=seed).fit(X)
    est = BayesianDeepGaussianMixture(G, n_factors=R, random_seed=seed)
    est.fit(X, method="advi", init=em, n=iterations, draws=400)
    loo = loo_summary(est.idata_)
    return est.predict(X, layer=1), {
        "converged": bool(est.converged_),
        "log_likelihood": float(est.params_.score(X)),
        "elpd_loo": loo["elpd_loo"],
        "pareto_k_max": loo["pareto_k_max"],
    }


def summarise_benchmark(
    rows: Sequence[Mapping[str, Any]], selections: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Mean and sd of ARI per data set and method, with the anchors of the same data."""
    out = []
    for name in dict.fromkeys(r["data"] for r in rows):
        sel = selections[name]
        for method in dict.fromkeys(r["method"] for r in rows if r["data"] == name):
            sub = [r for r in rows if r["data"] == name and r["method"] == method]
            ari = np.array([r["ari"] for r in sub if not r.get("failed")])
            entry: dict[str, Any] = {
                "data": name,
                "method": method,
                "model": _model_label(method, sel),
                "runs": len(sub),
                "failed": int(sum(bool(r.get("failed")) for r in sub)),
                "converged": int(sum(bool(r.get("converged")) for r in sub)),
                "ari_mean": round(float(ari.mean()), 3) if ari.size else float("nan"),
                "ari_sd": round(float(ari.std(ddof=1)) if ari.size > 1 else 0.0, 3),
                "seconds_median": round(float(np.median([r["seconds"] for r in sub])), 1),
            }
            if method == "advi":
                elpd = [r["elpd_loo"] for r in sub if np.isfinite(r.get("elpd_loo", np.nan))]
                if elpd:
                    entry["elpd_loo_mean"] = round(float(np.mean(elpd)), 1)
            anchor = ANCHORS.get(name, {})
            key = {"exact": "mixes DGMM", "gmm": "mixes GMM", "kmeans": "mixes k-means"}
            if key.get(method) in anchor:
                entry["mixes"] = anchor[key[method]]
            out.append(entry)
    return out


def _model_label(method: str, sel: Mapping[str, Any]) -> str:
    if method == "kmeans":
        return "k-means"
    if method == "gmm":
        return f"GMM {sel['gmm_covariance_type']}"
    arch = f"G={tuple(sel['n_components'])} R={tuple(sel['n_factors'])}"
    return f"DGMM {arch}"
