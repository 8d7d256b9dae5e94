"""The DGMM's generative process (Viroli & McLachlan 2019, sec. 2; study eq. 1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm._validation import RandomLike, as_generator
from bayes_dgmm.model.arrays import check_n_samples
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.paths import path_index

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Simulation:
    """A simulated data set with its ground truth.

    Attributes
    ----------
    X : (N, J) array, the observations ``z^(0)``
    labels : (N, L) int array, the 0-based component of every layer (layer 1 first)
    paths : (N,) int array, the global path (see :func:`bayes_dgmm.path_table`)
    scores : list over layers of (N, R_l) arrays, the latent scores ``z^(1) .. z^(L)``
    params : the parameters the data were drawn from
    """

    X: Array
    labels: NDArray[np.intp]
    paths: NDArray[np.intp]
    scores: list[Array]
    params: DGMMParams


def simulate(params: DGMMParams, n_samples: int, random_state: RandomLike = None) -> Simulation:
    """Draw ``n_samples`` observations from the DGMM, top layer first.

    ``z^(L) ~ N(0, I)``; for ``l = L..1``: ``g_l ~ pi^(l)`` independently and
    ``z^(l-1) = eta^(l)_{g_l} + Lambda^(l)_{g_l} z^(l) + sqrt(psi^(l)_{g_l}) * e``.
    """
    check_n_samples(n_samples)
    if not isinstance(params, DGMMParams):
        raise TypeError(f"params must be a DGMMParams, got {type(params).__name__}.")
    scores, labels = params.draw(n_samples, as_generator(random_state))
    return Simulation(
        X=scores[0],
        labels=labels,
        paths=path_index(labels, params.n_components),
        scores=scores[1:],
        params=params,
    )
