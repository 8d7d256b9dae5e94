"""The Bayesian model's prior scales: their defaults and the overrides of a spec's
``[priors]`` table or the estimator's ``priors``, checked without building a model, so that
a spec is refused before any work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

PRIOR_DEFAULTS: dict[str, float] = {
    "pi_alpha": 1.0,
    "eta_1_scale": 1.0,
    "eta_scale": 10.0,
    "Lambda_1_scale": 3.0,
    "Lambda_scale": 5.0,
    "psi_1_scale": 1e-3,
    "psi_scale": 1.0,
    "psi_log_sd": 5.0,
    "t_log_sd": 1.0,
    "loading_nu": 2.0,
}

#: Defaults that differ by gauge (``bayes_dgmm.model.gauge``): in the standardised gauge the
#: latent scores have unit scale, so their intercepts' prior is narrower. ``Lambda_scale`` and
#: ``psi_scale`` serve the noise gauge only; ``t_log_sd`` and ``loading_nu`` the standardised.
GAUGE_DEFAULTS: dict[str, dict[str, float]] = {
    "standardised": {"eta_scale": 3.0},
    "noise": {},
}


def resolve_priors(
    spec_priors: Mapping[str, Any] | None = None,
    priors: Mapping[str, Any] | None = None,
    gauge: str = "standardised",
) -> dict[str, float]:
    """The gauge's defaults, overridden by the spec's ``[priors]`` table, overridden by
    ``priors``.

    Raises
    ------
    ValueError
        On an unknown key or a non-positive value.
    """
    out = {**PRIOR_DEFAULTS, **GAUGE_DEFAULTS.get(gauge, {})}
    for source, table in (("spec [priors]", spec_priors), ("priors", priors)):
        for key, value in (table or {}).items():
            if key not in PRIOR_DEFAULTS:
                raise ValueError(
                    f"{source} has unknown key {key!r}; valid keys: {sorted(PRIOR_DEFAULTS)}."
                )
            try:
                val = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{source}[{key!r}] = {value!r} is not a number; give a positive float."
                ) from None
            if not (math.isfinite(val) and val > 0):
                raise ValueError(f"{source}[{key!r}] = {value!r}; it must be a positive number.")
            out[key] = val
    return out
