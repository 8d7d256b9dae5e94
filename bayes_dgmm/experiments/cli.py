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
import json
import logging
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bayes_dgmm._io import atomic_write, atomic_write_text
from bayes_dgmm.experiments.cli_io import Progress, check_memory, fit_data, read_data
from bayes_dgmm.experiments.cli_out import check_out
from bayes_dgmm.experiments.cli_parser import make_parser
from bayes_dgmm.experiments.cli_terminal import (
    after_interrupt,
    one_line_warnings,
    quiet_libraries,
    scheduler,
    terminate,
    unraisable_interrupt,
)
from bayes_dgmm.experiments.datasets import icbinb_like_params, load_icbinb
from bayes_dgmm.experiments.methods import (
    DEFAULT_BUDGET,
    DEFAULT_METHODS,
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


def build_parser() -> argparse.ArgumentParser:
    """The ``bayes-dgmm`` argument parser (its options: :mod:`.cli_parser`)."""
    return make_parser(
        {
            "truth": _truth,
            "simulate": _simulate,
            "reproduce": _reproduce,
            "compare": _compare,
            "benchmark": _benchmark,
            "fit": _fit,
            "diagnose": _diagnose,
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bayes-dgmm``; returns the exit status."""
    command = "bayes-dgmm"
    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread
        previous = None
    show_warning, unraisable = warnings.showwarning, sys.unraisablehook
    sys.unraisablehook = unraisable_interrupt(unraisable)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version or a bad option (argparse printed it)
            return int(exc.code or 0) if not isinstance(exc.code, str) else 2
        command = f"bayes-dgmm {args.command}"
        warnings.showwarning = one_line_warnings(command)
        # The package's own progress at INFO; other libraries (PyTensor logs every C compile
        # at INFO) only from WARNING up, and nothing from them with --quiet.
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        log.setLevel(logging.WARNING if args.quiet else logging.INFO)
        if args.quiet:
            quiet_libraries()
        # PyTensor warns once per process that it found no BLAS to link: the package's C
        # functions are timed as they are (docs/bayesian-model.md), so it says nothing new
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        with scheduler(getattr(args, "scheduler", None)):
            args.func(args)
    except KeyboardInterrupt:
        print(f"{command}: interrupted; {after_interrupt(command)}", file=sys.stderr)
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
