"""Simulation-based calibration (Talts et al. 2018) of the Bayesian DGMM.

Parameters are drawn from the prior, a data set from each, the model is fitted to each data
set, and the truth is ranked among the posterior draws for quantities a DGMM posterior
identifies (path weights, path means, path log variances; each draw relabelled to the
truth). A calibrated fit gives uniform ranks. The priors are fixed in advance
(``build_model(reference=...)``), as SBC needs, not scaled to each data set. Method and
figures: ``docs/sbc.md``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm._io import atomic_write_text
from bayes_dgmm._version import __version__
from bayes_dgmm.experiments._store import inputs_digest
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.spec import DGMMSpec

log = logging.getLogger(__name__)

Array = NDArray[np.float64]

#: The methods SBC can run: NUTS (nutpie) and Pathfinder's q (no importance resampling).
SBC_METHODS = ("nutpie", "pathfinder")
#: Posterior draws the truth is ranked among (ranks 0..99: ten bins of ten).
N_RANKED = 99
#: Bins of the rank histograms and of the chi-square uniformity test.
N_BINS = 10


@dataclass(frozen=True)
class SBCDesign:
    """What is simulated and fitted.

    ``data_priors`` are the priors the parameters are drawn from, ``fit_priors`` those the
    model is fitted with (the same for a calibration check; different ones make a
    deliberately mis-specified prior). ``reference``: the fixed layer-1 prior location and
    scale of both.
    """

    spec: DGMMSpec
    n_features: int = 3
    n_samples: int = 100
    fit_priors: Mapping[str, float] | None = None
    data_priors: Mapping[str, float] | None = None
    reference: tuple[float, float] = (0.0, 1.0)
    tune: int = 300
    draws: int = 200
    chains: int = 2
    #: NUTS tree depth: this posterior wants trees of ~1000 steps (depth 10), ~10x the
    #: time; shallower trees still leave the posterior invariant, at more autocorrelation
    max_treedepth: int = 6
    pathfinder_maxiter: int = 200

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_components": list(self.spec.n_components),
            "n_factors": list(self.spec.n_factors),
            "n_features": self.n_features,
            "n_samples": self.n_samples,
            "fit_priors": dict(self.fit_priors or {}),
            "data_priors": dict(self.data_priors or {}),
            "reference": list(self.reference),
            "tune": self.tune,
            "draws": self.draws,
            "chains": self.chains,
            "max_treedepth": self.max_treedepth,
            "pathfinder_maxiter": self.pathfinder_maxiter,
        }


def simulate_prior(
    design: SBCDesign, n_sims: int, random_seed: int
) -> tuple[list[DGMMParams], Array]:
    """``n_sims`` parameter draws from ``design.data_priors`` and a data set of
    ``design.n_samples`` rows from each: (params, X of shape (n_sims, N, J))."""
    import pymc as pm

    from bayes_dgmm.bayes.model import build_model, compile_mode
    from bayes_dgmm.diagnostics.posterior import posterior_draws

    # the data only set the shapes: the priors' location and scale are design.reference
    model = build_model(
        np.zeros((design.n_samples, design.n_features)),
        design.spec,
        priors=design.data_priors,
        reference=design.reference,
    )
    # the data are drawn by numpy (the likelihood's random function), which JAX cannot run
    mode = "CVM" if compile_mode().upper() == "JAX" else compile_mode()
    prior = pm.sample_prior_predictive(
        draws=n_sims, model=model, random_seed=random_seed, compile_kwargs={"mode": mode}
    )
    params, _ = posterior_draws(prior["prior"].to_dataset())
    X = prior["prior_predictive"]["x"].transpose("chain", "draw", ...).values[0]
    return params, np.asarray(X, dtype=float)


def identified(
    params: DGMMParams, truth: DGMMParams | None = None, reference: Array | None = None
) -> dict[str, float]:
    """The path weights (all but the last), path means and path log variances of
    ``params``' global GMM, its layers relabelled to match ``truth`` best (path means;
    ``reference``: the truth's path means, when already computed)."""
    if truth is not None:
        params = relabel_to(params, truth, reference)
    gmm = params.global_gmm()
    out: dict[str, float] = {}
    P, J = gmm.means.shape
    for p in range(P - 1):
        out[f"weight[{p}]"] = float(gmm.weights[p])
    for p, j in itertools.product(range(P), range(J)):
        out[f"mean[{p},{j}]"] = float(gmm.means[p, j])
    for p, j in itertools.product(range(P), range(J)):
        out[f"log_var[{p},{j}]"] = float(np.log(gmm.covariances[p, j, j]))
    return out


def relabel_to(params: DGMMParams, truth: DGMMParams, reference: Array | None = None) -> DGMMParams:
    """``params`` with the relabelling of its layers (all combinations of permutations)
    whose global path means are closest to ``truth``'s, each feature scaled by the truth's
    spread. ``reference``: the truth's path means, when already computed."""
    from bayes_dgmm.diagnostics.relabel import path_permutation, permute_layers

    ref = truth.global_gmm().means if reference is None else reference
    scale = np.maximum(ref.std(axis=0), 1e-12)
    # a relabelling only reorders the paths: the global GMM is computed once
    means = params.global_gmm().means
    best, best_cost = None, math.inf
    combos = itertools.product(*(itertools.permutations(range(G)) for G in params.n_components))
    for combo in combos:
        perms = [np.asarray(c) for c in combo]
        order = path_permutation(perms, params.n_components)
        cost = float((((means[order] - ref) / scale) ** 2).sum())
        if cost < best_cost:
            best, best_cost = perms, cost
    assert best is not None
    return permute_layers(params, best)


def rank_of_truth(
    draws: Sequence[Mapping[str, float]], truth: Mapping[str, float]
) -> dict[str, int]:
    """Per quantity, how many of the draws lie below the truth (ties split at random would
    matter only for discrete quantities; these are continuous)."""
    return {k: int(sum(d[k] < v for d in draws)) for k, v in truth.items()}


def thin(params: Sequence[DGMMParams], n: int) -> list[DGMMParams]:
    """``n`` evenly spaced draws of ``params`` (all of them if there are fewer)."""
    if len(params) <= n:
        return list(params)
    idx = np.linspace(0, len(params) - 1, n).round().astype(int)
    return [params[i] for i in idx]


def uniformity(ranks: Array, n_ranked: int = N_RANKED, n_bins: int = N_BINS) -> float:
    """p-value of the chi-square test that ``ranks`` (integers 0..n_ranked) are uniform,
    on ``n_bins`` bins of equal width (expected counts: the rank values in each bin)."""
    from scipy.stats import chisquare

    ranks = np.asarray(ranks, dtype=int)
    edges = np.linspace(0, n_ranked + 1, n_bins + 1)
    observed, _ = np.histogram(ranks, bins=edges)
    values, _ = np.histogram(np.arange(n_ranked + 1), bins=edges)
    expected = values / values.sum() * ranks.size
    return float(chisquare(observed, expected).pvalue)


def extreme_share(ranks: Array, n_ranked: int = N_RANKED, tail: float = 0.1) -> float:
    """Share of ``ranks`` in the outer ``tail`` of each end (``2 tail`` when uniform): a
    posterior too narrow, or centred away from the truth, ranks it at the ends."""
    r = np.asarray(ranks, dtype=float) / (n_ranked + 1)
    return float(np.mean((r < tail) | (r >= 1 - tail)))


def run_sbc(
    design: SBCDesign,
    n_sims: int,
    out: str | Path,
    *,
    methods: Sequence[str] = SBC_METHODS,
    random_seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Simulate, fit and rank; one JSON file per finished simulation in ``out/sims/``,
    under a digest of the inputs (a rerun of the same inputs skips those), then
    ``summary.json``, ``ranks.csv`` and ``sbc.png``.

    Returns the summary: per method, the uniformity p-value of every quantity, the
    smallest of them, and the fits' convergence figures.
    """
    from joblib import Parallel, delayed

    bad = [m for m in methods if m not in SBC_METHODS]
    if bad:
        raise ValueError(f"methods contains {bad[0]!r}; choose from {list(SBC_METHODS)}.")
    out = Path(out)
    # finished simulations are kept per inputs: another design, seed or method list into
    # the same folder recomputes rather than reuses
    digest = inputs_digest(
        kind="sbc",
        design=design.to_dict(),
        seed=random_seed,
        methods=list(methods),
        version=__version__,
    )
    sims = out / "sims" / digest[:16]
    sims.mkdir(parents=True, exist_ok=True)
    truths, X = simulate_prior(design, n_sims, random_seed)
    todo = [i for i in range(n_sims) if not (sims / f"{i:04d}.json").is_file()]
    chunks = [todo[k::n_jobs] for k in range(n_jobs) if todo[k::n_jobs]]
    Parallel(n_jobs=len(chunks) or 1)(
        delayed(_fit_chunk)(
            design, methods, [(i, truths[i], X[i]) for i in chunk], sims, random_seed
        )
        for chunk in chunks
    )
    records = [json.loads((sims / f"{i:04d}.json").read_text()) for i in range(n_sims)]
    return summarise_sbc(records, design, methods, out)


def _fit_chunk(
    design: SBCDesign,
    methods: Sequence[str],
    items: Sequence[tuple[int, DGMMParams, Array]],
    sims: Path,
    random_seed: int,
) -> None:
    """Fit every simulation of ``items`` with one model and one compiled sampler."""
    import warnings

    import nutpie
    import pymc as pm
    from threadpoolctl import threadpool_limits

    from bayes_dgmm.bayes.backends.pathfinder import run_pathfinder
    from bayes_dgmm.bayes.backends.pymc import jittered_start
    from bayes_dgmm.bayes.model import build_model
    from bayes_dgmm.diagnostics.posterior import posterior_draws, sampler_convergence

    # the likelihood as a PyTensor graph under nutpie's Numba backend: on a model this small
    # a JAX call costs more in dispatch than in arithmetic (docs/bayesian-model.md)
    model = build_model(
        items[0][2],
        design.spec,
        priors=design.fit_priors,
        reference=design.reference,
        likelihood="graph",
    )
    compiled = nutpie.compile_pymc_model(model, backend="numba") if "nutpie" in methods else None

    for i, truth, x in items:
        seed = int(np.random.SeedSequence([random_seed, i]).generate_state(1)[0])
        truth_q = identified(truth)
        ref = truth.global_gmm().means
        record: dict[str, Any] = {"sim": i, "truth": truth_q, "ranks": {}, "fits": {}}
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if compiled is not None:
                tree = nutpie.sample(
                    compiled.with_data(X=x),
                    chains=design.chains,
                    tune=design.tune,
                    draws=design.draws,
                    maxdepth=design.max_treedepth,
                    seed=seed,
                    progress_bar=False,
                    cores=1,
                )
                draws, _ = posterior_draws(tree)
                conv = sampler_convergence(tree)
                record["fits"]["nutpie"] = {
                    k: conv[k] for k in ("max_rhat", "min_ess_bulk", "divergences")
                }
                kept = [identified(p, truth, ref) for p in thin(draws, N_RANKED)]
                record["ranks"]["nutpie"] = rank_of_truth(kept, truth_q)
            if "pathfinder" in methods:
                pm.set_data({"X": x}, model=model)
                tree = run_pathfinder(
                    model,
                    jittered_start(model, seed),
                    draws=N_RANKED,
                    maxiter=design.pathfinder_maxiter,
                    random_seed=seed,
                )
                draws, _ = posterior_draws(tree)
                attrs = tree["posterior"].attrs
                record["fits"]["pathfinder"] = {"pareto_k": float(attrs["pathfinder_pareto_k"])}
                kept = [identified(p, truth, ref) for p in draws]
                record["ranks"]["pathfinder"] = rank_of_truth(kept, truth_q)
        atomic_write_text(sims / f"{i:04d}.json", json.dumps(record))
        log.info("sbc: simulation %d done", i)


def summarise_sbc(
    records: Sequence[Mapping[str, Any]],
    design: SBCDesign,
    methods: Sequence[str],
    out: Path,
) -> dict[str, Any]:
    """Uniformity p-values, ``ranks.csv``, ``summary.json`` and ``sbc.png`` from the
    per-simulation records."""
    from bayes_dgmm.experiments.report import save_figure, write_csv, write_json

    summary: dict[str, Any] = {"design": design.to_dict(), "n_sims": len(records), "methods": {}}
    rows = []
    for method in methods:
        names = list(records[0]["ranks"][method])
        ranks = {k: np.array([r["ranks"][method][k] for r in records]) for k in names}
        pvalues = {k: uniformity(v) for k, v in ranks.items()}
        fits = [r["fits"][method] for r in records]
        figures = {key: float(np.median([f[key] for f in fits])) for key in fits[0] if key != "sim"}
        if method == "nutpie":
            figures["share_rhat_below_1.01"] = float(np.mean([f["max_rhat"] < 1.01 for f in fits]))
        if method == "pathfinder":
            figures["share_k_below_0.7"] = float(np.mean([f["pareto_k"] < 0.7 for f in fits]))
        groups = dict.fromkeys(k.split("[")[0] for k in names)
        extremes = {
            g: extreme_share(np.concatenate([v for k, v in ranks.items() if k.startswith(g)]))
            for g in groups
        }
        summary["methods"][method] = {
            "pvalues": pvalues,
            "extreme_share": extremes,
            "min_pvalue": min(pvalues.values()),
            "n_below_0.01": int(sum(p < 0.01 for p in pvalues.values())),
            "median_fit_figures": figures,
        }
        for r in records:
            rows.append({"method": method, "sim": r["sim"], **r["ranks"][method]})
    write_csv(out / "ranks.csv", rows)
    write_json(out / "summary.json", summary)
    save_figure(out / "sbc.png", plot_rank_histograms(records, methods))
    return summary


def plot_rank_histograms(records: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> Any:
    """One row per method, one panel per quantity: the histogram of the truth's ranks with
    the 99% band of a uniform histogram (binomial)."""
    from matplotlib.figure import Figure
    from scipy.stats import binom

    names = list(records[0]["ranks"][methods[0]])
    fig = Figure(figsize=(1.6 * len(names), 1.9 * len(methods) + 0.4), layout="constrained")
    axes = fig.subplots(len(methods), len(names), squeeze=False, sharey=True)
    n = len(records)
    lo, hi = binom.ppf([0.005, 0.995], n, 1 / N_BINS)
    edges = np.linspace(0, N_RANKED + 1, N_BINS + 1)
    for row, method in zip(axes, methods, strict=True):
        for ax, name in zip(row, names, strict=True):
            ranks = [r["ranks"][method][name] for r in records]
            ax.axhspan(lo, hi, color="0.85")
            ax.hist(ranks, bins=edges, color="C0")
            ax.set_title(name, fontsize=7)
            ax.set_xticks([])
        row[0].set_ylabel(method)
    return fig
