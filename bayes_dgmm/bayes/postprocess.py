"""From sampler output to results: pointwise log-likelihoods, point estimates, label probabilities.

Functions take a DataTree or Dataset of the posterior and return new ones; the estimator
stores them in its ``idata_``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from bayes_dgmm.bayes.backends.curvature import DECREMENT_TOL
from bayes_dgmm.bayes.backends.mode import MODE_GTOL
from bayes_dgmm.bayes.model import point_to_params, pointwise_loglik_function
from bayes_dgmm.model.names import named_variables
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.paths import aggregate_paths
from bayes_dgmm.model.spec import DGMMSpec

Array = NDArray[np.float64]

#: At most this many posterior draws (evenly thinned) enter the label probabilities and
#: predictions; each draw costs one pass of ``DGMMParams.log_prob_paths`` over the data.
MAX_PREDICT_DRAWS = 200


def finish_tree(idata: Any, X: Array, spec: DGMMSpec) -> Any:
    """Add ``log_likelihood`` and ``sample_stats.log_likelihood_total`` to a fit, in place."""
    idata["log_likelihood"] = pointwise_log_likelihood(idata["posterior"].to_dataset(), X, spec)
    total = idata["log_likelihood"]["x"].sum("obs")
    if "sample_stats" in idata.children:
        stats = idata["sample_stats"].to_dataset()
        stats["log_likelihood_total"] = total
        idata["sample_stats"] = stats
    else:
        idata["sample_stats"] = xr.Dataset({"log_likelihood_total": total})
    return idata


def fit_convergence(idata: Any, method: str) -> dict[str, Any]:
    """Whether a fit met its method's own convergence criterion, with the figures.

    ``map``: the largest gradient entry is at most :data:`MODE_GTOL`, or the Hessian is
    positive definite and a Newton step would gain < 0.1 nats; ``laplace``: the
    Hessian at the mode is positive definite and a Newton step would gain < 0.1 nats;
    ``pathfinder``: the Pareto k of its draws' importance weights is below 0.7;
    ``advi``/``fullrank_advi``: the ELBO stopped improving
    (:class:`~bayes_dgmm.bayes.backends.vi.ELBOConvergence`);
    samplers: r_hat and ESS of identified quantities, divergences
    (:func:`~bayes_dgmm.diagnostics.posterior.sampler_convergence`).
    """
    attrs = idata["posterior"].attrs
    if method == "map":
        # scipy's success includes its precision-loss stop, which a stall meets; neither a
        # small gradient nor a small Newton decrement at a positive definite Hessian can be
        # met away from a mode (run_map)
        return {
            "converged": bool(attrs.get("optimizer_success", 0)),
            "criterion": (
                f"largest gradient entry (unconstrained scale) <= {MODE_GTOL}, or a positive "
                f"definite Hessian and a Newton decrement < {DECREMENT_TOL} nats"
            ),
            "max_abs_gradient": float(attrs.get("optimizer_max_abs_gradient", np.nan)),
            "newton_decrement": float(attrs.get("optimizer_newton_decrement", np.nan)),
            "nonpositive_eigenvalues": int(attrs.get("optimizer_nonpositive_eigenvalues", -1)),
            "message": str(attrs.get("optimizer_message", "")),
        }
    if method == "laplace":
        return {
            "converged": bool(attrs["laplace_converged"]),
            "criterion": str(attrs["laplace_criterion"]),
            "newton_decrement": float(attrs["laplace_newton_decrement"]),
            "nonpositive_eigenvalues": int(attrs["laplace_nonpositive_eigenvalues"]),
        }
    if method == "pathfinder":
        return {
            "converged": bool(attrs["pathfinder_converged"]),
            "criterion": str(attrs["pathfinder_criterion"]),
            "pareto_k": float(attrs["pathfinder_pareto_k"]),
            "elbo": float(attrs["pathfinder_elbo"]),
        }
    if method in ("advi", "fullrank_advi"):
        loss = idata["loss"].attrs
        return {
            "converged": bool(loss.get("converged", 0)),
            "criterion": str(loss.get("criterion", "")),
            "iterations": int(loss.get("iterations", 0)),
            "last_window_gain": float(loss.get("last_window_gain", np.nan)),
        }
    from bayes_dgmm.diagnostics.posterior import sampler_convergence

    return sampler_convergence(idata)


def pointwise_log_likelihood(posterior: xr.Dataset, X: Array, spec: DGMMSpec) -> xr.Dataset:
    """Pointwise log-likelihood ``x`` (chain, draw, obs) of every posterior draw.

    Uses the compiled twin of the model's likelihood, cached per architecture
    (:func:`bayes_dgmm.bayes.model.pointwise_loglik_function`), instead of
    ``pm.compute_log_likelihood``, which would compile the model's graph again at every fit.
    """
    fn = pointwise_loglik_function(spec.n_components, spec.n_factors)
    names = named_variables(spec.n_layers)
    values = {k: posterior[k].values for k in names}
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    out = np.empty((n_chain, n_draw, X.shape[0]))
    with threadpool_limits(1):
        for c in range(n_chain):
            for d in range(n_draw):
                out[c, d] = fn(X, *(values[k][c, d] for k in names))
    return xr.Dataset(
        {"x": (("chain", "draw", "obs"), out)},
        coords={
            "chain": posterior["chain"].values,
            "draw": posterior["draw"].values,
            "obs": np.arange(X.shape[0]),
        },
    )


def posterior_params(
    posterior: xr.Dataset, n_layers: int, log_likelihood_total: xr.DataArray
) -> tuple[list[DGMMParams], DGMMParams]:
    """At most :data:`MAX_PREDICT_DRAWS` evenly thinned draws, and the point estimate: the
    draw of highest total log-likelihood.

    Not the posterior mean: loadings are identified only up to rotations and labels up to
    permutations, so an average of draws that differ by either is a DGMM far from all of
    them; the best draw is a distribution the model can have.
    """
    names = named_variables(n_layers)
    post = posterior[names]
    total = post.sizes["chain"] * post.sizes["draw"]
    flat = post.stack(sample=("chain", "draw")).transpose("sample", ...)
    keep = np.unique(np.linspace(0, total - 1, min(total, MAX_PREDICT_DRAWS)).round().astype(int))
    draws = [point_to_params({k: flat[k].values[i] for k in names}) for i in keep]
    ll = log_likelihood_total.transpose("chain", "draw").values.ravel()
    best = int(np.argmax(ll))
    return draws, point_to_params({k: flat[k].values[best] for k in names})


def labels_dataset(proba: Array, n_components: Sequence[int]) -> xr.Dataset:
    """Path probabilities (obs, path) and each layer's component probabilities, as a Dataset."""
    data: dict[str, Any] = {"path_proba": (("obs", "path"), proba)}
    for l in range(1, len(n_components) + 1):
        data[f"component_proba_{l}"] = (
            ("obs", f"component_{l}"),
            aggregate_paths(proba, n_components, l),
        )
    return xr.Dataset(
        data,
        coords={"obs": np.arange(proba.shape[0]), "path": np.arange(proba.shape[1])},
    )
