"""Partition metrics: ARI per layer and per path, occupied paths."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import adjusted_rand_score

from bayes_dgmm.model.paths import path_index


def layer_aris(
    true_labels: ArrayLike, pred_labels: ArrayLike, n_components: Sequence[int]
) -> dict[str, float]:
    """ARI of the global path partition and of every layer's partition.

    Parameters
    ----------
    true_labels, pred_labels : (N, L) int arrays of 0-based components, layer 1 first
    n_components : sequence of int, ``(G_1, ..., G_L)``

    Returns
    -------
    dict with keys ``"path"``, ``"layer_1"``, ..., ``"layer_L"``.
    """
    t, p = np.asarray(true_labels), np.asarray(pred_labels)
    if t.shape != p.shape:
        raise ValueError(
            f"true_labels has shape {t.shape} but pred_labels has {p.shape}; pass one row per "
            "observation and one column per layer for both."
        )
    out = {
        "path": float(adjusted_rand_score(path_index(t, n_components), path_index(p, n_components)))
    }
    for l in range(t.shape[1]):
        out[f"layer_{l + 1}"] = float(adjusted_rand_score(t[:, l], p[:, l]))
    return out


def n_occupied(labels: ArrayLike, n_clusters: int) -> int:
    """Number of the ``n_clusters`` clusters that hold at least one observation."""
    return int(np.count_nonzero(np.bincount(np.asarray(labels), minlength=n_clusters)))
