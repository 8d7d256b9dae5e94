"""Starting points of Bayesian fits: none, an EM fit, or given parameters."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm._validation import RandomLike
from bayes_dgmm.bayes.model import params_to_point
from bayes_dgmm.em.estimator import DeepGaussianMixture
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.spec import DGMMSpec

logger = logging.getLogger(__name__)

Array = NDArray[np.float64]


def start_point(
    init: Any,
    X: Array,
    spec: DGMMSpec,
    model: Any,
    constraint: str | None,
    random_seed: RandomLike,
) -> dict[str, Array] | None:
    """The free-variable values of ``model`` to start a fit at, or None for PyMC's default.

    ``init`` is None, ``"em"`` (fit :class:`~bayes_dgmm.em.DeepGaussianMixture` with the
    spec's ``[fit]`` ``n_init`` and ``max_iter``), a :class:`DGMMParams`, or an object with
    ``params_``; it must have the spec's architecture.
    """
    if init is None:
        return None
    if isinstance(init, str):
        if init != "em":
            raise ValueError(
                f"init={init!r} is not supported; give None, 'em', a DGMMParams or a "
                "fitted estimator with a params_ attribute."
            )
        logger.info("init='em': fitting DeepGaussianMixture for the start")
        em = DeepGaussianMixture(
            spec.n_components,
            n_factors=spec.n_factors,
            n_init=int(spec.fit.get("n_init", 1)),
            max_iter=int(spec.fit.get("max_iter", 200)),
            random_state=random_seed,
        ).fit(X)
        params = em.params_
    elif isinstance(init, DGMMParams):
        params = init
    elif hasattr(init, "params_"):
        params = init.params_
    else:
        raise TypeError(
            f"init={init!r} is not a start; give None, 'em', a DGMMParams or a fitted "
            "estimator with a params_ attribute."
        )
    if params.n_components != spec.n_components or params.n_factors != spec.n_factors:
        raise ValueError(
            f"init has n_components={params.n_components}, n_factors={params.n_factors} "
            f"but the model has {spec.n_components}, {spec.n_factors}; use a start of the "
            "same architecture."
        )
    return params_to_point(params, model, constraint)
