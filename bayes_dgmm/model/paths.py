"""Paths through the DGMM, enumerated once (Viroli & McLachlan 2019, eq. 3).

Path ``p = g_1 + G_1 (g_2 + G_2 (g_3 + ...))`` (0-based) with layer 1 varying fastest: the
order of R's ``expand.grid`` used by the study, so the study's 1-based path ``k`` is our
path ``k - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bayes_dgmm._validation import check_layer

Array = NDArray[np.float64]


def path_table(n_components: Sequence[int]) -> NDArray[np.intp]:
    """Every path through the network, layer 1 varying fastest.

    Parameters
    ----------
    n_components : sequence of int, ``(G_1, ..., G_L)``

    Returns
    -------
    (prod G_l, L) int array; row ``p`` holds the 0-based component of each layer of path ``p``.
    """
    dims = tuple(int(g) for g in n_components)
    if not dims:  # the empty sub-path above the top layer
        return np.zeros((1, 0), dtype=np.intp)
    idx = np.unravel_index(np.arange(math.prod(dims)), dims, order="F")
    return np.stack(idx, axis=1).astype(np.intp)


def path_index(labels: ArrayLike, n_components: Sequence[int]) -> NDArray[np.intp]:
    """Path index of per-layer labels (the inverse of :func:`path_table`).

    Parameters
    ----------
    labels : (N, L) int array of 0-based components, layer 1 first
    n_components : sequence of int, ``(G_1, ..., G_L)``

    Returns
    -------
    (N,) int array
    """
    lab = np.asarray(labels)
    dims = tuple(int(g) for g in n_components)
    if lab.ndim != 2 or lab.shape[1] != len(dims):
        raise ValueError(
            f"labels has shape {lab.shape}; expected (n_samples, {len(dims)}), one column a layer."
        )
    return np.ravel_multi_index(tuple(lab.T), dims, order="F").astype(np.intp)


def subpath_weights(pi: Sequence[Array]) -> Array:
    """Products of layer weights over all sub-paths, first listed layer fastest."""
    w = np.ones(1)
    for p in reversed(pi):
        # new index g + G * s: the earlier layer varies fastest
        w = np.outer(w, p).ravel()
    return w


def aggregate_paths(proba: Array, n_components: Sequence[int], layer: int) -> Array:
    """Sum path probabilities (N, n_paths) into layer ``layer``'s components (N, G_layer)."""
    layer = check_layer(layer, len(n_components))
    labels = path_table(n_components)[:, layer - 1]
    out = np.zeros((proba.shape[0], n_components[layer - 1]))
    np.add.at(out.T, labels, proba.T)
    return out
