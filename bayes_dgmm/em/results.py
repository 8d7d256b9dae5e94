"""What an EM fit reports: the count of free parameters behind BIC, the history and the
restarts' summaries, and the ConvergenceWarnings of
:class:`~bayes_dgmm.em.estimator.DeepGaussianMixture`.

Free parameters (used by BIC, AIC and ICL), the usual count of a mixture of factor analysers
applied layer by layer: for layer ``l`` and each of its ``G_l`` components, ``eta``
(``R_{l-1}``), ``Lambda`` (``R_{l-1} R_l``) less ``R_l (R_l - 1) / 2`` for its rotational
redundancy, and ``psi`` (``R_{l-1}``); plus ``G_l - 1`` weights. A rotation ``Q`` of
``z^(l)`` leaves the model unchanged when it is absorbed by ``Lambda^(l) Q``; at the top layer
this is the exact invariance ``z^(L) ~ N(0, I)``; below, it is the factor-analytic convention
(see :func:`n_free_parameters`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning

from bayes_dgmm.em.driver import STATIONARY_WINDOW, STATIONARY_Z, EMResult, stationary_drift
from bayes_dgmm.em.restarts import Settings
from bayes_dgmm.model.spec import validate_architecture

Array = NDArray[np.float64]


def n_free_parameters(
    n_features: int, n_components: Sequence[int], n_factors: Sequence[int]
) -> int:
    """Number of free parameters of a DGMM, as used by :meth:`DeepGaussianMixture.bic`.

    For layer ``l`` (``R_0 = J``) and each of its ``G_l`` components: ``R_{l-1}`` intercepts,
    ``R_{l-1} R_l - R_l (R_l - 1) / 2`` loadings (a rotation of the factors is absorbed by
    the loadings, as for factor analysis) and ``R_{l-1}`` noise variances; plus ``G_l - 1``
    weights. This is the usual MFA count applied layer-wise.

    Parameters
    ----------
    n_features : int, J
    n_components, n_factors : the architecture ``(G_1..G_L)``, ``(R_1..R_L)``
    """
    comps, facts = validate_architecture(n_components, n_factors, n_features)
    dims = (n_features, *facts)
    total = 0
    for l, G in enumerate(comps):
        r_in, r = dims[l], dims[l + 1]
        per_component = 2 * r_in + r_in * r - r * (r - 1) // 2
        total += G * per_component + G - 1
    return total


@dataclass(frozen=True)
class FitHistory:
    """Trace of one EM run (the study's Figure 4).

    Attributes
    ----------
    log_likelihood : (n_iter + 1,) array; entry ``k`` is the total log-likelihood after
        ``k`` iterations (entry 0: at the starting values)
    bic : (n_iter + 1,) array, ``-2 log_likelihood + n_parameters log N``
    """

    log_likelihood: Array
    bic: Array


@dataclass(frozen=True)
class RestartSummary:
    """Outcome of one restart: its final log-likelihood, iterations and convergence flag."""

    log_likelihood: float
    n_iter: int
    converged: bool
    remaining: float = math.nan


def warn_about_fit(result: EMResult, s: Settings, n_init: int, n_samples: int) -> None:
    """The fit's ConvergenceWarnings: the best restart failed, did not converge (saying
    which criterion and by how much), or kept empty or singular components."""
    if result.failure is not None:
        warnings.warn(
            f"EM stopped early because {result.failure}; the parameters of the previous "
            "iteration are kept. Standardise X, raise reg_psi or reduce n_factors.",
            ConvergenceWarning,
            stacklevel=3,
        )
    elif not result.converged:
        figure = _unconverged_reason(result, s, n_samples)
        if result.n_iter >= s.max_iter:
            when = f"in max_iter={s.max_iter} iterations"
        else:
            when = f"when stopping={s.stopping!r} ended it after {result.n_iter} iterations"
        warnings.warn(
            f"The best of n_init={n_init} restarts did not converge {when}: {figure}. "
            "Increase max_iter, or try more restarts (n_init).",
            ConvergenceWarning,
            stacklevel=3,
        )
    kept = {
        "Empty": (result.empty, "they hold no observation", "n_components"),
        "Singular": (
            result.singular,
            "the second-moment matrix of their latent scores is not positive definite, so "
            "their M-step update could not be computed",
            "n_factors for that layer",
        ),
    }
    for kind, (where, why, what) in kept.items():
        if where:
            named = ", ".join(f"layer {l} component {g}" for l, g in where)
            warnings.warn(
                f"{kind} components ({named}): {why}; they kept their previous "
                f"parameters. Reduce {what} or try more restarts (n_init). Layers are "
                "counted from 1 and components from 0, as predict(X, layer) labels them.",
                ConvergenceWarning,
                stacklevel=3,
            )


def _unconverged_reason(result: EMResult, s: Settings, n_samples: int) -> str:
    """Why the best restart is not called converged, with its figure, in words."""
    if s.stopping == "deepgmm":
        figure = f"deepgmm's rule (eps={s.tol}) did not hold"
    elif s.stopping == "stationary":
        drift, z = stationary_drift(result.log_likelihood)
        figure = (
            f"the log-likelihood's mean over the last {STATIONARY_WINDOW} iterations "
            f"moved {drift:.3g} nats from the {STATIONARY_WINDOW} before, z = {z:.2f} "
            f"(stationary: |z| <= {STATIONARY_Z:g})"
        )
        if not math.isfinite(z):
            figure = (
                f"its stationarity was not measured: {s.max_iter} iterations are "
                f"fewer than the {2 * STATIONARY_WINDOW} the test needs"
            )
    elif s.algorithm == "stochastic":
        # its log-likelihood is not monotone, so Aitken's estimate does not apply
        figure = (
            f"stopping={s.stopping!r} does not measure a stochastic EM's convergence; "
            "the stationarity rule (stopping='stationary') does"
        )
    elif result.criterion == "newton" and math.isnan(result.remaining):
        figure = "the Newton decrement could not be computed (a non-finite Hessian)"
    elif result.criterion == "newton":
        figure = (
            f"the Newton decrement (the log-likelihood a quadratic model still "
            f"predicts) is {result.remaining:.3g} nats, above tol * N = "
            f"{s.tol * n_samples:.3g}"
        )
    elif math.isinf(result.remaining):
        figure = "the log-likelihood was still rising without slowing down"
    elif math.isnan(result.remaining):
        figure = (
            "Aitken's estimate of the log-likelihood still to gain could not be "
            "formed (too few consecutive iterations of one EM map)"
        )
    else:
        figure = (
            f"Aitken's estimate of the log-likelihood still to gain is "
            f"{result.remaining:.3g} nats, above tol * N = {s.tol * n_samples:.3g}"
        )
    return figure
