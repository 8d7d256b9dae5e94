"""Reproduce the study's sec. 3 on a data set: tables, figures and ``report.md``."""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm.experiments import plots
from bayes_dgmm.experiments._store import RunStore
from bayes_dgmm.experiments.report import Report, save_figure, write_csv, write_json
from bayes_dgmm.experiments.study import ExperimentSettings, run_section32, run_section33

#: What the study reported (Selosse et al. 2020, sec. 3), for side-by-side tables.
STUDY_REPORTED: dict[str, Any] = {
    "table1_dgmm": [6, 6, 6, 5, 6, 4, 4, 5, 5, 6, 5, 6, 5, 6, 5, 6, 6, 6, 6, 5],
    "table1_mclust": [6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 5, 6, 6, 6, 6, 6, 6, 5, 5, 6],
    "best_global_ari": 0.67,
    "max_layer2_ari": 0.51,
    "layer3_ari": "about 0 in all runs",
    "mutual_ari": "no two of 100 starts agree",
}


def _summary(rows: Sequence[dict[str, Any]], method: str, key: str) -> dict[str, float]:
    vals = np.array([r[key] for r in rows if r["method"] == method and key in r], dtype=float)
    if vals.size == 0:
        return {}
    return {"min": float(vals.min()), "median": float(np.median(vals)), "max": float(vals.max())}


def reproduce(
    X: NDArray[np.float64],
    n_components: Sequence[int],
    n_factors: Sequence[int],
    out: str | Path,
    settings: ExperimentSettings,
    *,
    labels: NDArray[np.intp] | None = None,
    sections: Sequence[str] = ("3.2", "3.3"),
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the study's experiments, write tables (CSV), figures (PNG) and ``report.md``.

    Finished runs are kept in ``out/runs``; a rerun recomputes none of them.

    Returns
    -------
    dict with the tables (lists of dict rows) and the printable text of Tables 1-3.
    """
    out = Path(out)
    store = RunStore(out)
    report = Report("Reproducing Selosse et al. (2020), section 3")
    report.section("Settings", _settings_text(X, n_components, n_factors, settings))
    result: dict[str, Any] = {"text": []}
    if "3.2" in sections:
        sec32 = run_section32(X, n_components, n_factors, store, settings, labels, progress)
        text, rows = _write_section32(sec32, n_components, settings, out, report)
        result["text"].append(text)
        result["table1"] = rows
    if "3.3" in sections:
        sec33 = run_section33(X, n_components, n_factors, store, settings, labels, progress)
        text, tables = _write_section33(sec33, n_components, settings, out, report)
        result["text"].append(text)
        result.update(tables)
    report.write(out)
    write_json(out / "summary.json", {k: v for k, v in result.items() if k != "text"})
    return result


def _settings_text(
    X: NDArray[np.float64],
    n_components: Sequence[int],
    n_factors: Sequence[int],
    settings: ExperimentSettings,
) -> str:
    """The report's first section: the data's size, the architecture and the budgets."""
    return (
        f"N = {X.shape[0]}, J = {X.shape[1]}, G = {tuple(n_components)}, R = {tuple(n_factors)}; "
        f"{settings.n_runs} runs per method, stochastic EM {settings.max_iter} iterations "
        f"(stopping: {settings.stopping}), exact EM up to {settings.exact_max_iter} "
        f"(stopping: {settings.exact_stopping}), init: {settings.init}, algorithms: "
        f"{', '.join(settings.algorithms)}, seed {settings.seed}. BIC = -2 log L + k log N "
        "(smaller is better)."
    )


def _write_section32(
    sec32: dict[str, Any],
    n_components: Sequence[int],
    settings: ExperimentSettings,
    out: Path,
    report: Report,
) -> tuple[str, list[dict[str, Any]]]:
    """Sec. 3.2's CSVs, Figure 2 and report section; returns Table 1's text and rows."""
    write_csv(out / "table1.csv", sec32["table1"])
    write_csv(out / "sec32_best_fits.csv", sec32["best_fits"])
    rows = _table1_rows(sec32["table1"], settings)
    text = f"Table 1: G_1 chosen by BIC in each run (truth: {n_components[0]})\n"
    text += "\n".join(f"  {r['method']:>16}: {r['choices']}   counts {r['counts']}" for r in rows)
    report.section("Section 3.2: first layer, model selection (Table 1, Figure 2)")
    report.table(
        rows,
        ["method", "choices", "counts"],
        caption=f"G_1 chosen by BIC per run (truth {n_components[0]}); the study's "
        "rows are its published values.",
    )
    fig = plots.plot_metric_by_method(
        sec32["best_fits"],
        "ari_layer_1",
        title="First-layer ARI of the best-BIC fit per run",
        ylabel="ARI (layer 1)",
    )
    save_figure(out / "fig2_first_layer_ari.png", fig)
    report.figure("fig2_first_layer_ari.png", "Figure 2: first-layer ARI of the best-BIC fits")
    return text, rows


def _write_section33(
    sec33: dict[str, Any],
    n_components: Sequence[int],
    settings: ExperimentSettings,
    out: Path,
    report: Report,
) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """Sec. 3.3's CSVs, Figures 3-5 and report section; returns the text of Tables 2-3 and
    the tables (``sec33_summary``, ``table2``, ``table3``, ``modes``)."""
    runs = sec33["runs"]
    censuses = sec33["censuses"]
    write_csv(out / "sec33_runs.csv", runs)
    table2 = _table2_rows(runs, n_components)
    write_csv(out / "table2.csv", table2)
    ari_cols = [
        c
        for c in ("ari_path", *(f"ari_layer_{l + 1}" for l in range(len(n_components))))
        if any(c in r for r in runs)
    ]
    table3 = [
        {"method": r["method"], "run": r["run"], **{c: r.get(c, float("nan")) for c in ari_cols}}
        for r in runs
    ]
    write_csv(out / "table3.csv", table3)
    summary = [_summary_row(runs, method, ari_cols) for method in (*settings.algorithms, "gmm")]
    write_csv(out / "sec33_summary.csv", summary)
    modes = _write_modes(censuses, out)
    fig = plots.plot_metric_by_method(
        runs, "ari_path", title="Global (path) ARI per run", ylabel="ARI (paths)"
    )
    save_figure(out / "fig3_global_ari.png", fig)
    fig = plots.plot_histories(sec33["bic_histories"], ylabel="BIC", title="EM")
    save_figure(out / "fig4_bic_by_iteration.png", fig)
    n_starts = {alg: len(c.mode_of_run) for alg, c in censuses.items()}
    text = "Tables 2-3 (median [min, max] over runs)\n" + "\n".join(
        f"  {r['method']:>10}: " + ", ".join(f"{k} {v}" for k, v in r.items() if k != "method")
        for r in summary
    )
    text += "\nModes among random starts (mutual ARI >= 0.95): " + ", ".join(
        f"{alg} {c.n_modes} modes in {n_starts[alg]} starts" for alg, c in censuses.items()
    )
    _report_section33(report, summary, modes, table2, table3, ari_cols, n_starts)
    return text, {"sec33_summary": summary, "table2": table2, "table3": table3, "modes": modes}


def _table2_rows(runs: list[dict[str, Any]], n_components: Sequence[int]) -> list[dict[str, Any]]:
    """Table 2: the occupied and empty global paths of every run."""
    return [
        {
            "method": r["method"],
            "run": r["run"],
            "occupied_paths": r["occupied_paths"],
            "empty_paths": int(np.prod(n_components)) - r["occupied_paths"],
            "occupied_per_layer": r.get("occupied_layers", []),
        }
        for r in runs
    ]


def _summary_row(runs: list[dict[str, Any]], method: str, ari_cols: list[str]) -> dict[str, Any]:
    """One method's summary over its runs: ``median [min, max]`` of each ARI and of the
    occupied paths, and its best log-likelihood."""
    row: dict[str, Any] = {"method": method}
    for c in ari_cols:
        s = _summary(runs, method, c)
        if s:
            row[c] = f"{s['median']:.2f} [{s['min']:.2f}, {s['max']:.2f}]"
    occ = _summary(runs, method, "occupied_paths")
    row["occupied_paths"] = f"{occ['median']:.0f} [{occ['min']:.0f}, {occ['max']:.0f}]"
    ll = _summary(runs, method, "log_likelihood")
    row["best_loglik"] = f"{ll['max']:.1f}"
    return row


def _write_modes(censuses: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """The modes of every algorithm's random starts (CSV), their mutual ARIs (JSON) and
    Figure 5; returns the modes' rows."""
    modes = []
    for alg, census in censuses.items():
        for m in census.modes:
            modes.append({"algorithm": alg, **{k: v for k, v in m.items() if k != "members"}})
        fig = plots.plot_mutual_ari(census.mutual_ari, title=f"({alg} EM)")
        save_figure(out / f"fig5_mutual_ari_{alg}.png", fig)
    write_csv(out / "sec33_modes.csv", modes)
    write_json(out / "sec33_mutual_ari.json", {alg: c.mutual_ari for alg, c in censuses.items()})
    return modes


def _report_section33(
    report: Report,
    summary: list[dict[str, Any]],
    modes: list[dict[str, Any]],
    table2: list[dict[str, Any]],
    table3: list[dict[str, Any]],
    ari_cols: list[str],
    n_starts: dict[str, int],
) -> None:
    """Sec. 3.3's section of the report: the summary beside the study's figures, Figures 3-5,
    the modes and Tables 2-3."""
    report.section("Section 3.3: the global GMM (Figures 3-5, Tables 2-3)")
    report.table(
        summary,
        caption="Per-method summary over runs (median [min, max]). The "
        f"study: best global ARI {STUDY_REPORTED['best_global_ari']}, layer-2 ARI at "
        f"most {STUDY_REPORTED['max_layer2_ari']}, layer-3 ARI "
        f"{STUDY_REPORTED['layer3_ari']}.",
    )
    report.figure("fig3_global_ari.png", "Figure 3: global ARI per run")
    report.figure("fig4_bic_by_iteration.png", "Figure 4: BIC by EM iteration")
    for alg in n_starts:
        report.figure(
            f"fig5_mutual_ari_{alg}.png",
            f"Figure 5: mutual ARI between {n_starts[alg]} random starts ({alg} EM)",
        )
    report.table(
        modes,
        [
            "algorithm",
            "mode",
            "n_members",
            "best_score",
            "occupied_paths",
            "empty_paths",
            *ari_cols,
        ],
        caption="Modes among the random starts (Table 2: empty paths per mode).",
    )
    report.table(table2, caption="Table 2: occupied global paths per run.")
    report.table(table3, caption="Table 3: ARI per layer per run.")


def _table1_rows(
    table1: list[dict[str, Any]], settings: ExperimentSettings
) -> list[dict[str, Any]]:
    """Table 1: each method's G_1 chosen by BIC in every run, then the study's published rows."""
    rows = []
    for method in (*settings.algorithms, "gmm"):
        name = f"{method} (ours)" if method != "gmm" else "GMM VVV (ours)"
        rows.append(_table1_row(name, [r["G_chosen"] for r in table1 if r["method"] == method]))
    for name, key in (("DGMM (study)", "table1_dgmm"), ("mclust (study)", "table1_mclust")):
        rows.append(_table1_row(name, STUDY_REPORTED[key]))
    return rows


def _table1_row(method: str, choices: list[int]) -> dict[str, Any]:
    counts = collections.Counter(choices)
    return {
        "method": method,
        "choices": choices,
        "counts": ", ".join(f"G={g}: {counts[g]}" for g in sorted(counts)),
    }
