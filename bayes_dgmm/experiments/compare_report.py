"""The outputs of a method comparison: ``comparison.csv``, ``comparison.png``,
``loo_compare.csv`` (PSIS-LOO of the Bayesian fits), the samplers' rank plots and
``report.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from bayes_dgmm.experiments.report import Report, save_figure, write_csv
from bayes_dgmm.model.spec import DGMMSpec

Array = NDArray[np.float64]


def write_outputs(
    out: Path,
    table: Sequence[Mapping[str, Any]],
    spec: DGMMSpec,
    X: Array,
    budget: Mapping[str, Any],
) -> None:
    """Write the table, figure, PSIS-LOO comparison, rank plots and report of ``table``."""
    fits = out / "fits"
    ran = [r for r in table if "skipped" not in r]
    write_csv(out / "comparison.csv", table)
    save_figure(out / "comparison.png", plot_comparison(ran))
    loo_table = loo_comparison(fits, ran)
    if loo_table is not None:
        write_csv(out / "loo_compare.csv", loo_table)
    else:
        (out / "loo_compare.csv").unlink(missing_ok=True)  # not left from an earlier call
    plots = rank_plots(out, fits, [r["method"] for r in ran])
    write_report(out, table, spec, X, budget, loo_table, plots)


def fig(value: Any, digits: int = 3) -> str:
    """A figure to ``digits`` significant digits ('nan' when missing)."""
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return "nan"


def rank_plots(out: Path, fits: Path, methods: Sequence[str]) -> dict[str, str]:
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
            f"{fig(worst.get('rhat_relabelled'), 4)})"
        )
    return captions


def _finite(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return -np.inf
    return v if np.isfinite(v) else -np.inf


def loo_comparison(fits: Path, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
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


def write_report(
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
        "stopped improving; MAP: the largest gradient entry, or as Laplace; Laplace: a "
        "positive definite Hessian and a Newton decrement < 0.1; NUTS and SMC: r_hat < 1.01 and "
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
