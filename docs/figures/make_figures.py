"""Make the README's figure: the study data on its first two principal components, coloured by
the true path.

Run from the repository root: ``.venv/bin/python docs/figures/make_figures.py``. It writes
``docs/figures/study-paths.png``; nothing in it is random.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

from bayes_dgmm.datasets import load_icbinb

HERE = Path(__file__).resolve().parent


def study_paths(path: Path) -> None:
    """The study data (N = 4000, J = 17) projected on its first two principal components,
    one colour per true path (18 paths: G = (3, 3, 2))."""
    data = load_icbinb()
    centred = data.X - data.X.mean(axis=0)
    # principal axes from the SVD of the centred data; the sign of each axis is fixed so
    # that the figure does not flip between LAPACK builds
    _, sing, axes = np.linalg.svd(centred, full_matrices=False)
    top = axes[:2]
    signs = np.sign(top[np.arange(2), np.argmax(np.abs(top), axis=1)])
    scores = centred @ (top.T * signs)
    explained = sing[:2] ** 2 / np.sum(sing**2)
    n_paths = data.params.n_paths
    colours = plt.get_cmap("tab20")(np.arange(n_paths) % 20)

    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    for p in range(n_paths):
        mask = data.paths == p
        ax.scatter(
            scores[mask, 0],
            scores[mask, 1],
            s=4,
            alpha=0.6,
            color=colours[p],
            label=str(p),
            rasterized=True,
        )
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of the variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of the variance)")
    thousands = FuncFormatter(lambda value, _: f"{value / 1000:g}k" if value else "0")
    ax.xaxis.set_major_formatter(thousands)
    ax.yaxis.set_major_formatter(thousands)
    ax.set_title("Study data (Selosse et al. 2020): N = 4000, J = 17, 18 true paths")
    legend = ax.legend(
        title="path (0-based)",
        ncols=2,
        fontsize="small",
        markerscale=3,
        frameon=False,
        bbox_to_anchor=(1.01, 1.0),
        loc="upper left",
    )
    for handle in legend.legend_handles:
        if handle is not None:
            handle.set_alpha(1.0)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    study_paths(HERE / "study-paths.png")
