"""Command line: a thin layer over the library.

``bayes-dgmm truth``     the study data set under its true parameters (the ceiling of inference)
``bayes-dgmm simulate``  draw a data set from a spec and write it as CSV
``bayes-dgmm reproduce`` the study's experiments (sec. 3.2 and 3.3), resumable
``bayes-dgmm compare``   every inference method on one data set: table, figure, report
``bayes-dgmm fit``       one method on a CSV (or the study data): fit, labels, report
``bayes-dgmm diagnose``  label switching and multimodality of a saved Bayesian fit

Every command writes into ``--out``. Errors in the input (a missing or malformed CSV, bad
options, an unwritable ``--out``) end the command with one line naming the problem before
any work, never a traceback. Rows and columns in messages are counted from 1, as in the file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bayes_dgmm._io import atomic_write, atomic_write_text
from bayes_dgmm._version import __version__
from bayes_dgmm.experiments.benchmark import BENCH_METHODS, REAL_DATA
from bayes_dgmm.experiments.cli_io import Progress, check_memory, fit_data, read_data
from bayes_dgmm.experiments.cli_out import check_out, out_folder
from bayes_dgmm.experiments.datasets import icbinb_like_params, load_icbinb
from bayes_dgmm.experiments.methods import (
    DEFAULT_BUDGET,
    DEFAULT_METHODS,
    METHODS,
    QUICK_BUDGET,
    check_budget,
    run_method,
)
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.simulate import simulate
from bayes_dgmm.model.spec import load_spec

log = logging.getLogger("bayes_dgmm")

# The commands import what needs scikit-learn, PyMC, ArviZ or matplotlib when they run, so
# that the start-up (and a Ctrl-C during it) stays fast.


def _truth(args: argparse.Namespace) -> dict[str, Any]:
    from bayes_dgmm.diagnostics.metrics import layer_aris, n_occupied

    check_out(args, ["truth.json"])
    data = load_icbinb()
    params = data.params
    loglik = params.score(data.X)
    pred = params.paths[params.predict(data.X)]
    aris = layer_aris(data.labels, pred, params.n_components)
    result = {
        "data": "icbinb-sec3 (Selosse et al. 2020, sec. 3)",
        "n_samples": int(data.X.shape[0]),
        "n_features": params.n_features,
        "n_components": list(params.n_components),
        "n_factors": list(params.n_factors),
        "n_paths": params.n_paths,
        "true_loglik": loglik,
        "bayes_classifier_ari": aris,
        "occupied_paths": n_occupied(params.predict(data.X), params.n_paths),
    }
    lines = [
        "Study data set icbinb-sec3 under its true parameters",
        f"  N = {result['n_samples']}, J = {params.n_features}, "
        f"G = {params.n_components}, R = {params.n_factors}, {params.n_paths} paths",
        f"  total log-likelihood: {loglik:.2f}",
        "  Bayes classifier ARI: " + ", ".join(f"{k} {v:.3f}" for k, v in aris.items()),
        f"  occupied paths: {result['occupied_paths']} of {params.n_paths}",
    ]
    _emit(args, "\n".join(lines))
    if args.out is not None:
        atomic_write_text(Path(args.out) / "truth.json", json.dumps(result, indent=2))
        _emit(args, f"wrote {Path(args.out) / 'truth.json'}")
    return result


def _simulate(args: argparse.Namespace) -> dict[str, Any]:

    check_out(args, ["X.csv", "labels.csv", "params.json"])
    spec = load_spec(args.spec)
    fixed = 17 if spec.name == "icbinb-sec3" else spec.n_features
    if args.n_features is not None and fixed is not None and args.n_features != fixed:
        raise ValueError(
            f"--n-features={args.n_features}, but spec {spec.name!r} fixes n_features={fixed}; "
            "drop --n-features or use a spec without n_features."
        )
    width = (args.n_features or spec.n_features or spec.n_factors[0] + 2) + spec.n_layers + 1
    check_memory(args.n_samples, width, f"--n-samples={args.n_samples}")
    rng = np.random.default_rng(args.seed)
    if spec.name == "icbinb-sec3":
        params = icbinb_like_params(rng)
    else:
        n_features = args.n_features or spec.n_features or spec.n_factors[0] + 2
        params = DGMMParams.random(n_features, spec.n_components, spec.n_factors, rng)
    sim = simulate(params, args.n_samples, random_state=rng)
    out = Path(args.out)
    header = ",".join(f"x{j + 1}" for j in range(params.n_features))
    atomic_write(
        out / "X.csv",
        lambda p: np.savetxt(p, sim.X, delimiter=",", header=header, comments="", fmt="%.17g"),
    )
    lab_header = ",".join([f"layer{l + 1}" for l in range(params.n_layers)] + ["path"])
    labels = np.column_stack([sim.labels, sim.paths])
    atomic_write(
        out / "labels.csv",
        lambda p: np.savetxt(p, labels, delimiter=",", header=lab_header, comments="", fmt="%d"),
    )
    params.to_json(out / "params.json")
    _emit(args, f"wrote {sim.X.shape[0]} x {sim.X.shape[1]} data, labels and params to {out}")
    return {"out": str(out)}


def _reproduce(args: argparse.Namespace) -> dict[str, Any]:
    from bayes_dgmm.experiments.reproduce import reproduce
    from bayes_dgmm.experiments.study import ExperimentSettings

    check_out(args, ["report.md", "summary.json"])
    X, labels, spec = read_data(args)
    if args.quick:
        settings = ExperimentSettings(
            n_runs=3,
            n_mutual=5,
            max_iter=20,
            stopping=args.stopping,
            exact_max_iter=20,
            exact_stopping=args.exact_stopping,
            init=args.init,
            algorithms=tuple(args.algorithms),
            g1_grid=(2, 3, 4),
            n_jobs=args.n_jobs,
            seed=args.seed,
        )
    else:
        settings = ExperimentSettings(
            n_runs=args.runs,
            n_mutual=args.mutual_runs,
            max_iter=args.max_iter,
            stopping=args.stopping,
            exact_max_iter=args.exact_max_iter,
            exact_stopping=args.exact_stopping,
            init=args.init,
            algorithms=tuple(args.algorithms),
            n_jobs=args.n_jobs,
            seed=args.seed,
        )
    progress = Progress("runs", args.quiet)
    try:
        result = reproduce(
            X,
            spec.n_components,
            spec.n_factors,
            args.out,
            settings,
            labels=labels,
            sections=args.sections,
            progress=progress,
        )
    finally:
        progress.close()
    _emit(args, "\n\n".join(result["text"]))
    _emit(args, f"\nwrote tables, figures and report.md to {args.out}")
    return result


def _budget(args: argparse.Namespace) -> dict[str, Any]:

    budget = dict(QUICK_BUDGET if args.quick else DEFAULT_BUDGET)
    for item in args.budget or []:
        key, _, value = item.partition("=")
        if key not in DEFAULT_BUDGET or not value:
            raise ValueError(
                f"--budget {item!r}: use KEY=VALUE with KEY one of {sorted(DEFAULT_BUDGET)}."
            )
        try:
            budget[key] = int(value)
        except ValueError:
            raise ValueError(
                f"--budget {item!r}: {value!r} is not an integer; give {key}=N."
            ) from None
    return check_budget(budget, option="--budget")


class _NotAllRun(Exception):
    """A command finished, but some requested methods could not run."""


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    from bayes_dgmm.experiments.compare import compare_methods
    from bayes_dgmm.experiments.report import markdown_table

    budget = _budget(args)
    check_out(args, ["comparison.csv", "comparison.png", "report.md"])
    X, labels, spec = read_data(args)
    progress = Progress("methods", args.quiet)
    try:
        rows = compare_methods(
            X,
            spec,
            args.out,
            methods=args.methods or list(DEFAULT_METHODS),
            labels=labels,
            budget=budget,
            random_state=args.seed,
            n_jobs=args.n_jobs,
            progress=progress,
        )
    finally:
        progress.close()
    cols = [
        c
        for c in (
            "method",
            "converged",
            "evidence",
            "ari_path",
            "ari_layer_1",
            "ari_layer_2",
            "ari_layer_3",
            "log_likelihood",
            "bic",
            "elpd_loo",
            "pareto_k_max",
            "seconds",
            "compile_s",
            "n_runs",
            "n_modes",
            "empty_paths",
        )
        if any(c in r for r in rows)
    ]
    # a method the budget could not run says so in its row, in a few words
    shown = [
        {"method": r["method"], "converged": "not run", "evidence": _first_clause(r["skipped"])}
        if "skipped" in r
        else r
        for r in rows
    ]
    _emit(args, markdown_table(shown, cols))
    loo = ", loo_compare.csv" if (Path(args.out) / "loo_compare.csv").is_file() else ""
    _emit(args, f"wrote comparison.csv, comparison.png{loo}, fits/ and report.md to {args.out}")
    skipped = [r for r in rows if "skipped" in r]
    if skipped and args.methods is not None:
        # a method asked for by name that could not run is a failure; one of the default
        # list that the default budget cannot run (SMC on the study model) is reported in
        # the table and report.md as not run
        raise _NotAllRun(
            "could not run "
            + "; ".join(f"{r['method']} ({r['skipped']})" for r in skipped)
            + f". The other methods' results are in {args.out}; raise the budget (--budget) "
            "and rerun to add them."
        )
    return {"rows": rows}


def _first_clause(text: str) -> str:
    """The text up to its first colon or semicolon (the rest is in report.md)."""
    for sep in (":", ";"):
        text = text.split(sep, 1)[0]
    return text.replace("|", "/")


def _fit(args: argparse.Namespace) -> dict[str, Any]:
    from bayes_dgmm.experiments.compare import summarise
    from bayes_dgmm.experiments.compare_report import plot_comparison
    from bayes_dgmm.experiments.report import (
        Report,
        markdown_table,
        save_figure,
        write_csv,
        write_json,
    )

    files = ["labels.csv", "fit.json", "fit.png", "report.md"]
    if args.method != "gmm":  # the GMM baseline has no DGMM parameters
        files.append("params.json")
    if args.method not in ("stochastic", "exact", "gmm"):
        files.append("fit.nc")
    budget = _budget(args)
    check_out(args, files)
    X, labels, spec = read_data(args)
    result = run_method(
        args.method,
        X,
        spec,
        random_state=args.seed,
        budget=budget,
        n_jobs=args.n_jobs,
        progressbar=not args.quiet,
    )
    out = Path(args.out)
    row = summarise(result, spec, labels)
    if result.params is not None:
        result.params.to_json(out / "params.json")
        table = result.params.paths[result.paths]
        rows = [
            {"path": int(p), **{f"layer_{l + 1}": int(g) for l, g in enumerate(t)}}
            for p, t in zip(result.paths, table, strict=True)
        ]
    else:
        rows = [{"path": int(p)} for p in result.paths]
    if args.method not in ("stochastic", "exact", "gmm"):
        result.estimator.save(out / "fit.nc")
    write_csv(out / "labels.csv", rows)
    write_json(out / "fit.json", row)
    save_figure(out / "fit.png", plot_comparison([row]))
    report = Report(f"Fit of {spec.name} by {args.method}")
    report.table([row])
    report.write(out)
    _emit(args, markdown_table([row]))
    _emit(args, f"wrote params/fit, labels.csv, fit.json and report.md to {out}")
    return row


def _benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bayes_dgmm.experiments.benchmark import run_benchmark
    from bayes_dgmm.experiments.report import markdown_table

    check_out(args, ["benchmark.csv", "summary.csv", "report.md"])
    rows = run_benchmark(
        args.out,
        data=args.datasets,
        methods=args.methods,
        seeds=args.seeds,
        advi_iterations=args.advi_iterations,
        progress=None if args.quiet else log.info,
    )
    _emit(args, markdown_table(rows))
    _emit(args, f"wrote benchmark.csv, summary.csv and report.md to {args.out}")
    return rows


def _diagnose(args: argparse.Namespace) -> dict[str, Any]:
    from bayes_dgmm.bayes.estimator import BayesianDeepGaussianMixture
    from bayes_dgmm.diagnostics.posterior import describe_fit, relabel_posterior
    from bayes_dgmm.experiments import plots
    from bayes_dgmm.experiments.report import Report, markdown_table, save_figure, write_json

    check_out(args, ["report.md", "diagnostics.json"])
    est = BayesianDeepGaussianMixture.load(args.fit, spec=args.spec)
    X, labels = fit_data(args, est)
    verdict = describe_fit(est.idata_, X, reference_labels=labels)
    rel = relabel_posterior(est.idata_)
    out = Path(args.out)
    report = Report(f"Diagnostics of {args.fit}")
    report.section("Verdict", verdict)
    report.table(rel.report, caption="Label switching per layer (r_hat of E[x | component]).")
    for row in rel.report:
        name = f"relabelling_layer_{row['layer']}.png"
        save_figure(out / name, plots.plot_relabelling(rel, row["layer"]))
        report.figure(name, f"Layer {row['layer']}: raw and relabelled traces")
    report.write(out)
    write_json(out / "diagnostics.json", {"verdict": verdict, "layers": rel.report})
    _emit(args, verdict)
    _emit(args, markdown_table(rel.report))
    return {"verdict": verdict}


def _emit(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text)


def _int_in(low: int, high: int | None = None, *, nonzero: bool = False) -> Callable[[str], int]:
    """An argparse type: an integer in ``low..high`` (``nonzero``: any integer but 0)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if nonzero:
            if value == 0:
                raise argparse.ArgumentTypeError(
                    "0 is out of range; give a number of workers >= 1 (or -1 for all cores)"
                )
        elif value < low or (high is not None and value > high):
            allowed = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range; give an integer {allowed}")
        return value

    return parse


_SEED = _int_in(0, 2**32 - 1)
_POSITIVE = _int_in(1)
_N_JOBS = _int_in(0, nonzero=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-dgmm",
        description="Deep Gaussian mixture models: simulate, fit, diagnose, compare.",
    )
    parser.add_argument("--version", action="version", version=f"bayes-dgmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("truth", help="the study data under its true parameters")
    p.add_argument("--out", type=out_folder, default=None, help="folder for truth.json")
    _overwrite_option(p)
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=_truth)

    p = sub.add_parser("simulate", help="draw a data set from a model spec, write CSV")
    p.add_argument("--spec", default="icbinb-sec3", help="shipped spec name or TOML path")
    p.add_argument("--n-samples", type=_POSITIVE, default=4000)
    p.add_argument(
        "--n-features",
        type=_POSITIVE,
        default=None,
        help="number of features when the spec does not fix it",
    )
    p.add_argument("--seed", type=_SEED, default=0, help="0..2**32-1")
    p.add_argument("--out", type=out_folder, required=True, help="output folder")
    _overwrite_option(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_simulate)

    p = sub.add_parser(
        "reproduce",
        help="the study's experiments (sec. 3.2, 3.3); resumable",
        description="Reproduce Selosse et al. (2020), sec. 3: Table 1 and Figure 2 (model "
        "selection of the first layer), Figures 3-5 and Tables 2-3 (random starts at the true "
        "architecture), for the stochastic and the exact EM side by side. Every finished run "
        "is saved in OUT/runs at once, under a digest of its inputs (data, labels, spec, "
        "settings, seed, package version): rerunning after an interruption recomputes none "
        "of them, and a run with other inputs into the same OUT is computed afresh, its runs "
        "kept apart from the earlier ones (the tables and report show the latest run).",
    )
    _data_options(p)
    p.add_argument("--runs", type=_POSITIVE, default=20, help="runs per method (study: 20)")
    p.add_argument(
        "--mutual-runs",
        type=_POSITIVE,
        default=100,
        help="random starts for the mutual-ARI census, Figure 5 (study: 100)",
    )
    p.add_argument(
        "--max-iter", type=_POSITIVE, default=200, help="stochastic-EM iterations (study: 200)"
    )
    p.add_argument(
        "--stopping",
        default="fixed",
        choices=["fixed", "auto", "tol", "deepgmm", "stationary"],
        help="stochastic EM: fixed = always max-iter iterations (the study); auto = "
        "stationary: until its log-likelihood has no drift beyond its noise; deepgmm = "
        "deepgmm's rule",
    )
    p.add_argument(
        "--exact-max-iter", type=_POSITIVE, default=2000, help="most exact-EM iterations"
    )
    p.add_argument(
        "--exact-stopping",
        default="auto",
        choices=["auto", "fixed"],
        help=(
            "exact EM: auto = to its convergence criterion (the Newton decrement of the "
            "Newton steps that end the run); fixed = exact-max-iter"
        ),
    )
    p.add_argument("--init", default="random", choices=["random", "kmeans"])
    p.add_argument(
        "--algorithms", nargs="+", default=["stochastic", "exact"], choices=["stochastic", "exact"]
    )
    p.add_argument("--sections", nargs="+", default=["3.2", "3.3"], choices=["3.2", "3.3"])
    p.add_argument(
        "--n-jobs", type=_N_JOBS, default=2, help="parallel runs (joblib; -1: all cores)"
    )
    _add_scheduler(p)
    p.add_argument("--seed", type=_SEED, default=0, help="0..2**32-1")
    p.add_argument(
        "--quick",
        action="store_true",
        help="3 runs, 5 starts, 20 iterations, G1 in 2..4: a smoke test",
    )
    p.add_argument("--out", type=out_folder, required=True, help="output folder")
    _overwrite_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar, no printed tables")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser(
        "compare",
        help="every inference method on one data set (the main job)",
        description="Fit the DGMM by stochastic EM, exact EM, a GMM, MAP, Laplace, Pathfinder, "
        "ADVI, full-rank ADVI, NUTS (nutpie; PyMC's own sampler with --methods ... nuts) and "
        "SMC; write comparison.csv, loo_compare.csv, comparison.png, the fits and report.md. "
        "Finished methods are saved at once under a digest of their inputs (data, labels, "
        "spec, method, budget, seed, package version); a rerun resumes, and a run with "
        "other inputs into the same OUT is computed afresh, kept apart from the earlier "
        "runs. A method asked for by name that the budget cannot run is reported and makes "
        "the command exit with status 1. The default budgets fit 10 minutes on 2 cores; "
        "every row says whether its method converged. Raise them with --budget KEY=VALUE.",
    )
    _data_options(p)
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=list(METHODS),
        help="default: all but PyMC's own NUTS ('nuts'); NUTS runs through nutpie. A method "
        "named here that the budget cannot run makes the command exit non-zero; one of the "
        "default list is reported as not run",
    )
    _budget_options(p)
    p.set_defaults(func=_compare)

    p = sub.add_parser(
        "benchmark",
        help="clustering benchmark on scikit-learn's real data sets; resumable",
        description="k-means, GaussianMixture (covariance type by BIC), the exact EM, the "
        "stochastic EM and ADVI on scikit-learn's wine, iris, breast_cancer and digits "
        "(standardised; no download), the DGMM architecture chosen by BIC with layer 1 at "
        "the number of classes; mean and sd of ARI over seeds beside the published figures "
        "of the mixes package. Writes benchmark.csv, summary.csv and report.md; every "
        "finished fit is saved at once and a rerun resumes.",
    )
    p.add_argument("--datasets", nargs="+", default=list(REAL_DATA), choices=list(REAL_DATA))
    p.add_argument("--methods", nargs="+", default=list(BENCH_METHODS), choices=list(BENCH_METHODS))
    p.add_argument("--seeds", type=_POSITIVE, default=10, help="seeds 0..SEEDS-1 per method")
    p.add_argument("--advi-iterations", type=_POSITIVE, default=10000, help="most ADVI iterations")
    p.add_argument("--out", type=out_folder, required=True, help="output folder")
    _overwrite_option(p)
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=_benchmark)

    p = sub.add_parser("fit", help="fit one method; write the fit, labels and a report")
    _data_options(p)
    p.add_argument("--method", required=True, choices=list(METHODS))
    _budget_options(p)
    p.set_defaults(func=_fit)

    p = sub.add_parser(
        "diagnose",
        help="label switching and modes of a saved Bayesian fit",
        description="Diagnose a fit.nc on the data it was fitted to (saved in it): --data, "
        "when given, must be those data, and --spec the fit's spec; --labels are scored.",
    )
    p.add_argument("fit", type=Path, help="a fit.nc written by `fit` or `compare`")
    _data_options(p)
    p.add_argument("--out", type=out_folder, required=True, help="output folder")
    _overwrite_option(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_diagnose)
    return parser


def _budget_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--budget",
        nargs="+",
        metavar="KEY=VALUE",
        help="override a budget, e.g. --budget draws=500 chains=4",
    )
    p.add_argument("--quick", action="store_true", help="small budgets: a smoke test")
    p.add_argument(
        "--n-jobs",
        type=_N_JOBS,
        default=2,
        help="parallel restarts, chains and methods (-1: all cores)",
    )
    _add_scheduler(p)
    p.add_argument("--seed", type=_SEED, default=0, help="0..2**32-1")
    p.add_argument("--out", type=out_folder, required=True, help="output folder")
    _overwrite_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars or printed tables")


def _overwrite_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write over files in --out that another run (or no bayes-dgmm run) wrote; "
        "input files are never written over",
    )


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="CSV of observations (default: the embedded study data set)",
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="CSV of true labels, one column per layer (optional)",
    )
    p.add_argument(
        "--spec",
        default=None,
        help="model spec: a name in models/ or a TOML path (default: the study's)",
    )
    p.add_argument(
        "--header",
        default="auto",
        choices=["auto", "yes", "no"],
        help="whether line 1 of --data is a header; auto: when it holds text, or integers "
        "counting up by one (0,1,2 or 1990,1991), with a warning",
    )


_NOISY_LIBRARIES = ("pytensor", "pymc", "arviz", "nutpie", "h5netcdf", "xarray", "numba")


def _quiet_libraries() -> None:
    """--quiet: no warnings or log lines from the libraries below the package."""
    for name in _NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")


def _one_line_warnings(command: str) -> Any:
    """``warnings.showwarning`` for the terminal: ``COMMAND: Category: message``, one line.

    Python's default adds the file and source line that called ``warn``; for the package's
    warnings raised inside scikit-learn's ``fit`` wrapper that is ``sklearn/base.py``, which
    tells a user nothing.
    """

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:  # fmt: skip
        text = " ".join(str(message).split())
        print(f"{command}: {category.__name__}: {text}", file=sys.stderr if file is None else file)

    return show


#: Commands that keep every finished run on disk and resume from them.
RESUMABLE = ("reproduce", "compare", "benchmark")


def _after_interrupt(command: str) -> str:
    """What an interrupted command leaves behind, in a few words."""
    if command.split()[-1] in RESUMABLE:
        return "its finished runs are saved; rerun the same command to resume."
    return "its results were not written (files already in --out are as they were)."


def _unraisable_interrupt(previous: Any) -> Any:
    """``sys.unraisablehook`` that passes a Ctrl-C raised where Python cannot raise it (a
    garbage-collector callback, such as JAX's) on to the main thread, without the "Exception
    ignored" traceback; everything else goes to ``previous``."""
    import _thread
    import threading

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # raised here it would be ignored again: delivered once the hook has returned
            threading.Timer(0.05, _thread.interrupt_main).start()
            return
        previous(unraisable)

    return hook


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # run the clean-up of a Ctrl-C (temporary files, workers)


def _add_scheduler(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the parallel runs on a Dask cluster (e.g. tcp://host:8786); needs "
        "pip install 'bayes-dgmm[dask]'. Results equal the local run's for the same seed.",
    )


@contextlib.contextmanager
def _scheduler(address: str | None) -> Iterator[None]:
    """joblib's Dask backend on the scheduler at ``address`` (nothing when None)."""
    if address is None:
        yield
        return
    try:
        from dask.distributed import Client
    except ImportError:
        raise ValueError(
            f"--scheduler {address} needs Dask: pip install 'bayes-dgmm[dask]'."
        ) from None
    from joblib import parallel_config

    try:
        client = Client(address, timeout=10)
    except OSError as exc:
        raise ValueError(
            f"--scheduler {address}: no Dask scheduler answers there ({exc}); start one "
            "(dask scheduler) or give its address as tcp://HOST:PORT."
        ) from None
    with client, parallel_config(backend="dask"):
        log.info("running on the Dask cluster at %s", address)
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bayes-dgmm``; returns the exit status."""
    command = "bayes-dgmm"
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        previous = None
    show_warning, unraisable = warnings.showwarning, sys.unraisablehook
    sys.unraisablehook = _unraisable_interrupt(unraisable)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version or a bad option (argparse printed it)
            return int(exc.code or 0) if not isinstance(exc.code, str) else 2
        command = f"bayes-dgmm {args.command}"
        warnings.showwarning = _one_line_warnings(command)
        # The package's own progress at INFO; other libraries (PyTensor logs every C compile
        # at INFO) only from WARNING up, and nothing from them with --quiet.
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        log.setLevel(logging.WARNING if args.quiet else logging.INFO)
        if args.quiet:
            _quiet_libraries()
        # PyTensor warns once per process that it found no BLAS to link: the package's C
        # functions are timed as they are (docs/bayesian-model.md), so it says nothing new
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        with _scheduler(getattr(args, "scheduler", None)):
            args.func(args)
    except KeyboardInterrupt:
        print(f"{command}: interrupted; {_after_interrupt(command)}", file=sys.stderr)
        return 130
    except MemoryError:
        print(
            f"{command}: error: out of memory; use less data or smaller settings.", file=sys.stderr
        )
        return 2
    except _NotAllRun as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, OSError) as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning, sys.unraisablehook = show_warning, unraisable
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
