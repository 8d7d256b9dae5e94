"""The experiments of Selosse et al. (2020), sec. 3, as library code.

- :func:`run_section32`: first-layer model selection. For each of ``n_runs`` runs, the DGMM
  from one random start with ``G_1`` in 2..6 (other layers at the truth) and a full-covariance
  GMM (scikit-learn's ``GaussianMixture``, the study's mclust ``VVV``) with ``G`` in 2..6; the
  ``G`` chosen by BIC per run (Table 1) and the first-layer ARI of the best-BIC fits
  (Figure 2).
- :func:`run_section33`: the global GMM. ``n_runs`` random starts at the true architecture:
  global ARI (Figure 3), BIC by iteration (Figure 4), mutual ARI of ``n_mutual`` starts
  (Figure 5), non-empty paths per run (Table 2), ARI per layer (Table 3), next to a GMM with
  as many components as paths.

Every DGMM experiment runs for each requested EM ``algorithm`` ("stochastic": the study's;
"exact": the marginal-likelihood EM) side by side. Every finished run is written to disk at
once (:class:`~bayes_dgmm.experiments._store.RunStore`); a rerun skips finished runs.

BIC follows scikit-learn's sign: ``-2 log L + k log N``, smaller is better (mclust reports the
negative of it and maximises).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm.diagnostics.metrics import layer_aris, n_occupied
from bayes_dgmm.diagnostics.modes import mode_census
from bayes_dgmm.experiments._store import RunStore, run_all
from bayes_dgmm.experiments.methods import EM_METHODS, fit_single_em
from bayes_dgmm.model.paths import path_index, path_table

log = logging.getLogger(__name__)

Array = NDArray[np.float64]

#: The study's algorithms, in the order of its tables.
ALGORITHMS = EM_METHODS
_ALG_ID = {"stochastic": 1, "exact": 2, "gmm": 3}


def run_seed(base_seed: int, *parts: int) -> int:
    """A seed for one run, derived from the experiment's seed and the run's coordinates.

    Independent of the order or the number of workers that run it.
    """
    return int(np.random.SeedSequence([base_seed, *parts]).generate_state(1)[0])


def fit_dgmm_run(
    X: Array,
    n_components: Sequence[int],
    n_factors: Sequence[int],
    algorithm: str,
    seed: int,
    max_iter: int,
    stopping: str,
    init: str,
    labels: NDArray[np.intp] | None = None,
) -> dict[str, Any]:
    """One DGMM fit from one start; the summary that an experiment stores."""
    t0 = time.perf_counter()
    est = fit_single_em(X, n_components, n_factors, algorithm, init, seed, max_iter, stopping)
    seconds = time.perf_counter() - t0
    paths = est.predict(X)
    n_paths = est.params_.n_paths
    out: dict[str, Any] = {
        "method": algorithm,
        "n_components": list(n_components),
        "seed": seed,
        "log_likelihood": float(est.lower_bound_),
        "bic": float(est.bic(X)),
        "n_iter": int(est.n_iter_),
        "converged": bool(est.converged_),
        "seconds": seconds,
        "history_loglik": [float(v) for v in est.history_.log_likelihood],
        "history_bic": [float(v) for v in est.history_.bic],
        "paths": paths.tolist(),
        "occupied_paths": n_occupied(paths, n_paths),
        "occupied_layer_1": n_occupied(est.predict(X, layer=1), est.params_.n_components[0]),
    }
    if labels is not None:
        out.update(_aris(labels, est.params_.paths[paths], n_components))
    return out


def fit_gmm_run(
    X: Array,
    n_components: int,
    seed: int,
    labels: NDArray[np.intp] | None = None,
    layer_of_truth: int | None = None,
    true_n_components: Sequence[int] | None = None,
) -> dict[str, Any]:
    """One full-covariance GMM fit (one k-means++ start, on standardised data, so that its
    absolute ``reg_covar`` does not depend on the data's units); the stored summary.

    With ``layer_of_truth`` the GMM's clusters are scored against that layer's labels (the
    study's Figure 2 compares GMM clusters with the first layer); otherwise against the paths.
    """
    from bayes_dgmm.experiments._gmm import ScaledGaussianMixture

    gmm = ScaledGaussianMixture(
        n_components,
        covariance_type="full",
        init_params="k-means++",
        random_state=seed,
        max_iter=500,
        reg_covar=1e-6,
    )
    t0 = time.perf_counter()
    gmm.fit(X)
    seconds = time.perf_counter() - t0
    pred = gmm.predict(X)
    out: dict[str, Any] = {
        "method": "gmm",
        "n_components": [n_components],
        "seed": seed,
        "log_likelihood": gmm.log_likelihood(X),
        "bic": float(gmm.bic(X)),
        "n_iter": int(gmm.n_iter_),
        "converged": bool(gmm.converged_),
        "seconds": seconds,
        "paths": pred.tolist(),
        "occupied_paths": n_occupied(pred, n_components),
    }
    if labels is not None and true_n_components is not None:
        from sklearn.metrics import adjusted_rand_score

        truth = (
            labels[:, layer_of_truth - 1]
            if layer_of_truth
            else path_index(labels, true_n_components)
        )
        key = f"ari_layer_{layer_of_truth}" if layer_of_truth else "ari_path"
        out[key] = float(adjusted_rand_score(truth, pred))
    return out


def _aris(
    labels: NDArray[np.intp], pred_labels: NDArray[np.intp], n_components: Sequence[int]
) -> dict[str, float]:
    """ARIs against the truth; layers whose architecture differs from the truth's only get
    the per-layer ARI (the path ARI needs the same path enumeration)."""
    out = {}
    true_comps = tuple(int(v) for v in labels.max(axis=0) + 1)
    if tuple(n_components) == true_comps:
        out = {f"ari_{k}": v for k, v in layer_aris(labels, pred_labels, n_components).items()}
    else:
        from sklearn.metrics import adjusted_rand_score

        for l in range(labels.shape[1]):
            out[f"ari_layer_{l + 1}"] = float(adjusted_rand_score(labels[:, l], pred_labels[:, l]))
    return out


@dataclass
class ExperimentSettings:
    """Budgets of the study's experiments.

    n_runs : runs per algorithm (the study: 20)
    n_mutual : random starts for the mutual-ARI census of Figure 5 (the study: 100)
    max_iter : stochastic-EM iterations per run (the study: 200)
    stopping : of the stochastic EM: "fixed" runs max_iter iterations (the study); "auto"
        (or "stationary") stops when its log-likelihood has no drift beyond its noise,
        "deepgmm" by deepgmm's rule
    exact_max_iter, exact_stopping : the exact EM's budget and rule; by default it runs to
        its convergence criterion (Aitken's), as a baseline should
    init : "random" (the study) or "kmeans"
    algorithms : EM algorithms to run side by side
    n_jobs : joblib workers
    seed : base seed of every run
    """

    n_runs: int = 20
    n_mutual: int = 100
    max_iter: int = 200
    stopping: str = "fixed"
    exact_max_iter: int = 2000
    exact_stopping: str = "auto"
    init: str = "random"
    algorithms: tuple[str, ...] = ALGORITHMS
    g1_grid: tuple[int, ...] = (2, 3, 4, 5, 6)
    n_jobs: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_runs", "n_mutual", "max_iter", "exact_max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer.")
        bad = [a for a in self.algorithms if a not in ALGORITHMS]
        if bad:
            raise ValueError(f"algorithms={self.algorithms} contains {bad[0]!r}; use {ALGORITHMS}.")


def _budget(settings: ExperimentSettings, algorithm: str) -> tuple[int, str]:
    """(max_iter, stopping) of one algorithm under ``settings``."""
    if algorithm == "exact":
        return settings.exact_max_iter, settings.exact_stopping
    return settings.max_iter, settings.stopping


def _dgmm_task(
    X: Array,
    n_components: Sequence[int],
    n_factors: Sequence[int],
    algorithm: str,
    seed: int,
    settings: ExperimentSettings,
    labels: NDArray[np.intp] | None,
) -> dict[str, Any]:
    """The keyword arguments of one stored DGMM run (:func:`fit_dgmm_run`); they are also
    the run's inputs in the store's digest."""
    max_iter, stopping = _budget(settings, algorithm)
    return dict(
        X=X,
        n_components=n_components,
        n_factors=n_factors,
        algorithm=algorithm,
        seed=seed,
        max_iter=max_iter,
        stopping=stopping,
        init=settings.init,
        labels=labels,
    )


def run_section32(
    X: Array,
    n_components: Sequence[int],
    n_factors: Sequence[int],
    store: RunStore,
    settings: ExperimentSettings,
    labels: NDArray[np.intp] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Sec. 3.2: model selection of the first layer by BIC (Table 1, Figure 2)."""
    tasks: list[tuple[str, dict[str, Any]]] = []
    for r in range(settings.n_runs):
        for alg in settings.algorithms:
            for g1 in settings.g1_grid:
                comps = (g1, *n_components[1:])
                seed = run_seed(settings.seed, 32, _ALG_ID[alg], g1, r)
                task = _dgmm_task(X, comps, n_factors, alg, seed, settings, labels)
                tasks.append((f"sec32-{alg}-G{g1}-run{r}", task))
        for g in settings.g1_grid:
            tasks.append(
                (
                    f"sec32-gmm-G{g}-run{r}",
                    dict(
                        X=X,
                        n_components=g,
                        seed=run_seed(settings.seed, 32, 3, g, r),
                        labels=labels,
                        layer_of_truth=1,
                        true_n_components=n_components,
                    ),
                )
            )
    results = _run_tasks(store, tasks, progress, settings.n_jobs)
    table1, best = [], []
    for method in (*settings.algorithms, "gmm"):
        for r in range(settings.n_runs):
            fits = [results[f"sec32-{method}-G{g}-run{r}"] for g in settings.g1_grid]
            chosen = min(fits, key=lambda f: f["bic"])
            g_chosen = chosen["n_components"][0]
            table1.append({"method": method, "run": r, "G_chosen": g_chosen})
            best.append(
                {
                    "method": method,
                    "run": r,
                    "G_chosen": g_chosen,
                    "ari_layer_1": chosen.get("ari_layer_1", float("nan")),
                    "bic": chosen["bic"],
                }
            )
    return {"table1": table1, "best_fits": best}


def _section33_tasks(
    X: Array,
    n_components: Sequence[int],
    n_factors: Sequence[int],
    settings: ExperimentSettings,
    labels: NDArray[np.intp] | None,
) -> list[tuple[str, dict[str, Any]]]:
    """Sec. 3.3's stored runs: every algorithm's random starts and the GMM's runs."""
    n_total = max(settings.n_runs, settings.n_mutual)
    n_paths = int(np.prod(n_components))
    tasks: list[tuple[str, dict[str, Any]]] = []
    for r in range(n_total):
        for alg in settings.algorithms:
            seed = run_seed(settings.seed, 33, _ALG_ID[alg], r)
            task = _dgmm_task(X, tuple(n_components), tuple(n_factors), alg, seed, settings, labels)
            tasks.append((f"sec33-{alg}-run{r}", task))
        if r < settings.n_runs:
            tasks.append(
                (
                    f"sec33-gmm-run{r}",
                    dict(
                        X=X,
                        n_components=n_paths,
                        seed=run_seed(settings.seed, 33, 3, r),
                        labels=labels,
                        true_n_components=n_components,
                    ),
                )
            )
    return tasks


def _section33_row(
    method: str, run: int, res: Mapping[str, Any], n_components: Sequence[int]
) -> dict[str, Any]:
    """One run's row of Sec. 3.3's table: its fit, ARIs and occupied paths (and, for a DGMM,
    the occupied components of every layer)."""
    row = {
        "method": method,
        "run": run,
        "log_likelihood": res["log_likelihood"],
        "bic": res["bic"],
        "n_iter": res["n_iter"],
        "seconds": res["seconds"],
        "occupied_paths": res["occupied_paths"],
    }
    row.update({k: v for k, v in res.items() if k.startswith("ari_")})
    if method != "gmm":
        table = path_table(n_components)
        row["occupied_layers"] = [
            n_occupied(table[np.asarray(res["paths"])][:, l], n_components[l])
            for l in range(len(n_components))
        ]
    return row


def run_section33(
    X: Array,
    n_components: Sequence[int],
    n_factors: Sequence[int],
    store: RunStore,
    settings: ExperimentSettings,
    labels: NDArray[np.intp] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Sec. 3.3: random starts at the true architecture (Figures 3-5, Tables 2-3)."""
    tasks = _section33_tasks(X, n_components, n_factors, settings, labels)
    results = _run_tasks(store, tasks, progress, settings.n_jobs)
    runs = [
        _section33_row(method, r, results[f"sec33-{method}-run{r}"], n_components)
        for method in (*settings.algorithms, "gmm")
        for r in range(settings.n_runs)
    ]
    n_total = max(settings.n_runs, settings.n_mutual)
    censuses, mutual = {}, {}
    for alg in settings.algorithms:
        fits = [results[f"sec33-{alg}-run{r}"] for r in range(n_total)]
        parts = np.array([f["paths"] for f in fits])
        census = mode_census(
            parts, n_components, scores=[f["log_likelihood"] for f in fits], reference_labels=labels
        )
        censuses[alg] = census
        mutual[alg] = census.mutual_ari
    histories = {
        alg: [results[f"sec33-{alg}-run{r}"]["history_bic"] for r in range(settings.n_runs)]
        for alg in settings.algorithms
    }
    return {"runs": runs, "censuses": censuses, "mutual_ari": mutual, "bic_histories": histories}


def fit_run(kind: str, **kwargs: Any) -> dict[str, Any]:
    """Dispatch one stored run: ``kind`` is "dgmm" or "gmm"."""
    return fit_gmm_run(**kwargs) if kind == "gmm" else fit_dgmm_run(**kwargs)


def _run_tasks(
    store: RunStore,
    tasks: list[tuple[str, dict[str, Any]]],
    progress: Callable[[int, int], None] | None,
    n_jobs: int,
) -> dict[str, Any]:
    tagged = [(k, {"kind": "gmm" if "-gmm-" in k else "dgmm", **kw}) for k, kw in tasks]
    return run_all(store, tagged, fit_run, n_jobs=n_jobs, progress=progress)
