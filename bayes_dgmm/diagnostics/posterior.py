"""Label switching and multimodality diagnostics on posterior draws (``xarray.DataTree``).

Works on the DataTree of :class:`~bayes_dgmm.bayes.BayesianDeepGaussianMixture` fits (or any
tree whose ``posterior`` group holds ``pi_l``, ``eta_l``, ``Lambda_l``, ``psi_l`` with dims
``(chain, draw, component_l, ...)``). ArviZ supplies r_hat and ESS; this module adds what
ArviZ lacks: relabelling, identified quantities and a census of the chains' modes.

*Identified* quantities are unchanged by the model's symmetries (label permutations within
a layer, rotations of the latent scores): for layer ``l`` and component ``k``, the mean
``E[x | g_l = k]`` of the data given the component. They switch with the labels but are
otherwise comparable across draws, so after relabelling their r_hat measures convergence.
Partitions (and so ARIs), sorted path weights and the log-likelihood need no relabelling.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray

from bayes_dgmm.diagnostics.modes import SAME_MODE_ARI, ModeCensus, mode_census
from bayes_dgmm.diagnostics.relabel import layer_features, relabel_draws
from bayes_dgmm.model.names import n_named_layers
from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]

#: r_hat below this counts as converged (Vehtari et al. 2021, "Rank-normalization, folding,
#: and localization: an improved R-hat", Bayesian Analysis 16).
RHAT_OK = 1.01


def _posterior(data: Any) -> xr.Dataset:
    if isinstance(data, xr.Dataset):
        return data
    if isinstance(data, xr.DataTree):
        if "posterior" not in data.children:
            raise ValueError("the DataTree has no 'posterior' group; pass a fitted idata_.")
        return data["posterior"].to_dataset()
    raise TypeError(f"expected an xarray DataTree or Dataset, got {type(data).__name__}.")


def _n_layers(post: xr.Dataset) -> int:
    n = n_named_layers(post)
    if n == 0:
        raise ValueError(
            "the posterior has no 'pi_1'; pass the posterior of a model built by "
            "bayes_dgmm.build_model (variables pi_l, eta_l, Lambda_l, psi_l)."
        )
    return n


def posterior_draws(data: Any) -> tuple[list[DGMMParams], tuple[int, int]]:
    """Every posterior draw as DGMMParams (chains then draws), and ``(n_chains, n_draws)``."""
    post = _posterior(data)
    L = _n_layers(post)
    arrays = {}
    for name in ("pi", "eta", "Lambda", "psi"):
        for l in range(1, L + 1):
            da = post[f"{name}_{l}"]
            other = [d for d in da.dims if d not in ("chain", "draw")]
            arrays[f"{name}_{l}"] = da.transpose("chain", "draw", *other).values
    C, D = arrays["pi_1"].shape[:2]
    draws = [
        DGMMParams.from_named({k: v[c, d] for k, v in arrays.items()})
        for c in range(C)
        for d in range(D)
    ]
    return draws, (C, D)


def default_pivot(data: Any) -> int:
    """Flat index of the draw with the highest log density (``lp``/``logp`` in sample_stats,
    else the summed pointwise log-likelihood), or 0."""
    if isinstance(data, xr.DataTree):
        if "sample_stats" in data.children:
            stats = data["sample_stats"].to_dataset()
            for name in ("lp", "logp"):
                if name in stats and {"chain", "draw"} <= set(stats[name].dims):
                    values = stats[name].transpose("chain", "draw").values.ravel()
                    if np.all(np.isfinite(values)):
                        return int(np.argmax(values))
        total = total_log_likelihood(data)
        if total is not None:
            return int(np.argmax(total.values.ravel()))
    return 0


def total_log_likelihood(data: Any) -> xr.DataArray | None:
    """Summed pointwise log-likelihood per draw, dims (chain, draw), or None without one."""
    if not isinstance(data, xr.DataTree) or "log_likelihood" not in data.children:
        return None
    ll = data["log_likelihood"].to_dataset()
    if not ll.data_vars:
        return None
    da = next(iter(ll.data_vars.values()))
    other = [d for d in da.dims if d not in ("chain", "draw")]
    return da.sum(other).transpose("chain", "draw")


def identified_quantities(
    draws: Sequence[DGMMParams],
    shape: tuple[int, int],
    perms: Sequence[NDArray[np.intp]] | None = None,
) -> xr.Dataset:
    """Label-invariant (or label-aligned) quantities per draw as a Dataset.

    ``mean_x_l`` (chain, draw, component_l, feature): ``E[x | g_l = k]``, reordered by
    ``perms`` (per layer, (T, G_l)) when given; ``path_weight_sorted`` (chain, draw, rank):
    the global path weights in decreasing order.
    """
    C, D = shape
    L = draws[0].n_layers
    J = draws[0].n_features
    data: dict[str, Any] = {}
    for l in range(1, L + 1):
        feats = np.stack([layer_features(p, l)[:, :J] for p in draws])  # (T, G, J)
        if perms is not None:
            feats = np.take_along_axis(feats, perms[l - 1][:, :, None], axis=1)
        data[f"mean_x_{l}"] = (
            ("chain", "draw", f"component_{l}", "feature"),
            feats.reshape(C, D, *feats.shape[1:]),
        )
    weights = np.stack([np.sort(p.path_weights())[::-1] for p in draws])
    data["path_weight_sorted"] = (("chain", "draw", "rank"), weights.reshape(C, D, -1))
    return xr.Dataset(data)


def _max_rhat(ds: xr.Dataset) -> dict[str, float]:
    import arviz as az

    if ds.sizes.get("chain", 1) < 2:
        return {str(k): float("nan") for k in ds.data_vars}
    with warnings.catch_warnings():
        # a quantity constant across draws (e.g. fixed weights) has 0/0 r_hat: NaN is right
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(ds)
    return {str(k): float(v.max()) for k, v in rhat.data_vars.items()}


#: Least bulk effective sample size of an identified quantity for a converged sampler.
ESS_OK = 400


def sampler_convergence(data: Any, *, method: str = "hungarian") -> dict[str, Any]:
    """r_hat and bulk ESS of the identified quantities, and the divergences, of an MCMC fit.

    The identified quantities (:func:`identified_quantities`: ``E[x | g_l = k]`` per layer
    after relabelling, sorted path weights) are what a DGMM posterior can mix in; the raw
    loadings cannot (rotations). ``converged``: more than one chain, max r_hat below
    :data:`RHAT_OK`, min bulk ESS above :data:`ESS_OK` and no divergence.
    """
    import arviz as az

    rel = relabel_posterior(data, method=method)
    ids = rel.identified_relabelled
    n_chains = int(ids.sizes.get("chain", 1))
    rhat = max((v for v in _max_rhat(ids).values() if np.isfinite(v)), default=float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ess_min = {kind: _min_over_vars(az.ess(ids, method=kind)) for kind in ("bulk", "tail")}
    out: dict[str, Any] = {}
    divergences = 0
    if isinstance(data, xr.DataTree) and "sample_stats" in data.children:
        stats = data["sample_stats"].to_dataset()
        if "diverging" in stats:
            divergences = int(stats["diverging"].sum())
        for key in ("tree_depth", "depth"):  # PyMC's name, nutpie's name
            if key in stats:
                out["max_tree_depth"] = int(stats[key].max())
                break
        if "reached_max_treedepth" in stats:
            out["max_tree_depth_hits"] = int(stats["reached_max_treedepth"].sum())
        if "beta" in stats:  # SMC: one array of tempering stages (beta rising to 1) per chain
            out["smc_stages"] = smc_stages(stats["beta"])
    converged = bool(
        n_chains > 1 and rhat < RHAT_OK and ess_min["bulk"] > ESS_OK and divergences == 0
    )
    return {
        "converged": converged,
        "criterion": (
            f"identified quantities: max r_hat < {RHAT_OK}, min bulk ESS > {ESS_OK}, "
            "no divergences, more than one chain"
        ),
        "max_rhat": rhat,
        "min_ess_bulk": ess_min["bulk"],
        "min_ess_tail": ess_min["tail"],
        "divergences": divergences,
        "n_chains": n_chains,
        **out,
    }


def smc_stages(beta: xr.DataArray) -> int:
    """The most tempering stages of any chain, from SMC's ``beta`` sample statistic.

    PyMC stores it as (chain, stage) when every chain ran as many stages, else as one
    object array of stages per chain.
    """
    rows = beta.transpose("chain", ...).values
    rows = rows.reshape(rows.shape[0], -1)
    return max(sum(int(np.size(item)) for item in row) for row in rows)


def _min_over_vars(ds: xr.Dataset) -> float:
    """The smallest finite value over every variable of ``ds`` (nan if none)."""
    return min(
        (float(np.nanmin(v.values)) for v in ds.data_vars.values() if np.isfinite(v.values).any()),
        default=float("nan"),
    )


def prior_predictive_spread(data: Any, X: ArrayLike) -> dict[str, Any]:
    """How wide the prior predictive is against the data: for every prior predictive data
    set, the median over features of sd(x_j) / sd(X_j); the quantiles of that ratio over the
    draws (``q10``, ``median``, ``q90``). Near 1 the priors are on the data's scale.

    ``data``: a DataTree with a ``prior_predictive`` group holding ``x`` (chain, draw, obs,
    feature), e.g. from ``BayesianDeepGaussianMixture.sample_prior_predictive``.
    """
    if not isinstance(data, xr.DataTree) or "prior_predictive" not in data.children:
        raise ValueError(
            "data has no 'prior_predictive' group; pass the DataTree returned by "
            "BayesianDeepGaussianMixture.sample_prior_predictive(X)."
        )
    x = data["prior_predictive"]["x"].transpose("chain", "draw", "obs", "feature").values
    x = x.reshape(-1, *x.shape[2:])
    sd = np.asarray(X, dtype=float).std(axis=0)
    ratio = np.median(x.std(axis=1) / np.where(sd > 0, sd, 1.0), axis=1)
    q10, med, q90 = np.quantile(ratio, [0.1, 0.5, 0.9])
    return {"q10": float(q10), "median": float(med), "q90": float(q90), "ratio": ratio}


def nested_rhat(fits: Sequence[Any], *, method: str = "hungarian") -> dict[str, Any]:
    """Nested r_hat (``arviz_stats.rhat_nested``) of the identified quantities, each fit a
    superchain: the chains of NUTS runs started from different EM restarts, or VI runs.

    All fits must have the same numbers of chains and draws (each a fit of this package on
    the same data and architecture). The draws of all fits are relabelled together, so
    label switching between fits is not counted; different modes are. Returns the largest
    nested r_hat, its value per identified quantity and the superchain of every chain.
    """
    from arviz_stats import rhat_nested

    posts = [_posterior(f) for f in fits]
    shapes = {(p.sizes["chain"], p.sizes["draw"]) for p in posts}
    if len(posts) < 2 or len(shapes) != 1:
        raise ValueError(
            f"fits must be at least 2 fits with the same numbers of chains and draws; got "
            f"{len(posts)} with (chains, draws) {sorted(shapes)}."
        )
    n_chains = posts[0].sizes["chain"]
    joined = xr.concat(
        [p.drop_vars(["chain", "draw"], errors="ignore") for p in posts],
        dim="chain",
    ).assign_coords(chain=np.arange(n_chains * len(posts)), draw=np.arange(shapes.pop()[1]))
    ids = relabel_posterior(joined, method=method).identified_relabelled
    superchains = [k for k in range(len(posts)) for _ in range(n_chains)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant quantities: NaN
        values = rhat_nested(ids, superchain_ids=superchains)
        per = {str(k): float(np.nanmax(v.values)) for k, v in values.data_vars.items()}
    finite = [v for v in per.values() if np.isfinite(v)]
    return {
        "max_rhat_nested": max(finite, default=float("nan")),
        "per_quantity": per,
        "superchain_ids": superchains,
    }


@dataclass
class PosteriorRelabelling:
    """Result of :func:`relabel_posterior`.

    Attributes
    ----------
    permutations : dict layer -> (chain, draw, G_l) int array (new label k = old perms[..., k])
    posterior : the relabelled posterior (a new Dataset; the input is untouched)
    report : list of dicts, one per layer: switches per chain, chains whose modal labelling
        differs from the pivot's, max r_hat of the identified ``mean_x_l`` before and after
    identified_raw, identified_relabelled : Datasets of :func:`identified_quantities`
    pivot : (chain, draw) of the pivot draw
    """

    permutations: dict[int, NDArray[np.intp]]
    posterior: xr.Dataset
    report: list[dict[str, Any]]
    identified_raw: xr.Dataset
    identified_relabelled: xr.Dataset
    pivot: tuple[int, int]

    def table(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.report).set_index("layer")


def relabel_posterior(
    data: Any, *, method: str = "hungarian", pivot: int | None = None, X: ArrayLike | None = None
) -> PosteriorRelabelling:
    """Find and undo label switching in every layer of a posterior.

    Parameters
    ----------
    data : DataTree (with a ``posterior`` group) or the posterior Dataset
    method : "hungarian", "ecr" or "stephens" (see :mod:`bayes_dgmm.diagnostics.relabel`)
    pivot : flat draw index (chain * n_draws + draw); default :func:`default_pivot`
    X : (N, J) array, needed by "ecr" and "stephens"
    """
    post = _posterior(data)
    draws, (C, D) = posterior_draws(post)
    if pivot is None:
        pivot = default_pivot(data)
    Xa = None if X is None else np.asarray(X, dtype=float)
    result = relabel_draws(draws, method=method, pivot=pivot, X=Xa)
    perms = result.permutations
    new = post.copy(deep=True)
    for l, p in enumerate(perms, start=1):
        dim = f"component_{l}"
        p3 = p.reshape(C, D, -1)
        for name, da in post.data_vars.items():
            if dim not in da.dims:
                continue
            arr = da.transpose("chain", "draw", dim, ...)
            idx = p3.reshape(C, D, -1, *([1] * (arr.ndim - 3)))
            values = np.take_along_axis(arr.values, idx, axis=2)
            new[name] = arr.copy(data=values).transpose(*da.dims)
    raw_id = identified_quantities(draws, (C, D))
    rel_id = identified_quantities(draws, (C, D), perms)
    rhat_raw, rhat_rel = _max_rhat(raw_id), _max_rhat(rel_id)
    report = []
    identity_of = [np.arange(p.shape[1]) for p in perms]
    for l, p in enumerate(perms, start=1):
        p3 = p.reshape(C, D, -1)
        switches = [
            int(np.count_nonzero(np.any(p3[c, 1:] != p3[c, :-1], axis=1))) for c in range(C)
        ]
        disagree = []
        for c in range(C):
            rows, counts = np.unique(p3[c], axis=0, return_counts=True)
            if not np.array_equal(rows[np.argmax(counts)], identity_of[l - 1]):
                disagree.append(c)
        report.append(
            {
                "layer": l,
                "switches_per_chain": switches,
                "chains_relabelled": disagree,
                "rhat_raw": rhat_raw[f"mean_x_{l}"],
                "rhat_relabelled": rhat_rel[f"mean_x_{l}"],
            }
        )
    return PosteriorRelabelling(
        permutations={l: p.reshape(C, D, -1) for l, p in enumerate(perms, start=1)},
        posterior=new,
        report=report,
        identified_raw=raw_id,
        identified_relabelled=rel_id,
        pivot=(pivot // D, pivot % D),
    )


def chain_partitions(
    draws: Sequence[DGMMParams], shape: tuple[int, int], X: ArrayLike, max_draws: int = 50
) -> NDArray[np.intp]:
    """Each chain's partition of X: the path maximising the chain's mean path probability.

    ``draws`` must be aligned (relabelled) so averaging within a chain is meaningful; at most
    ``max_draws`` evenly spaced draws per chain are used.
    """
    C, D = shape
    take = np.unique(np.linspace(0, D - 1, min(D, max_draws)).astype(int))
    parts = []
    for c in range(C):
        proba = np.mean([draws[c * D + d].predict_proba(X) for d in take], axis=0)
        parts.append(np.argmax(proba, axis=1))
    return np.asarray(parts, dtype=np.intp)


def chain_census(
    data: Any,
    X: ArrayLike,
    *,
    threshold: float = SAME_MODE_ARI,
    reference_labels: ArrayLike | None = None,
    relabelling: PosteriorRelabelling | None = None,
) -> ModeCensus:
    """Census of the modes visited by the chains (partition agreement between chains)."""
    rel = relabelling or relabel_posterior(data)
    draws, shape = posterior_draws(rel.posterior)
    parts = chain_partitions(draws, shape, X)
    total = total_log_likelihood(data)
    scores = None if total is None else total.mean("draw").values
    return mode_census(
        parts,
        draws[0].n_components,
        scores=scores,
        reference_labels=reference_labels,
        threshold=threshold,
    )


def describe_fit(
    data: Any, X: ArrayLike, *, reference_labels: ArrayLike | None = None, method: str = "hungarian"
) -> str:
    """A plain-language verdict on label switching and multimodality of a posterior.

    Example: "chains 0 and 2 are the same mode up to a relabelling of layer 2; chain 1 is a
    different mode (ARI 0.31) with 4 empty paths; r_hat of identified quantities 1.003".
    """
    Xa = np.asarray(X, dtype=float)
    rel = relabel_posterior(data, method=method, X=Xa if method != "hungarian" else None)
    census = chain_census(data, Xa, reference_labels=reference_labels, relabelling=rel)
    C = census.mode_of_run.size
    pivot_chain = rel.pivot[0]
    main = int(census.mode_of_run[pivot_chain])
    lines = []
    relabelled_layers: dict[int, list[int]] = {}
    for row in rel.report:
        for c in row["chains_relabelled"]:
            relabelled_layers.setdefault(c, []).append(row["layer"])
    for m, mode in enumerate(census.modes):
        members = mode["members"]
        names = _chains(members)
        if m == main:
            switched = sorted({l for c in members for l in relabelled_layers.get(c, [])})
            if len(members) == 1:
                text = f"{names} holds the pivot's mode"
            elif switched:
                text = f"{names} are the same mode up to a relabelling of {_layers(switched)}"
            else:
                text = f"{names} are the same mode with the same labels"
        else:
            ari = float(census.mutual_ari[members[0], pivot_chain])
            verb = "is" if len(members) == 1 else "are"
            text = f"{names} {verb} a different mode (ARI {ari:.2f} with chain {pivot_chain})"
        text += f", {mode['empty_paths']} empty path{'s' if mode['empty_paths'] != 1 else ''}"
        if "ari_path" in mode:
            text += f", ARI against the reference {mode['ari_path']:.2f}"
        lines.append(text)
    in_main = [c for c in range(C) if census.mode_of_run[c] == main]
    if len(in_main) > 1:
        sub = rel.identified_relabelled.isel(chain=in_main)
        rhat = max(_max_rhat(sub[[f"mean_x_{r['layer']}" for r in rel.report]]).values())
        raw = max(r["rhat_raw"] for r in rel.report)
        verdict = "converged" if rhat < RHAT_OK else "not converged"
        lines.append(
            f"r_hat of identified quantities in the main mode {rhat:.3f} after "
            f"relabelling ({verdict}; {raw:.3g} before)"
        )
    kind = (
        "multimodal"
        if census.n_modes > 1
        else "label switching only"
        if any(r["chains_relabelled"] or any(r["switches_per_chain"]) for r in rel.report)
        else "one mode, no switching"
    )
    return f"{kind}: " + "; ".join(lines) + "."


def _chains(members: Sequence[int]) -> str:
    if len(members) == 1:
        return f"chain {members[0]}"
    return "chains " + ", ".join(map(str, members[:-1])) + f" and {members[-1]}"


def _layers(layers: Sequence[int]) -> str:
    if len(layers) == 1:
        return f"layer {layers[0]}"
    return "layers " + ", ".join(map(str, layers[:-1])) + f" and {layers[-1]}"
