"""The gauges of the latent layers: which member of a likelihood-equivalent family of DGMM
parameters the Bayesian model works in, and the exact maps into it.

Moving the scores of an intermediate layer to ``a * (z^(l) + b)`` (``a > 0`` per factor),
with the layers on either side absorbing it, leaves the likelihood unchanged
(:meth:`~bayes_dgmm.model.params.DGMMParams.anchored`). A gauge picks one member per family:

- ``"standardised"`` (the Bayesian model's default): intercepts of layers ``l >= 2`` sum to
  zero over the components, and per factor the component-wise total variance
  ``t = |Lambda_g[r]|^2 + psi_g[r]`` has geometric mean one over the components; the loadings
  of the latent layers are then bounded by ``sqrt(t)`` (communalities and uniquenesses);
- ``"noise"``: the same intercepts, and the noise variances ``psi_g[r]`` with geometric mean
  one (:meth:`DGMMParams.anchored`).

Why the first is the default, with the measurements: ``docs/bayesian-model.md``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]

GAUGES = ("standardised", "noise")


def check_gauge(gauge: str) -> str:
    """Return ``gauge`` if it is one of :data:`GAUGES`, else raise ValueError."""
    if gauge not in GAUGES:
        raise ValueError(f"gauge={gauge!r} is not supported; choose one of {list(GAUGES)}.")
    return gauge


def standardised(params: DGMMParams) -> DGMMParams:
    """The same distribution in the ``"standardised"`` gauge (module docstring).

    Layers are processed from the top down, so standardising a layer leaves the ones above
    standardised; applying it twice changes nothing (to round-off).
    """
    return params.anchored(pin="total")


def in_gauge(params: DGMMParams, gauge: str) -> DGMMParams:
    """``params`` moved into ``gauge`` (an exact, likelihood-preserving map)."""
    return standardised(params) if check_gauge(gauge) == "standardised" else params.anchored()


def latent_coordinates(Lambda: Array, psi: Array) -> tuple[Array, Array]:
    """The standardised gauge's free coordinates of one latent layer's rows.

    Returns ``c = Lambda / sqrt(psi)`` (the loadings in units of the noise sd, shape of
    ``Lambda``) and ``log t`` with ``t = |Lambda_g[r]|^2 + psi_g[r]`` (shape of ``psi``);
    :func:`from_latent_coordinates` inverts it exactly.
    """
    c = Lambda / np.sqrt(psi)[..., None]
    log_t = np.log(np.sum(Lambda**2, axis=-1) + psi)
    return c, log_t


def from_latent_coordinates(c: Array, log_t: Array) -> tuple[Array, Array]:
    """``(Lambda, psi)`` from :func:`latent_coordinates`' ``(c, log t)``:
    ``Lambda = sqrt(t) c / sqrt(1 + |c|^2)``, ``psi = t / (1 + |c|^2)``."""
    scale = np.exp(0.5 * log_t) / np.sqrt(1.0 + np.sum(c**2, axis=-1))
    return scale[..., None] * c, scale**2
