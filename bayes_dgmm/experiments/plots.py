"""Figures (matplotlib). Every function returns a new ``Figure`` and shows nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike


def _by_method(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for row in rows:
        value = row.get(key)
        if value is not None and np.isfinite(value):
            out.setdefault(str(row["method"]), []).append(float(value))
    return out


def plot_metric_by_method(
    rows: Sequence[Mapping[str, Any]], key: str, *, title: str = "", ylabel: str | None = None
) -> Figure:
    """Box plot with the individual runs overlaid, one box per method."""
    groups = _by_method(rows, key)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    names = list(groups)
    if names:
        ax.boxplot([groups[n] for n in names], tick_labels=names, showfliers=False)
        rng = np.random.default_rng(0)  # jitter only; fixed so figures are reproducible
        for i, n in enumerate(names, start=1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(groups[n])), groups[n], s=12, alpha=0.7)
    ax.set_ylabel(ylabel or key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


def plot_histories(
    histories: Mapping[str, Sequence[Sequence[float]]], *, ylabel: str = "BIC", title: str = ""
) -> Figure:
    """One panel per method, one line per run: a criterion by EM iteration (study Fig. 4)."""
    fig = Figure(figsize=(5 * max(len(histories), 1), 4), layout="constrained")
    axes = fig.subplots(1, max(len(histories), 1), squeeze=False)[0]
    for ax, (name, runs) in zip(axes, histories.items(), strict=False):
        for h in runs:
            ax.plot(np.arange(1, len(h) + 1), h, lw=0.8, alpha=0.8)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name} {title}".strip())
        ax.grid(alpha=0.3)
    return fig


def plot_mutual_ari(matrix: ArrayLike, *, title: str = "") -> Figure:
    """Heat map of the mutual ARI between runs and the histogram of its off-diagonal values
    (study Fig. 5)."""
    m = np.asarray(matrix)
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    im = ax1.imshow(m, vmin=0, vmax=1, cmap="viridis")
    fig.colorbar(im, ax=ax1, label="ARI")
    ax1.set_xlabel("run")
    ax1.set_ylabel("run")
    ax1.set_title(f"mutual ARI {title}".strip())
    off = m[np.triu_indices_from(m, k=1)]
    ax2.hist(off, bins=np.linspace(0, 1, 41))
    ax2.set_xlabel("ARI between two runs")
    ax2.set_ylabel("pairs")
    ax2.set_title(f"{off.size} pairs, {np.mean(off >= 0.95):.0%} with ARI >= 0.95")
    return fig


def plot_path_occupancy(
    counts: Mapping[str, ArrayLike], *, title: str = "observations per global path"
) -> Figure:
    """Bar chart of the number of observations in every path, one row per fit."""
    n = max(len(counts), 1)
    fig = Figure(figsize=(8, 1.8 * n + 0.5), layout="constrained")
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, (name, c) in zip(axes, counts.items(), strict=False):
        c = np.asarray(c)
        ax.bar(np.arange(c.size), c, color=["C0" if v else "C3" for v in c])
        ax.set_ylabel(name, rotation=0, ha="right")
        ax.set_xticks(np.arange(c.size))
    axes[0].set_title(title)
    axes[-1].set_xlabel("path (layer 1 fastest)")
    return fig


def relabelling_tree(relabelling: Any, layer: int, feature: int = 0) -> Any:
    """``E[x_feature | g_layer = k]`` per draw, raw and relabelled, as a DataTree whose
    ``posterior`` has the variables ``"raw"`` and ``"relabelled"`` (what the ArviZ plots
    below read)."""
    import xarray as xr

    name = f"mean_x_{layer}"
    pair = {
        "raw": relabelling.identified_raw[name].isel(feature=feature, drop=True),
        "relabelled": relabelling.identified_relabelled[name].isel(feature=feature, drop=True),
    }
    ds = xr.Dataset(pair)
    # ArviZ selects by coordinate values: every dimension needs its coordinate
    ds = ds.assign_coords({d: np.arange(n) for d, n in ds.sizes.items() if d not in ds.coords})
    ds.attrs["quantity"] = f"E[x_{feature} | layer {layer} component]"
    return xr.DataTree.from_dict({"posterior": ds})


def plot_relabelling(relabelling: Any, layer: int, feature: int = 0) -> Figure:
    """ArviZ trace plot (``arviz_plots.plot_trace``) of ``E[x_feature | g_layer = k]``, raw
    next to relabelled, one panel per component, one colour per chain.

    Raw traces jump between the component levels when labels switch; relabelled traces of a
    single mode stay at one level. ``relabelling`` is a
    :class:`~bayes_dgmm.diagnostics.posterior.PosteriorRelabelling`.
    """
    return _raw_and_relabelled("plot_trace", relabelling, layer, feature)


def plot_rank_relabelling(relabelling: Any, layer: int, feature: int = 0) -> Figure:
    """ArviZ rank plot (``arviz_plots.plot_rank``: the ECDF of each chain's fractional ranks
    minus the uniform's, with a simultaneous band) of ``E[x_feature | g_layer = k]``, raw
    and relabelled. Chains of one posterior mode give curves inside the band; chains in
    different labellings (raw) or different modes (relabelled) leave it."""
    return _raw_and_relabelled("plot_rank", relabelling, layer, feature)


def _raw_and_relabelled(plot: str, relabelling: Any, layer: int, feature: int) -> Figure:
    """The ArviZ plot ``plot`` of :func:`relabelling_tree`: one row of components for the
    raw draws, one for the relabelled."""
    import arviz_plots as azp

    tree = relabelling_tree(relabelling, layer, feature)
    wrap = tree["posterior"].sizes[f"component_{layer}"]
    pc = getattr(azp, plot)(tree, backend="matplotlib", col_wrap=wrap, figure_kwargs=_size(wrap))
    return pc.viz["figure"].item()


def _size(n_cols: int) -> dict[str, Any]:
    """Figure size of a two-row (raw, relabelled) ArviZ grid with ``n_cols`` panels a row."""
    return {"figsize": (3.6 * n_cols, 5.6), "layout": "constrained"}
