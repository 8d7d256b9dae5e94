"""Chain stacking: weight chains (or runs) that sit in different modes by stacking their
PSIS-LOO predictive densities, and resample the stacked posterior.

Yao, Vehtari & Gelman (2022), "Stacking for non-mixing Bayesian computations: the curse and
blessing of multimodal posteriors", JMLR 23. How it is used here: ``docs/diagnostics.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from bayes_dgmm._validation import RandomLike
from bayes_dgmm.diagnostics.importance import PARETO_K_OK, pareto_k

Array = NDArray[np.float64]


@dataclass
class ChainStacking:
    """Result of :func:`stack_chains` / :func:`stack_runs`.

    Attributes
    ----------
    names : the stacked units (``"chain 0"``, ... or the runs' names)
    weights : (K,) stacking weights, summing to one
    elpd_loo : (K,) each unit's PSIS-LOO elpd on its own
    pareto_k_max : (K,) each unit's largest Pareto k (above 0.7 its LOO is unreliable)
    elpd_stacked : elpd of the weighted mixture of the units' LOO predictive densities
    posterior : the stacked posterior: ``n_draws`` draws resampled from the units with
        probabilities ``weights`` (one chain)
    """

    names: list[str]
    weights: Array
    elpd_loo: Array
    pareto_k_max: Array
    elpd_stacked: float
    posterior: xr.Dataset

    def table(self) -> Any:
        """The units as a ``pandas.DataFrame`` (weight, elpd_loo, pareto_k_max)."""
        import pandas as pd

        return pd.DataFrame(
            {"weight": self.weights, "elpd_loo": self.elpd_loo, "pareto_k_max": self.pareto_k_max},
            index=self.names,
        )


def stacking_weights(elpd_pointwise: ArrayLike) -> tuple[Array, float]:
    """Stacking weights of K predictive densities from their pointwise log scores.

    Maximises ``sum_i log sum_k w_k exp(elpd[i, k])`` over the simplex. Written here, in log
    space (softmax coordinates, ``logsumexp``), rather than taken from ``arviz.compare``:
    ArviZ exponentiates the pointwise values without a shift, which underflows to log(0) for
    points below about -745 (a chain stuck in a poor mode has such points).

    Parameters
    ----------
    elpd_pointwise : (n, K) array of pointwise LOO log predictive densities

    Returns
    -------
    weights : (K,) array, and the stacked elpd (the maximised sum)
    """
    elpd = np.asarray(elpd_pointwise, dtype=float)
    if elpd.ndim != 2 or elpd.shape[1] < 1 or not np.all(np.isfinite(elpd)):
        raise ValueError(
            f"elpd_pointwise must be a finite (n, K) array; got shape {elpd.shape}"
            f"{'' if np.all(np.isfinite(elpd)) else ' with non-finite entries'}."
        )
    K = elpd.shape[1]
    if K == 1:
        return np.ones(1), float(elpd.sum())

    def negative(theta: Array) -> tuple[float, Array]:
        log_w = theta - logsumexp(theta)
        mix = elpd + log_w  # (n, K)
        total = logsumexp(mix, axis=1)  # (n,)
        resp = np.exp(mix - total[:, None])  # posterior weight of unit k for point i
        w = np.exp(log_w)
        grad = resp.sum(axis=0) - elpd.shape[0] * w  # d/d theta of sum_i total_i
        return -float(total.sum()), -grad

    res = minimize(negative, np.zeros(K), jac=True, method="L-BFGS-B", options={"gtol": 1e-10})
    weights = softmax(res.x)
    return weights, float(logsumexp(elpd + np.log(np.maximum(weights, 1e-300)), axis=1).sum())


def _loo(data: Any, var_name: str | None) -> Any:
    import warnings

    from arviz_stats import loo

    with warnings.catch_warnings():
        # a large Pareto k is reported in the result (pareto_k_max), not as a warning
        warnings.simplefilter("ignore", UserWarning)
        log_weight = _log_importance_weight(data)
        if log_weight is None:
            return loo(data, pointwise=True, var_name=var_name)
        from arviz_stats import loo_approximate_posterior

        # draws of a usable approximation q with log p - log q known (Laplace, Pathfinder):
        # the approximate-posterior correction; only the difference enters, so log q = 0
        return loo_approximate_posterior(
            data,
            log_p=log_weight,
            log_q=xr.zeros_like(log_weight),
            pointwise=True,
            var_name=var_name,
        )


def _log_importance_weight(data: Any) -> Any:
    """``sample_stats.log_importance_weight`` (log p - log q of each draw of an
    approximation) when q is a usable proposal for p, else None.

    Usable: every weight finite and their Pareto k at most ``PARETO_K_OK`` (0.7). With
    heavier-tailed weights the corrected estimate rests on a few draws: measured on a small
    DGMM whose NUTS LOO is -2607, Laplace (weights' k 5.4) gave -2597 and Pathfinder (k 9.0)
    -2577, ranking first on a handful of draws.
    """
    if "sample_stats" not in data.children:
        return None
    stats = data["sample_stats"]
    if "log_importance_weight" not in stats.data_vars:
        return None
    weight = stats["log_importance_weight"]
    return weight if pareto_k(weight.values.ravel()) <= PARETO_K_OK else None


def _units_of(data: xr.DataTree) -> list[xr.DataTree]:
    return [data.isel(chain=[c]) for c in range(int(data["posterior"].sizes["chain"]))]


def stack_chains(
    data: xr.DataTree,
    *,
    n_draws: int | None = None,
    var_name: str | None = None,
    random_state: RandomLike = None,
) -> ChainStacking:
    """Chain stacking of one fit: each chain is a unit (its own PSIS-LOO predictive).

    Parameters
    ----------
    data : DataTree with ``posterior`` and ``log_likelihood`` groups (any fit of this package)
    n_draws : draws of the stacked posterior (default: as many as all chains together)
    var_name : the observed variable of ``log_likelihood`` (the only one by default)
    random_state : seed of the resampling
    """
    _check_tree(data, "data")
    units = _units_of(data)
    return _stack([f"chain {c}" for c in range(len(units))], units, n_draws, var_name, random_state)


def stack_runs(
    runs: Mapping[str, xr.DataTree],
    *,
    n_draws: int | None = None,
    var_name: str | None = None,
    random_state: RandomLike = None,
) -> ChainStacking:
    """Stacking of several fits of the same data (e.g. VI runs from different EM restarts):
    each run, all its chains together, is a unit."""
    if not runs:
        raise ValueError("runs is empty; pass a mapping name -> DataTree of at least one fit.")
    for name, tree in runs.items():
        _check_tree(tree, f"runs[{name!r}]")
    return _stack(list(runs), list(runs.values()), n_draws, var_name, random_state)


def _check_tree(data: Any, what: str) -> None:
    if not isinstance(data, xr.DataTree) or not {"posterior", "log_likelihood"} <= set(
        data.children
    ):
        raise ValueError(
            f"{what} must be an xarray.DataTree with 'posterior' and 'log_likelihood' groups "
            "(a fitted estimator's idata_)."
        )


def _stack(
    names: list[str],
    units: list[xr.DataTree],
    n_draws: int | None,
    var_name: str | None,
    random_state: RandomLike,
) -> ChainStacking:
    for name, unit in zip(names, units, strict=True):
        if not _has_draws(unit):
            raise ValueError(
                f"{name} has fewer than {MIN_LOO_DRAWS} draws (or no log_likelihood group); "
                "PSIS-LOO needs more: sample more draws per chain or run."
            )
    loos = [_loo(u, var_name) for u in units]
    pointwise = np.column_stack([np.asarray(e.elpd_i).ravel() for e in loos])
    weights, stacked = stacking_weights(pointwise)
    flat = [
        u["posterior"]
        .to_dataset()
        .stack(sample=("chain", "draw"))
        .drop_vars(["sample", "chain", "draw"])
        for u in units
    ]
    sizes = np.array([f.sizes["sample"] for f in flat])
    total = int(sizes.sum()) if n_draws is None else int(n_draws)
    if total < 1:
        raise ValueError(f"n_draws={n_draws} must be a positive integer.")
    rng = np.random.default_rng(random_state)
    which = rng.choice(len(units), size=total, p=weights / weights.sum())
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    index = offsets[which] + rng.integers(sizes[which])
    pooled = xr.concat(flat, dim="sample", coords="minimal", compat="override")
    posterior = pooled.isel(sample=index).rename(sample="draw").expand_dims("chain", 0)
    posterior = posterior.assign_coords(chain=[0], draw=np.arange(total))
    posterior["source"] = (("chain", "draw"), which[None, :])
    posterior.attrs["stacking_units"] = ", ".join(names)
    return ChainStacking(
        names=names,
        weights=weights,
        elpd_loo=np.array([float(e.elpd) for e in loos]),
        pareto_k_max=np.array([float(np.max(e.pareto_k)) for e in loos]),
        elpd_stacked=stacked,
        posterior=posterior,
    )


#: Fewest draws for PSIS-LOO: its Pareto fit needs a tail of 5 draws (20% of the draws).
MIN_LOO_DRAWS = 30


def _has_draws(data: Any) -> bool:
    if not isinstance(data, xr.DataTree) or "log_likelihood" not in data.children:
        return False
    sizes = data["log_likelihood"].sizes
    return sizes.get("chain", 1) * sizes.get("draw", 1) >= MIN_LOO_DRAWS


def loo_summary(data: Any, var_name: str | None = None) -> dict[str, float]:
    """PSIS-LOO of one fit: ``elpd_loo``, its ``se`` and the largest Pareto k (NaN for a
    fit of fewer than :data:`MIN_LOO_DRAWS` draws, e.g. MAP). Draws of an approximation that
    carry ``sample_stats.log_importance_weight`` (Laplace, Pathfinder) get the
    approximate-posterior correction (``arviz_stats.loo_approximate_posterior``) when those
    weights' Pareto k is at most 0.7; otherwise, and for ADVI's draws, q's draws are used as
    if they were the posterior's."""
    if not _has_draws(data):
        return {"elpd_loo": float("nan"), "elpd_loo_se": float("nan"), "pareto_k_max": float("nan")}
    res = _loo(data, var_name)
    return {
        "elpd_loo": float(res.elpd),
        "elpd_loo_se": float(res.se),
        "pareto_k_max": float(np.max(res.pareto_k)),
    }


def compare_fits(fits: Mapping[str, Any], var_name: str | None = None) -> Any:
    """``arviz_stats.compare`` (PSIS-LOO, stacking weights) of several fits of the same data:
    a ``pandas.DataFrame``, best first; fits of fewer than :data:`MIN_LOO_DRAWS` draws are
    left out. None when
    fewer than two fits remain."""
    import warnings

    from arviz_stats import compare

    usable = {name: _loo(tree, var_name) for name, tree in fits.items() if _has_draws(tree)}
    if len(usable) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return compare(usable, round_to="none")
