"""Importance weights of an approximation's draws: the Pareto k of their tail (PSIS).

An approximation ``q`` of a posterior ``p`` (Laplace, Pathfinder) gives each of its draws the
log weight ``log p - log q``; the Pareto k of the weights' upper tail says whether importance
sampling with them is reliable. Vehtari, Simpson, Gelman, Yao & Gabry (2024), "Pareto smoothed
importance sampling", JMLR 25(72).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

#: Pareto k of the importance weights below which the draws are trusted (Vehtari et al. 2024:
#: above 0.7 the estimates' error falls too slowly with the number of draws to be of use)
PARETO_K_OK = 0.7


def pareto_k(log_weights: ArrayLike) -> float:
    """Pareto k of PSIS on importance log weights (``arviz_stats``).

    Parameters
    ----------
    log_weights : (S,) ``log p - log q`` of each draw

    Returns
    -------
    The tail's k; 0.0 when the weights are equal, inf if any is not finite (a draw outside
    the density's support), the tail fit fails or there are too few draws to fit it.
    """
    from arviz_stats.base import array_stats

    lw = np.asarray(log_weights, dtype=float)
    if not np.all(np.isfinite(lw)):
        return math.inf
    if lw.size and np.ptp(lw) <= 1e-8:
        # equal weights (q is the target, e.g. a Gaussian posterior): no tail to fit, and
        # the fit would fail; PSIS is exact here
        return 0.0
    try:
        # psislw takes log-likelihood-like values and weights by exp(-value) (its LOO use),
        # so the log weights go in negated
        _, k = array_stats.psislw(-lw, r_eff=1.0)
    except ValueError:  # too few draws for a tail of 5 (fewer than about 25)
        return math.inf
    # NaN: the generalized Pareto fit to the tail failed (very uneven weights)
    return float(k) if np.isfinite(k) else math.inf
