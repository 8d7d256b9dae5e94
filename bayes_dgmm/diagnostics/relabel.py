"""Label switching: align the components of every layer across draws, chains or runs.

A DGMM is invariant to a permutation of the components of any one layer (``pi``, ``eta``,
``Lambda`` and ``psi`` of that layer permuted together), so a sampler that mixes well visits
``prod_l G_l!`` copies of every mode. This module finds, per layer, the permutation that
aligns each draw to a pivot, by

- ``"hungarian"``: squared distance between *identified* component features -- the mean and
  standard deviations of ``x`` given the component (computed from the global GMM, so they are
  invariant to the rotations of the latent scores that make ``Lambda`` itself unidentified);
- ``"ecr"``: ECR (Papastamoulis & Iliopoulos 2010) on each draw's Bayes allocations of X;
- ``"stephens"``: Stephens' (2000) Kullback-Leibler algorithm on each draw's classification
  probabilities of X.

Everything returns new objects; inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm.diagnostics._kernels import (
    apply_permutations,
    ecr_permutations,
    hungarian_permutations,
    stephens_permutations,
)
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.paths import path_index, path_table

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]

RELABEL_METHODS = ("hungarian", "ecr", "stephens")


def layer_features(params: DGMMParams, layer: int) -> Array:
    """Identified features of layer ``layer``'s components, shape (G_l, 2 J).

    For component ``k``: the mean of ``x`` given ``g_l = k`` and the standard deviations of
    ``x`` given ``g_l = k`` (mixtures over the paths through ``k`` of the global GMM).
    """
    gmm = params.global_gmm()
    labels = params.paths[:, layer - 1]
    feats = []
    for k in range(params.n_components[layer - 1]):
        on = labels == k
        w = gmm.weights[on] / gmm.weights[on].sum()
        mean = w @ gmm.means[on]
        second = np.einsum(
            "p,pj->j", w, np.diagonal(gmm.covariances[on], axis1=1, axis2=2) + gmm.means[on] ** 2
        )
        feats.append(np.concatenate([mean, np.sqrt(np.maximum(second - mean**2, 0.0))]))
    return np.asarray(feats)


def permute_layers(params: DGMMParams, perms: Sequence[IntArray]) -> DGMMParams:
    """New parameters with layer ``l``'s components reordered: new ``k`` is old ``perms[l][k]``."""
    return DGMMParams(
        pi=[p[perm] for p, perm in zip(params.pi, perms, strict=True)],
        eta=[e[perm] for e, perm in zip(params.eta, perms, strict=True)],
        Lambda=[lam[perm] for lam, perm in zip(params.Lambda, perms, strict=True)],
        psi=[s[perm] for s, perm in zip(params.psi, perms, strict=True)],
    )


def path_permutation(perms: Sequence[IntArray], n_components: Sequence[int]) -> IntArray:
    """The path permutation induced by per-layer ones: new path ``p`` is old path ``out[p]``."""
    table = path_table(n_components)
    old = np.column_stack([np.asarray(perm)[table[:, l]] for l, perm in enumerate(perms)])
    return path_index(old, n_components)


@dataclass
class Relabelling:
    """Per-layer permutations aligning a collection of parameter draws to a pivot.

    Attributes
    ----------
    permutations : list over layers of (T, G_l) int arrays (new label k = old perms[t, k])
    params : the relabelled draws (new objects)
    pivot : index of the pivot draw
    method : the algorithm used
    """

    permutations: list[IntArray]
    params: list[DGMMParams]
    pivot: int
    method: str
    n_iter: dict[int, int] = field(default_factory=dict)


def relabel_draws(
    draws: Sequence[DGMMParams],
    *,
    method: str = "hungarian",
    pivot: int = 0,
    X: Array | None = None,
) -> Relabelling:
    """Align every layer's components of ``draws`` to those of ``draws[pivot]``.

    Parameters
    ----------
    draws : sequence of T DGMMParams of one architecture (posterior draws, EM restarts, ...)
    method : "hungarian", "ecr" or "stephens"
    pivot : index of the reference draw (e.g. the MAP or the highest-likelihood draw)
    X : (N, J) array, required by "ecr" and "stephens" (they work on the draws' partitions)
    """
    if method not in RELABEL_METHODS:
        raise ValueError(f"method={method!r} is not one of {RELABEL_METHODS}.")
    if method != "hungarian" and X is None:
        raise ValueError(f"method={method!r} works on partitions of the data; pass X.")
    draws = list(draws)
    if not 0 <= pivot < len(draws):
        raise ValueError(f"pivot={pivot} is out of range for {len(draws)} draws.")
    comps = draws[pivot].n_components
    perms: list[IntArray] = []
    n_iter: dict[int, int] = {}
    for layer in range(1, len(comps) + 1):
        if method == "hungarian":
            feats = np.stack([layer_features(d, layer) for d in draws])
            scale = feats.reshape(-1, feats.shape[-1]).std(axis=0)
            scale = np.where(scale > 0, scale, 1.0)
            perms.append(hungarian_permutations(feats / scale, feats[pivot] / scale))
        else:
            assert X is not None
            proba = np.stack([d.predict_proba(X, layer=layer) for d in draws])
            if method == "ecr":
                alloc = proba.argmax(axis=2)
                perms.append(ecr_permutations(alloc, alloc[pivot], comps[layer - 1]))
            else:
                p, n_iter[layer] = stephens_permutations(proba, proba[pivot])
                perms.append(p)
    relabelled = [permute_layers(d, [p[t] for p in perms]) for t, d in enumerate(draws)]
    return Relabelling(
        permutations=perms, params=relabelled, pivot=pivot, method=method, n_iter=n_iter
    )


def reorder(values: NDArray, perms: IntArray, axis: int = 1) -> NDArray:
    """Reorder a component axis of per-draw values (a thin public alias of the kernel)."""
    return apply_permutations(values, perms, axis=axis)
