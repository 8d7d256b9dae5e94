"""The parameters as one unconstrained vector, for Anderson acceleration and Newton steps.

Per layer, bottom up: ``log pi`` (G_l), ``eta`` (G_l R_{l-1}), ``Lambda`` (G_l R_{l-1} R_l)
and ``log psi`` (G_l R_{l-1}), each flattened row-major. :func:`layout` says where each block
sits; :func:`pack`, :func:`unpack` and the JAX objective of :mod:`bayes_dgmm.em.newton` read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]


@dataclass(frozen=True)
class LayerBlocks:
    """Where one layer's parameters sit in the vector: ``G`` components mapping ``R``
    factors to ``D`` dimensions (``D = R_{l-1}``, ``R = R_l``)."""

    G: int
    D: int
    R: int
    log_weights: slice
    eta: slice
    Lambda: slice
    log_psi: slice


def layout(
    n_components: Sequence[int], n_factors: Sequence[int], n_features: int
) -> list[LayerBlocks]:
    """The blocks of every layer, layer 1 first (module docstring)."""
    dims = (n_features, *n_factors)
    out = []
    i = 0
    for l, G in enumerate(n_components):
        D, R = dims[l], dims[l + 1]
        eta0 = i + G
        lam0 = eta0 + G * D
        psi0 = lam0 + G * D * R
        i = psi0 + G * D
        out.append(
            LayerBlocks(
                G, D, R, slice(eta0 - G, eta0), slice(eta0, lam0), slice(lam0, psi0), slice(psi0, i)
            )
        )
    return out


def params_layout(params: DGMMParams) -> list[LayerBlocks]:
    """:func:`layout` of the architecture of ``params``."""
    return layout(params.n_components, params.n_factors, params.n_features)


def pack(params: DGMMParams) -> Array:
    """All parameters as one vector: per layer ``log pi``, ``eta``, ``Lambda``, ``log psi``."""
    parts: list[Array] = []
    for l in range(params.n_layers):
        parts += [
            np.log(params.pi[l]),
            params.eta[l].ravel(),
            params.Lambda[l].ravel(),
            np.log(params.psi[l]).ravel(),
        ]
    return np.concatenate(parts)


def unpack(vector: Array, like: DGMMParams) -> DGMMParams:
    """Inverse of :func:`pack` for the architecture of ``like`` (weights renormalised)."""
    pi: list[Array] = []
    eta: list[Array] = []
    lam: list[Array] = []
    psi: list[Array] = []
    for b in params_layout(like):
        logw = vector[b.log_weights]
        w = np.exp(logw - logw.max())
        pi.append(w / w.sum())
        eta.append(vector[b.eta].reshape(b.G, b.D))
        lam.append(vector[b.Lambda].reshape(b.G, b.D, b.R))
        psi.append(np.exp(vector[b.log_psi]).reshape(b.G, b.D))
    return DGMMParams(pi=pi, eta=eta, Lambda=lam, psi=psi)
