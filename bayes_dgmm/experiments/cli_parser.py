"""The ``bayes-dgmm`` command line's options: one parser per command, range-checked
integers, the shared data, budget, output and scheduler options.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bayes_dgmm._version import __version__
from bayes_dgmm.experiments.benchmark import BENCH_METHODS, REAL_DATA
from bayes_dgmm.experiments.cli_out import out_folder
from bayes_dgmm.experiments.methods import (
    BUDGET_MEANING,
    DEFAULT_BUDGET,
    EM_METHODS,
    METHODS,
    QUICK_BUDGET,
)


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


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's default after its help (unless the help names it, or there is none);
    a paragraph of a description or epilog that starts with two spaces keeps its lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or "default" in text
        ):
            return text
        if isinstance(default, list | tuple):
            default = " ".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        return "\n\n".join(
            paragraph if paragraph.startswith("  ") else fill(paragraph, width, indent)
            for paragraph in text.split("\n\n")
        )


def budget_help() -> str:
    """The ``--budget`` keys with their defaults, ``--quick`` values and meanings."""
    width = max(map(len, DEFAULT_BUDGET))
    rows = [
        f"  {key:<{width}}  {DEFAULT_BUDGET[key]:>7}  {QUICK_BUDGET[key]:>7}  "
        f"{BUDGET_MEANING.get(key, '')}"
        for key in DEFAULT_BUDGET
    ]
    head = f"  {'KEY':<{width}}  {'default':>7}  {'--quick':>7}  meaning"
    return (
        "Budget keys, integers: --quick takes the --quick column instead of the defaults, "
        "and --budget KEY=VALUE ... sets a key over either.\n\n" + "\n".join([head, *rows])
    )


_SEED = _int_in(0, 2**32 - 1)
_POSITIVE = _int_in(1)
_N_JOBS = _int_in(0, nonzero=True)


def make_parser(commands: Mapping[str, Callable[..., Any]]) -> argparse.ArgumentParser:
    """The ``bayes-dgmm`` parser; ``commands`` maps each command's name to its function."""
    parser = argparse.ArgumentParser(
        prog="bayes-dgmm",
        description="Deep Gaussian mixture models: simulate, fit, diagnose, compare. "
        "`bayes-dgmm COMMAND --help` describes a command and its options.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bayes-dgmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for add in (
        _add_truth,
        _add_simulate,
        _add_reproduce,
        _add_compare,
        _add_benchmark,
        _add_fit,
        _add_diagnose,
    ):
        add(sub, commands)
    return parser


def _add_truth(sub: Any, commands: Mapping[str, Callable[..., Any]]) -> None:
    p = sub.add_parser(
        "truth",
        help="the study data under its true parameters",
        description="Score the embedded study data under its true parameters: the total "
        "log-likelihood, the Bayes classifier's ARI on every layer and the number of "
        "occupied paths. Takes no data; with --out, also writes them to truth.json.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--out", type=out_folder, default=None, help="folder for truth.json (default: print only)"
    )
    _overwrite_option(p)
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=commands["truth"])


def _add_simulate(sub: Any, commands: Mapping[str, Callable[..., Any]]) -> None:
    p = sub.add_parser(
        "simulate",
        help="draw a data set from a model spec, write CSV",
        description="Draw parameters for a model spec (for the study's spec, parameters "
        "like the study's), then observations from that DGMM; write X.csv, labels.csv (the "
        "component of every layer and the path) and params.json to --out.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--spec", default="icbinb-sec3", help="shipped spec name or TOML path")
    p.add_argument("--n-samples", type=_POSITIVE, default=4000, help="number of observations")
    p.add_argument(
        "--n-features",
        type=_POSITIVE,
        default=None,
        help="number of features when the spec does not fix it",
    )
    p.add_argument("--seed", type=_SEED, default=0, help="0..2**32-1")
    p.add_argument("--out", type=out_folder, required=True, help="output folder")
    _overwrite_option(p)
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=commands["simulate"])


def _add_reproduce(sub: Any, commands: Mapping[str, Callable[..., Any]]) -> None:
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
        formatter_class=_HelpFormatter,
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
    p.add_argument(
        "--init",
        default="random",
        choices=["random", "kmeans"],
        help="how every run starts: random (the study) or k-means",
    )
    p.add_argument(
        "--algorithms",
        nargs="+",
        default=list(EM_METHODS),
        choices=list(EM_METHODS),
        help="the EM algorithms to run: the study's stochastic EM, the exact EM, or both",
    )
    p.add_argument(
        "--sections",
        nargs="+",
        default=["3.2", "3.3"],
        choices=["3.2", "3.3"],
        help="the study's sections: 3.2 = model selection of layer 1 (Table 1, Figure 2); "
        "3.3 = random starts at the true architecture (Figures 3-5, Tables 2-3)",
    )
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
    p.set_defaults(func=commands["reproduce"])


def _add_compare(sub: Any, commands: Mapping[str, Callable[..., Any]]) -> None:
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
        epilog=budget_help(),
        formatter_class=_HelpFormatter,
    )
    _data_options(p)
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=list(METHODS),
        help="the methods to run (default: all but PyMC's own NUTS, 'nuts'; NUTS runs "
        "through nutpie). A method named here that the budget cannot run makes the command "
        "exit non-zero; one of the default list is reported as not run",
    )
    _budget_options(p)
    p.set_defaults(func=commands["compare"])


def _add_benchmark(sub: Any, commands: Mapping[str, Callable[..., Any]]) -> None:
    p = sub.add_parser(
        "benchmark",
        help="clustering benchmark on scikit-learn's real data sets; resumable",
        description="k-means, GaussianMixture (covariance type by BIC), the exact EM, the "
        "stochastic EM and ADVI on scikit-learn's wine, iris, breast_cancer and digits "
        "(standardised; no download), the DGMM architecture chosen by BIC with layer 1 at "
        "the number of classes; mean and sd of ARI over seeds beside the published figures "
        "of the mixes package. Writes benchmark.csv, summary.csv and report.md; every "
        "finished fit is saved at once and a rerun resumes. Takes no --data: the data sets "
        "are scikit-learn's.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        default=list(REAL_DATA),
        choices=list(REAL_DATA),
        help="scikit-learn's data sets to cluster",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(BENCH_METHODS),
        choices=list(BENCH_METHODS),
        help="the clustering methods to run",
    )
    p.add_argument("--seeds", type=_POSITIVE, default=10, help="seeds 0..SEEDS-1 per method")
    p.add_argument("--advi-iterations", type=_POSITIVE, default=10000, help="most ADVI iterations")
    p.add_argument("--out", type=out_folder, required=True, help="output folder")
    _overwrite_option(p)
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=commands["benchmark"])


def _add_fit(sub: Any, commands: Mapping[str, Callable[..., Any]]) -> None:
    p = sub.add_parser(
        "fit",
        help="fit one method; write the fit, labels and a report",
        description="Fit the DGMM of --spec to --data (default: the embedded study data) by "
        "one method and write params.json (the point estimate; not for gmm), fit.nc (the "
        "Bayesian methods' draws, which `diagnose` reads), labels.csv, fit.json, fit.png "
        "and report.md, which say whether the method converged by its own criterion and "
        "by what figure. The "
        "Bayesian methods start from an exact-EM fit (SMC from the prior). The default "
        "budgets are those of `compare`; raise them with --budget KEY=VALUE.",
        epilog=budget_help(),
        formatter_class=_HelpFormatter,
    )
    _data_options(p)
    p.add_argument(
        "--method",
        required=True,
        choices=list(METHODS),
        help="the inference method: the EM algorithms, a GaussianMixture baseline (gmm) or "
        "a Bayesian fit",
    )
    _budget_options(p)
    p.set_defaults(func=commands["fit"])


def _add_diagnose(sub: Any, commands: Mapping[str, Callable[..., Any]]) -> None:
    p = sub.add_parser(
        "diagnose",
        help="label switching and modes of a saved Bayesian fit",
        description="Diagnose a fit.nc on the data it was fitted to (saved in it): --data, "
        "when given, must be those data, and --spec the fit's spec; --labels are scored.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("fit", type=Path, help="a fit.nc written by `fit` or `compare`")
    _data_options(p, fitted=True)
    p.add_argument("--out", type=out_folder, required=True, help="output folder")
    _overwrite_option(p)
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=commands["diagnose"])


def _budget_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--budget",
        nargs="+",
        metavar="KEY=VALUE",
        help="override budgets, e.g. --budget draws=500 chains=4 (keys and defaults below)",
    )
    p.add_argument(
        "--quick", action="store_true", help="the budgets' --quick column below: a smoke test"
    )
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


def _data_options(p: argparse.ArgumentParser, *, fitted: bool = False) -> None:
    """--data, --labels, --spec and --header; ``fitted``: for a saved fit, whose own data
    and spec are the defaults and which --data and --spec must match."""
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="CSV of the observations the fit was fitted to (default: the data saved in it)"
        if fitted
        else "CSV of observations (default: the embedded study data set)",
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
        help="model spec: a name in models/ or a TOML path (default: the fit's)"
        if fitted
        else "model spec: a name in models/ or a TOML path (default: the study's)",
    )
    p.add_argument(
        "--header",
        default="auto",
        choices=["auto", "yes", "no"],
        help="whether line 1 of --data is a header; auto: when it holds text, or integers "
        "counting up by one (0,1,2 or 1990,1991), with a warning",
    )


def _add_scheduler(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the parallel runs on a Dask cluster (e.g. tcp://host:8786); needs "
        "pip install 'bayes-dgmm[dask]'. Results equal the local run's for the same seed.",
    )
