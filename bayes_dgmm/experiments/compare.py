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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm._io import atomic_write
from bayes_dgmm._validation import BudgetError
from bayes_dgmm.diagnostics.importance import PARETO_K_OK
from bayes_dgmm.diagnostics.metrics import layer_aris, n_occupied
from bayes_dgmm.diagnostics.modes import mode_census
from bayes_dgmm.diagnostics.posterior import ESS_OK, RHAT_OK
from bayes_dgmm.em.driver import STATIONARY_WINDOW, STATIONARY_Z, stationary_drift
from bayes_dgmm.experiments._store import RunStore, inputs_digest
from bayes_dgmm.experiments.compare_report import fig as _fig
from bayes_dgmm.experiments.compare_report import write_outputs
from bayes_dgmm.experiments.methods import (
    DEFAULT_BUDGET,
    METHODS,
    MethodResult,
    check_budget,
    run_method,
)
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
            if not (np.isfinite(drift) and np.isfinite(z)):
                return (
                    f"stationary: not measured, {est.n_iter_} its are fewer than the "
                    f"{2 * STATIONARY_WINDOW} the test needs"
                )
            return (
                f"stationary: last {STATIONARY_WINDOW} its' mean moved {drift:.0f} nats, "
                f"z = {z:.1f} (criterion: within ±{STATIONARY_Z:g}) after {est.n_iter_} its"
            )
        if criterion in ("newton", "aitken"):
            tol = float(est.tol) * result.paths.size
            if criterion == "newton":
                return f"Newton decrement: {_fig(est.remaining_)} nats (criterion: <= {_fig(tol)})"
            return f"Aitken: {_fig(est.remaining_)} nats left (criterion: <= {_fig(tol)})"
        if criterion == "fixed":
            return f"fixed budget of {est.max_iter} its, no criterion"
        return f"{criterion} rule" + ("" if result.converged else f" not met in {est.n_iter_} its")
    conv = result.extra.get("convergence") or {}
    from bayes_dgmm.bayes.backends.laplace import DECREMENT_TOL
    from bayes_dgmm.bayes.backends.mode import MODE_GTOL

    if method == "map":
        gradient = (
            f"largest gradient entry {_fig(conv.get('max_abs_gradient'))} "
            f"(criterion: <= {MODE_GTOL:g})"
        )
        if conv.get("nonpositive_eigenvalues", -1) < 0:  # the gradient criterion was met
            return gradient
        return (
            f"{gradient}; else Newton decrement {_fig(conv.get('newton_decrement'))}, "
            f"{conv.get('nonpositive_eigenvalues')} negative Hessian eigenvalues "
            f"(criterion: < {DECREMENT_TOL:g} and none)"
        )
    if method == "laplace":
        return (
            f"{conv.get('nonpositive_eigenvalues')} negative Hessian eigenvalues "
            f"(criterion: none), Newton decrement {_fig(conv.get('newton_decrement'))} "
            f"(criterion: < {DECREMENT_TOL:g})"
        )
    if method == "pathfinder":
        return f"Pareto k {_fig(conv.get('pareto_k'))} (criterion: < {PARETO_K_OK:g})"
    if method in ("advi", "fullrank_advi"):
        return (
            f"ELBO gain over the last window {_fig(conv.get('last_window_gain'))} "
            f"after {conv.get('iterations')} its"
        )
    parts = [
        f"r_hat {_fig(conv.get('max_rhat'), 4)} (criterion: < {RHAT_OK})",
        f"ESS bulk {_fig(conv.get('min_ess_bulk'))} (criterion: > {ESS_OK}) / tail "
        f"{_fig(conv.get('min_ess_tail'))}",
        f"{conv.get('divergences', 0)} divergences",
    ]
    if "max_tree_depth" in conv:
        parts.append(f"tree depth {conv['max_tree_depth']}")
    if "smc_stages" in conv:
        parts.append(f"{conv['smc_stages']} stages")
    return ", ".join(parts)


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
    units = {
        m: _make_unit(m, order, stored_fits, X, labels, spec, budget, random_state) for m in order
    }
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
    common: dict[str, Any] = dict(
        X=X, spec=spec, labels=labels, budget=budget, random_state=random_state, store=store
    )
    init: DGMMParams | None = None
    if "exact" in order:
        # first: its fit starts the Bayesian methods
        if "exact" not in finished:
            finished["exact"] = _run_unit(units["exact"], **common, init=None, n_jobs=n_jobs)
            tick()
        exact_file = units["exact"].fit_file  # the exact EM always keeps its fit
        if "skipped" not in finished["exact"] and exact_file is not None:
            init = DGMMParams.from_json(exact_file)
    pending = [units[m] for m in order if m not in finished]
    if n_jobs != 1 and len(pending) > 1:
        for method, row in _run_in_workers(pending, common, init, n_jobs):
            finished[method] = row
            tick()
    else:
        for u in pending:
            start = init if u.method in STARTED_FROM_EXACT else None
            finished[u.method] = _run_unit(
                u, **common, init=start, n_jobs=n_jobs, progressbar=progressbar
            )
            tick()
    table = _this_call(out, order, units, finished)
    write_outputs(out, table, spec, X, budget)
    return table


def _make_unit(
    method: str,
    order: Sequence[str],
    stored_fits: Path,
    X: Array,
    labels: NDArray[np.intp] | None,
    spec: DGMMSpec,
    budget: Mapping[str, Any],
    random_state: int,
) -> _Unit:
    """A method's unit: everything that determines its result, digested; the Bayesian
    methods start from the exact EM's fit of this same call (or fit their own)."""
    needs_init = method in STARTED_FROM_EXACT
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
    return _Unit(method, key, digest, _fit_file(stored_fits, key, method))


def _run_in_workers(
    pending: list[_Unit], common: Mapping[str, Any], init: DGMMParams | None, n_jobs: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(method, row) of each pending unit as its worker process finishes, the longest
    first; each saves its own unit, and its warnings are shown here as the caller's."""
    from joblib import Parallel, delayed

    pending = sorted(pending, key=lambda u: EXPECTED_COST.get(u.method, 0), reverse=True)
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
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        yield method, row


def _this_call(
    out: Path, order: Sequence[str], units: Mapping[str, _Unit], finished: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The table of this call's methods; their fits copied to fits/, earlier calls' removed."""
    table = []
    copied: set[str] = set()
    for method in order:
        row = {k: v for k, v in finished[method].items() if k not in ("inputs_sha256", "key")}
        fit_file = units[method].fit_file
        if fit_file is not None and "skipped" not in row:
            copied.add(f"{method}{fit_file.suffix}")
            _copy(fit_file, out / "fits" / f"{method}{fit_file.suffix}")
        table.append({k: v for k, v in row.items() if k != "paths"})
    _prune(out, copied, order)
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
        # typeshed declares warnings.filters a Sequence; it is the module's list
        warnings.filters[:] = filters  # type: ignore[index]
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
