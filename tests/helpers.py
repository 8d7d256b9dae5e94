"""Helpers shared by several test modules."""

import numpy as np

from bayes_dgmm import DGMMParams


def jitter(params: DGMMParams, rng: np.random.Generator, scale: float) -> DGMMParams:
    """A nearby parameter draw: small normal noise on eta and Lambda, log-normal on psi."""
    return DGMMParams(
        pi=params.pi,
        eta=[e + rng.normal(0, scale, e.shape) for e in params.eta],
        Lambda=[lam + rng.normal(0, scale, lam.shape) for lam in params.Lambda],
        psi=[s * np.exp(rng.normal(0, scale, s.shape)) for s in params.psi],
    )
