"""Anderson acceleration of a fixed-point map on the parameter vector.

:func:`bayes_dgmm.em.driver.run_em` accelerates a monotone EM step with it (the last
:data:`ANDERSON_MEMORY` iterates, a small ridge on the least-squares system); the driver's
safeguard refuses a proposal that lowers the log-likelihood.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import LinAlgError

from bayes_dgmm.em.vector import pack, unpack
from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]

#: Anderson acceleration keeps this many past iterates (its "memory").
ANDERSON_MEMORY = 10


class Anderson:
    """Anderson acceleration (memory :data:`ANDERSON_MEMORY`) of the EM map on the
    :func:`~bayes_dgmm.em.vector.pack` vector: ``x`` the last iterate, ``f`` its step."""

    def __init__(self, params: DGMMParams, image: DGMMParams) -> None:
        self.like = params
        self.dX: list[Array] = []
        self.dF: list[Array] = []
        self.x = pack(params)
        self.f = pack(image) - self.x

    def clear(self) -> None:
        self.dX.clear()
        self.dF.clear()

    def restart(self, params: DGMMParams, image: DGMMParams) -> None:
        """Forget the past iterates and start again from ``params`` (whose step is ``image``)."""
        self.clear()
        self.x = pack(params)
        self.f = pack(image) - self.x

    def propose(self) -> DGMMParams | None:
        """The extrapolated parameters, or None without a past or when the least-squares
        system cannot be solved (the past is then forgotten)."""
        if not self.dF:
            return None
        DF, DXm = np.array(self.dF).T, np.array(self.dX).T
        gram = DF.T @ DF
        gram += 1e-10 * np.trace(gram) / gram.shape[0] * np.eye(gram.shape[0])
        try:
            gamma = np.linalg.solve(gram, DF.T @ self.f)
            proposal = self.x + self.f - (DXm + DF) @ gamma
            return unpack(proposal, self.like)
        except (LinAlgError, ValueError, FloatingPointError):
            self.clear()
            return None

    def record(self, params: DGMMParams, image: DGMMParams) -> None:
        """Add the iterate ``params`` and its step ``image`` to the memory."""
        x_new = pack(params)
        f_new = pack(image) - x_new
        self.dX.append(x_new - self.x)
        self.dF.append(f_new - self.f)
        if len(self.dX) > ANDERSON_MEMORY:
            self.dX.pop(0)
            self.dF.pop(0)
        self.x, self.f = x_new, f_new
