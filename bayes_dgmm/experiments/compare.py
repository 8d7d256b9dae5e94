"""Compare inference methods on one data set: one table, one figure, a report.

For every method of :data:`~bayes_dgmm.experiments.methods.METHODS` (stochastic EM, exact EM,
GMM, MAP, ADVI, full-rank ADVI, NUTS, nutpie, SMC): the global and per-layer ARI when labels
are known, the log-likelihood and BIC of its point estimate, wall time, the number of distinct
modes among its restarts or chains (partitions with mutual ARI below
:data:`~bayes_dgmm.diagnostics.modes.SAME_MODE_ARI` count as different modes) and the number of
empty global paths.

The exact EM runs first; its best fit starts every Bayesian method except SMC (which starts
from the prior). Each finished method is saved at once in ``runs/`` under a digest of its
inputs (data, labels, spec, method, budget, seed, package version), its fit in
``runs/fits/``, so an interrupted comparison resumes where it stopped, and a comparison of
other inputs into the same folder recomputes rather than reuses (both are kept apart).
``fits/`` and the tables always show the latest call's inputs.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from bayes_dgmm._io import atomic_write
from bayes_dgmm._validation import BudgetError
from bayes_dgmm.diagnostics.metrics import layer_aris, n_occupied
from bayes_dgmm.diagnostics.modes import mode_census
from bayes_dgmm.diagnostics.posterior import ESS_OK, RHAT_OK
from bayes_dgmm.em.driver import STATIONARY_WINDOW, STATIONARY_Z, stationary_drift
from bayes_dgmm.experiments._store import RunStore, inputs_digest
from bayes_dgmm.experiments.methods import (
    DEFAULT_BUDGET,
    METHODS,
    MethodResult,
    check_budget,
    run_method,
)
from bayes_dgmm.experiments.report import Report, save_figure, write_csv
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.paths import path_index, path_table
from bayes_dgmm.model.spec import DGMMSpec

log = logging.getLogger(__name__)

Array = NDArray[np.float64]


def summarise(
    result: MethodResult, spec: DGMMSpec, labels: NDArray[np.intp] | None = None
) -> dict[str, Any]:
    """One row of the comparison table for a method's result."""
    table = path_table(spec.n_components)
    census = mode_census(result.partitions, spec.n_components, scores=result.scores)
    row: dict[str, Any] = {"method": result.method}
    if labels is not None:
        if result.method == "gmm":
            from sklearn.metrics import adjusted_rand_score

            row["ari_path"] = float(
                adjusted_rand_score(path_index(labels, spec.n_components), result.paths)
            )
        else:
            aris = layer_aris(labels, table[result.paths], spec.n_components)
            row.update({f"ari_{k}": v for k, v in aris.items()})
    row.update(
        {
            "converged": result.converged,
            "evidence": convergence_evidence(result),
            "log_likelihood": result.log_likelihood,
            "bic": result.bic,
            "seconds": round(float(result.seconds), 1),
            "n_runs": int(result.partitions.shape[0]),
            "n_modes": census.n_modes,
            "occupied_paths": n_occupied(result.paths, spec.n_paths),
            "empty_paths": spec.n_paths - n_occupied(result.paths, spec.n_paths),
        }
    )
    if "compile_seconds" in result.extra:
        row["compile_s"] = round(float(result.extra["compile_seconds"]), 1)
    for key in ("elpd_loo", "pareto_k_max"):
        # a fit with draws (Bayesian, not MAP) has a PSIS-LOO; EM and MAP have none
        value = result.extra.get(key)
        if value is not None and np.isfinite(value):
            row[key] = float(value)
    return row


def convergence_evidence(result: MethodResult) -> str:
    """The figure a method's convergence was judged by, in a few words."""
    est, method = result.estimator, result.method
    if method == "gmm":
        return "scikit-learn: lower-bound change < tol" + ("" if result.converged else " not met")
    if method in ("stochastic", "exact"):
        # the rule the estimator resolved ("auto" mapped) and measured by
        criterion = est.criterion_
        if criterion == "stationary":
            drift, z = stationary_drift(est.history_.log_likelihood)
            return (
                f"stationary: last {STATIONARY_WINDOW} its' mean moved {drift:.0f} nats, "
                f"z = {z:.1f} (within ±{STATIONARY_Z:g}) after {est.n_iter_} its"
            )
        if criterion in ("newton", "aitken"):
            tol = float(est.tol) * result.paths.size
            if criterion == "newton":
                return f"Newton decrement: {_fig(est.remaining_)} nats (< {_fig(tol)})"
            return f"Aitken: {_fig(est.remaining_)} nats left (< {_fig(tol)})"
        if criterion == "fixed":
            return f"fixed budget of {est.max_iter} its, no criterion"
        return f"{criterion} rule" + ("" if result.converged else f" not met in {est.n_iter_} its")
    conv = result.extra.get("convergence") or {}
    from bayes_dgmm.bayes.backends.laplace import DECREMENT_TOL
    from bayes_dgmm.bayes.backends.mode import MODE_GTOL

    if method == "map":
        return f"largest gradient entry {_fig(conv.get('max_abs_gradient'))} (< {MODE_GTOL:g})"
    if method == "laplace":
        return (
            f"{conv.get('nonpositive_eigenvalues')} negative Hessian eigenvalues (none), "
            f"Newton decrement {_fig(conv.get('newton_decrement'))} (< {DECREMENT_TOL:g})"
        )
    if method == "pathfinder":
        return f"Pareto k {_fig(conv.get('pareto_k'))} (< 0.7)"
    if method in ("advi", "fullrank_advi"):
        return (
            f"ELBO gain over the last window {_fig(conv.get('last_window_gain'))} "
            f"after {conv.get('iterations')} its"
        )
    parts = [
        f"r_hat {_fig(conv.get('max_rhat'), 4)} (< {RHAT_OK})",
        f"ESS bulk {_fig(conv.get('min_ess_bulk'))} (> {ESS_OK}) / tail "
        f"{_fig(conv.get('min_ess_tail'))}",
        f"{conv.get('divergences', 0)} divergences",
    ]
    if "max_tree_depth" in conv:
        parts.append(f"tree depth {conv['max_tree_depth']}")
    if "smc_stages" in conv:
        parts.append(f"{conv['smc_stages']} stages")
    return ", ".join(parts)


def _fig(value: Any, digits: int = 3) -> str:
    """A figure to ``digits`` significant digits ('nan' when missing)."""
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return "nan"


def compare_methods(
    X: Array,
    spec: DGMMSpec,
    out: str | Path,
    *,
    methods: Sequence[str] = METHODS,
    labels: NDArray[np.intp] | None = None,
    budget: Mapping[str, Any] | None = None,
    random_state: int = 0,
    n_jobs: int = 2,
    progress: Callable[[int, int], None] | None = None,
    progressbar: bool = False,
) -> list[dict[str, Any]]:
    """Run every method, write ``comparison.csv``, ``comparison.png`` and ``report.md``.

    Returns the table rows (one dict per method).
    """
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"methods contains {bad[0]!r}; choose from {list(METHODS)}.")
    out = Path(out)
    store = RunStore(out)
    fits = out / "fits"
    fits.mkdir(parents=True, exist_ok=True)
    stored_fits = store.runs / "fits"
    stored_fits.mkdir(parents=True, exist_ok=True)
    budget = {**DEFAULT_BUDGET, **(budget or {})}
    check_budget(budget)
    order = sorted(methods, key=lambda m: (m != "exact", METHODS.index(m)))
    units = {}
    for method in order:
        needs_init = method in STARTED_FROM_EXACT
        # Everything that determines this method's result; the Bayesian methods start from
        # the exact EM's fit of this same call (or fit their own from the same budget).
        digest = inputs_digest(
            kind="compare",
            X=X,
            labels=labels,
            spec=spec.to_toml(),
            method=method,
            budget=budget,
            random_state=random_state,
            init="exact" if needs_init and "exact" in order else None,
        )
        key = f"compare-{method}-{digest[:20]}"
        units[method] = _Unit(method, key, digest, _fit_file(stored_fits, key, method))
    finished: dict[str, dict[str, Any]] = {}

    def tick() -> None:
        if progress is not None:
            progress(len(finished), len(order))

    tick()
    for method in order:  # the stored units: nothing to run
        row = _stored_row(store, units[method], X.shape[0], spec.n_paths)
        if row is not None:
            finished[method] = row
            tick()
    common = dict(
        X=X, spec=spec, labels=labels, budget=budget, random_state=random_state, store=store
    )
    init: DGMMParams | None = None
    if "exact" in order:
        # first: its fit starts the Bayesian methods
        if "exact" not in finished:
            finished["exact"] = _run_unit(units["exact"], **common, init=None, n_jobs=n_jobs)
            tick()
        if "skipped" not in finished["exact"]:
            init = DGMMParams.from_json(units["exact"].fit_file)
    pending = [units[m] for m in order if m not in finished]
    if n_jobs != 1 and len(pending) > 1:
        # one method per worker process, the longest first; each saves its own unit
        from joblib import Parallel, delayed

        pending.sort(key=lambda u: EXPECTED_COST.get(u.method, 0), reverse=True)
        workers = len(pending) if n_jobs < 0 else min(n_jobs, len(pending))
        jobs = (
            delayed(_run_unit_quietly)(
                u,
                **common,
                init=init if u.method in STARTED_FROM_EXACT else None,
                n_jobs=1,
                filters=list(warnings.filters),
            )
            for u in pending
        )
        log.info("compare: running %d methods in %d processes", len(pending), workers)
        for method, row, caught in Parallel(n_jobs=workers, return_as="generator_unordered")(jobs):
            for w in caught:  # the workers' warnings, shown here as the caller's would be
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            finished[method] = row
            tick()
    else:
        for u in pending:
            start = init if u.method in STARTED_FROM_EXACT else None
            finished[u.method] = _run_unit(
                u, **common, init=start, n_jobs=n_jobs, progressbar=progressbar
            )
            tick()
    rows = []
    for method in order:
        row = dict(finished[method])
        row.pop("inputs_sha256", None)
        row.pop("key", None)
        fit_file = units[method].fit_file
        if fit_file is not None and "skipped" not in row:
            # fits/ shows the fits of this call's inputs
            _copy(fit_file, fits / f"{method}{fit_file.suffix}")
        rows.append(row)
    copied = [m for m in order if units[m].fit_file is not None and "skipped" not in finished[m]]
    _prune(out, {f"{m}{units[m].fit_file.suffix}" for m in copied}, order)
    table = [{k: v for k, v in r.items() if k != "paths"} for r in rows]
    write_csv(out / "comparison.csv", table)
    save_figure(out / "comparison.png", plot_comparison([r for r in table if "skipped" not in r]))
    loo_table = _loo_comparison(fits, [r for r in table if "skipped" not in r])
    if loo_table is not None:
        write_csv(out / "loo_compare.csv", loo_table)
    else:
        (out / "loo_compare.csv").unlink(missing_ok=True)  # not left from an earlier call
    rank_plots = _rank_plots(out, fits, [r["method"] for r in table if "skipped" not in r])
    _report(out, table, spec, X, budget, loo_table, rank_plots)
    return table


#: Methods started from the exact EM's fit (the Bayesian ones, but SMC, which starts from
#: the prior).
STARTED_FROM_EXACT = ("map", "laplace", "pathfinder", "advi", "fullrank_advi", "nuts", "nutpie")
#: Rough relative cost of each method at the default budgets (seconds on the study data),
#: to hand the longest to the worker processes first.
EXPECTED_COST = {
    "fullrank_advi": 135,
    "advi": 100,
    "laplace": 60,
    "nuts": 60,
    "stochastic": 40,
    "pathfinder": 25,
    "map": 20,
    "nutpie": 15,
    "smc": 10,
    "gmm": 1,
}


@dataclass(frozen=True)
class _Unit:
    """One method of a comparison: its key in the run store and where its fit is kept."""

    method: str
    key: str
    digest: str
    fit_file: Path | None


def _run_unit(
    unit: _Unit,
    *,
    X: Array,
    spec: DGMMSpec,
    labels: NDArray[np.intp] | None,
    budget: Mapping[str, Any],
    random_state: int,
    store: RunStore,
    init: DGMMParams | None,
    n_jobs: int,
    progressbar: bool = False,
) -> dict[str, Any]:
    """Run one method and save its fit and row at once (an interrupted comparison resumes
    after it); a budget the method cannot run with gives a ``skipped`` row, not saved."""
    log.info("compare: running %s", unit.method)
    try:
        result = run_method(
            unit.method,
            X,
            spec,
            random_state=random_state,
            budget=budget,
            init=init,
            n_jobs=n_jobs,
            progressbar=progressbar,
        )
    except BudgetError as exc:
        # A budget this method cannot run with (e.g. SMC with fewer particles than
        # parameters): say so in the table and go on; not stored, so a rerun with a
        # larger budget runs it.
        log.warning("compare: %s skipped: %s", unit.method, exc)
        return {"method": unit.method, "skipped": str(exc)}
    if unit.fit_file is not None:
        _save_fit(result, unit.fit_file)
    row = summarise(result, spec, labels)
    row["paths"] = result.paths.tolist()
    store.save(unit.key, {**row, "inputs_sha256": unit.digest})
    return row


#: The fields of a stored row and their types (``paths`` is checked on its own).
ROW_FIELDS: dict[str, tuple[type, ...]] = {
    "method": (str,),
    "converged": (bool,),
    "evidence": (str,),
    "log_likelihood": (int, float),
    "bic": (int, float),
    "seconds": (int, float),
    "n_runs": (int,),
    "n_modes": (int,),
    "occupied_paths": (int,),
    "empty_paths": (int,),
}


def _stored_row(store: RunStore, unit: _Unit, n_samples: int, n_paths: int) -> dict | None:
    """The stored row of ``unit``, or None when there is none or it is damaged (then it is
    recomputed, with a warning): a row of another method or inputs, a field missing or of
    the wrong type, paths that are not one path number per observation."""
    if not store.done(unit.key) or (unit.fit_file is not None and not unit.fit_file.is_file()):
        return None
    try:
        row = store.load(unit.key)
    except (OSError, ValueError, TypeError) as exc:
        problem = str(exc)
    else:
        problem = _row_problem(row, unit, n_samples, n_paths)
        if not problem:
            return row
    log.warning(
        "compare: the stored %s run %s is damaged (%s); it is recomputed.",
        unit.method,
        store.path(unit.key),
        problem,
    )
    return None


def _row_problem(row: Any, unit: _Unit, n_samples: int, n_paths: int) -> str:
    """What is wrong with a stored row ('' when nothing)."""
    if row.get("method") != unit.method or row.get("inputs_sha256") != unit.digest:
        return f"it is not the row of {unit.method!r} on these inputs"
    for name, types in ROW_FIELDS.items():
        value = row.get(name)
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            return f"{name}={value!r}"
    paths = row.get("paths")
    if not (
        isinstance(paths, list)
        and len(paths) == n_samples
        and all(isinstance(p, int) and 0 <= p < n_paths for p in paths)
    ):
        return f"paths is not one path number in 0..{n_paths - 1} per observation"
    return ""


def _run_unit_quietly(
    unit: _Unit, *, filters: list[Any], **kwargs: Any
) -> tuple[str, dict[str, Any], list[Any]]:
    """:func:`_run_unit` in a worker process, under the caller's warning filters; the
    warnings are returned for the caller to show (a worker's own would bypass its display)."""
    import logging as logging_

    import pymc  # noqa: F401  (PyMC sets its logger's level when first imported)

    for name in ("pymc", "pytensor", "arviz", "nutpie"):
        logging_.getLogger(name).setLevel(logging_.ERROR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.filters[:] = filters
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        row = _run_unit(unit, **kwargs)
    return unit.method, row, list(caught)


def _prune(out: Path, kept: set[str], methods: Sequence[str]) -> None:
    """Remove the fits and rank plots of earlier calls' methods that are not this call's."""
    for path in (out / "fits").iterdir():
        if path.is_file() and path.name not in kept:
            path.unlink()
    for path in out.glob("rank_*.png"):
        if path.stem.removeprefix("rank_") not in methods:
            path.unlink()


def _rank_plots(out: Path, fits: Path, methods: Sequence[str]) -> dict[str, str]:
    """An ArviZ rank plot (raw and relabelled) per Bayesian fit with more than one chain,
    of the layer whose relabelled chains agree least; returns {method: caption}."""
    from bayes_dgmm.bayes.io import read_fit
    from bayes_dgmm.diagnostics.posterior import relabel_posterior
    from bayes_dgmm.experiments.plots import plot_rank_relabelling

    captions = {}
    for method in methods:
        path = out / f"rank_{method}.png"
        path.unlink(missing_ok=True)  # not left from an earlier call
        if not (fits / f"{method}.nc").is_file():
            continue
        tree = read_fit(fits / f"{method}.nc").tree
        if tree["posterior"].sizes.get("chain", 1) < 2:
            continue
        rel = relabel_posterior(tree)
        worst = max(rel.report, key=lambda r: _finite(r.get("rhat_relabelled")))
        layer = int(worst["layer"])
        save_figure(path, plot_rank_relabelling(rel, layer))
        captions[method] = (
            f"{method}: rank plot of E[x_0 | layer {layer} component], raw and relabelled "
            f"(layer {layer} has the largest relabelled r_hat, "
            f"{_fig(worst.get('rhat_relabelled'), 4)})"
        )
    return captions


def _finite(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return -np.inf
    return v if np.isfinite(v) else -np.inf


def _loo_comparison(fits: Path, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """``arviz_stats.compare`` of the Bayesian fits of this call with enough draws, with
    each method's ``converged`` beside it; figures rounded to 0.1 nat, weights to 0.001."""
    from bayes_dgmm.bayes.io import read_fit
    from bayes_dgmm.diagnostics.stacking import compare_fits

    converged = {r["method"]: r.get("converged") for r in rows}
    trees = {m: read_fit(fits / f"{m}.nc").tree for m in converged if (fits / f"{m}.nc").is_file()}
    frame = compare_fits(trees)
    if frame is None:
        return None
    out = []
    for name, row in frame.iterrows():
        entry: dict[str, Any] = {"method": str(name), "converged": converged.get(str(name))}
        entry["rank"] = int(row["rank"])
        for key in ("elpd", "se", "p", "elpd_diff", "dse"):
            entry["p_loo" if key == "p" else key] = round(float(row[key]), 1)
        entry["weight"] = round(float(row["weight"]), 3)
        out.append(entry)
    return out


def _copy(src: Path, dest: Path) -> None:
    def write(tmp: Path) -> None:
        shutil.copyfile(src, tmp)

    atomic_write(dest, write)


def _fit_file(folder: Path, key: str, method: str) -> Path | None:
    """Where a method's fit is kept in the run store (None: the gmm baseline keeps none)."""
    if method in ("stochastic", "exact"):
        return folder / f"{key}.json"
    if method == "gmm":
        return None
    return folder / f"{key}.nc"


def _save_fit(result: MethodResult, path: Path) -> None:
    if result.params is not None and result.method in ("stochastic", "exact"):
        result.params.to_json(path)
    elif result.estimator is not None:
        result.estimator.save(path)


def plot_comparison(table: Sequence[Mapping[str, Any]]) -> Figure:
    """ARI per layer, log-likelihood and wall time per method, side by side."""
    fig = Figure(figsize=(14, 4), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    names = [str(r["method"]) for r in table]
    x = np.arange(len(names))
    ari_keys = [
        k
        for k in ("ari_path", "ari_layer_1", "ari_layer_2", "ari_layer_3", "ari_layer_4")
        if any(k in r for r in table)
    ]
    width = 0.8 / max(len(ari_keys), 1)
    for j, k in enumerate(ari_keys):
        ax1.bar(x + j * width, [r.get(k, np.nan) for r in table], width, label=k)
    ax1.set_xticks(x + 0.4 - width / 2, names, rotation=45, ha="right")
    # headroom above 1 for the legend: with every bar at 1 it would cover the first ones
    ax1.set_ylim(-0.05, 1.25)
    ax1.set_yticks(np.linspace(0.0, 1.0, 6))
    ax1.set_ylabel("ARI")
    if ari_keys:
        ax1.legend(fontsize=7, loc="upper center", ncols=len(ari_keys), frameon=False)
    ax1.set_title("partition recovered")
    # relative to the best method, on a symmetric log scale: gaps of 1 and of 1e5 nats
    # both show
    best = max(r["log_likelihood"] for r in table)
    gaps = [r["log_likelihood"] - best for r in table]
    colors = ["C2" if r.get("converged") else "C7" for r in table]
    ax2.bar(x, gaps, color=colors)
    ax2.scatter(x, gaps, color=colors, s=12, zorder=3)  # the best method's bar has no height
    ax2.set_yscale("symlog", linthresh=1.0)
    ax2.set_ylim(top=1.0)  # room above 0 for the best method's marker
    ax2.set_xticks(x, names, rotation=45, ha="right")
    ax2.set_ylabel("log-likelihood minus the best method's (nats)")
    ax2.set_title("grey: not converged", fontsize=9)
    compile_s = [float(r.get("compile_s", 0.0)) for r in table]
    run_s = [max(float(r["seconds"]) - c, 0.0) for r, c in zip(table, compile_s, strict=True)]
    ax3.bar(x, compile_s, color="C1", label="compile")
    ax3.bar(x, run_s, bottom=compile_s, color="C3", label="run")
    ax3.set_xticks(x, names, rotation=45, ha="right")
    ax3.set_ylabel("wall time (s)")
    ax3.legend(fontsize=7)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3, axis="y")
    return fig


def _report(
    out: Path,
    table: Sequence[Mapping[str, Any]],
    spec: DGMMSpec,
    X: Array,
    budget: Mapping[str, Any],
    loo_table: Sequence[Mapping[str, Any]] | None = None,
    rank_plots: Mapping[str, str] | None = None,
) -> None:
    report = Report(f"Comparison of inference methods: {spec.name}")
    report.section(
        "Setting",
        f"N = {X.shape[0]}, J = {X.shape[1]}, G = {spec.n_components}, R = {spec.n_factors} "
        f"({spec.n_paths} paths). Budgets: "
        + ", ".join(f"{k} = {v}" for k, v in budget.items())
        + ". BIC = -2 log L + k log N (smaller is better). `n_modes` counts the distinct "
        "partitions (mutual ARI < 0.95) among a method's restarts or chains. `converged` "
        "says whether the method's own criterion held at this budget (exact EM: the Newton "
        "decrement, or Aitken's estimate of the gain left; stochastic EM: no drift of its "
        "log-likelihood beyond its noise over the last 50 iterations; ADVI: the ELBO "
        "stopped improving; MAP: the largest gradient entry; Laplace: a positive "
        "definite Hessian and a Newton decrement < 0.1; NUTS and SMC: r_hat < 1.01 and "
        "bulk ESS > 400 of identified quantities, no divergence); the figures of a row "
        "with `converged` False are those of an unconverged run.",
    )
    report.section("Table")
    report.table([r for r in table if "skipped" not in r])
    skipped = [r for r in table if "skipped" in r]
    if skipped:
        report.section(
            "Not run at this budget",
            "\n".join(f"- **{r['method']}**: {r['skipped']}" for r in skipped),
        )
    if loo_table is not None:
        report.section(
            "Predictive comparison (PSIS-LOO)",
            "`arviz_stats.compare` of the Bayesian fits with more than one draw: elpd_loo, "
            "its difference to the best and the stacking weights. Laplace and Pathfinder draws "
            "carry log p - log q and get the approximate-posterior correction "
            "(`arviz_stats.loo_approximate_posterior`); ADVI's draws are q's, used as if they "
            "were the posterior's; `pareto_k_max` in the table above says where PSIS is unreliable "
            "(above 0.7). The elpd of an unconverged fit is that of its draws, not of the "
            "posterior: draws that are too concentrated (`p_loo` far below the number of "
            "parameters, as for a Pathfinder whose Pareto k fails) score like the point "
            "estimate and can rank first without being a posterior.",
        )
        report.table(list(loo_table))
    report.figure("comparison.png", "ARI, log-likelihood and wall time per method")
    if rank_plots:
        report.section(
            "Rank plots of the samplers' chains",
            "ArviZ's rank plots (`arviz_plots.plot_rank`) of an identified quantity, before "
            "and after relabelling each draw to a common labelling. Curves outside the band "
            "(p < 0.01): the chains do not sample the same distribution; raw, that can be "
            "label switching alone; relabelled, it is a difference of modes or too few draws. "
            "Methods with one chain (VI, Laplace, Pathfinder, MAP) have none.",
        )
        for method, caption in rank_plots.items():
            report.figure(f"rank_{method}.png", caption)
    report.write(out)
