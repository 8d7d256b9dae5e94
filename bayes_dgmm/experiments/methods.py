"""One entry point per inference method, with the same summary for all of them.

``run_method(method, X, spec, ...)`` fits the DGMM of ``spec`` to ``X`` by

- ``"stochastic"``: the study's layer-wise stochastic EM (deepgmm), random starts;
- ``"exact"``: the exact EM on the marginal likelihood, with the package's default start;
- ``"gmm"``: a full-covariance Gaussian mixture with one component per path (a baseline
  that ignores the deep structure; scikit-learn, the study's mclust VVV);
- ``"map"``, ``"laplace"``, ``"pathfinder"``, ``"advi"``, ``"fullrank_advi"``, ``"nuts"``,
  ``"nutpie"``, ``"smc"``: the Bayesian model of :mod:`bayes_dgmm.bayes.model`, started
  from an exact-EM fit;

and returns a :class:`MethodResult`: the point estimate, the partition, log-likelihood, BIC,
wall time and the partitions of its restarts or chains (to count the distinct modes).
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm.bayes import METHODS as BAYES_METHODS
from bayes_dgmm.em import ALGORITHMS
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.spec import DGMMSpec

Array = NDArray[np.float64]

# The estimators (scikit-learn, PyMC) are imported by the functions that fit them: the
# command line reads the method names and budgets here at start-up.

#: The EM methods, the study's stochastic EM first as in its tables.
EM_METHODS = ALGORITHMS[::-1]
METHODS = (*EM_METHODS, "gmm", *BAYES_METHODS)
#: What ``bayes-dgmm compare`` runs without ``--methods``: every method, with NUTS through
#: nutpie only. PyMC's own NUTS ("nuts") samples the same posterior with the same C-backend
#: density, so on a fresh machine it would add about a minute (compile and 40 draws) to
#: the 10-minute budget without adding a distinct method; ask for it with ``--methods``.
DEFAULT_METHODS = tuple(m for m in METHODS if m != "nuts")

#: Default budgets of ``bayes-dgmm compare``. On the study data (N = 4000, ~1000 model
#: parameters) the exact EM (with its Newton finish) converges at these budgets; the
#: stochastic EM (still climbing after 400 iterations), MAP and Laplace (BFGS and Newton
#: steps in the flat directions of the mode), both ADVIs (the loss still falling after 2000
#: iterations), Pathfinder (Pareto k) and the samplers (one gradient costs 50-70 ms and NUTS
#: wants deep trees) do not, and every row of the comparison says so with its figure
#: (``docs/bayes-convergence.md``); raise the budgets with ``--budget``. SMC needs more
#: particles than parameters (PyMC's kernels fit a proposal covariance to the particles), so
#: at ``smc_draws = 100`` it runs on small models only and is reported as not run on the
#: study's.
DEFAULT_BUDGET: dict[str, Any] = {
    "em_restarts": 2,
    # the exact EM's default: room for its Newton finish (one step per 25 iterations)
    "em_max_iter": 1500,
    "sem_max_iter": 200,  # the stochastic EM's, as in the study
    "gmm_restarts": 4,
    "map_maxiter": 100,
    "pathfinder_maxiter": 1000,
    "advi_iterations": 2000,
    "vi_draws": 400,  # q's draws: enough for PSIS-LOO's Pareto k to say something
    "chains": 2,
    "tune": 10,
    "draws": 10,
    "max_treedepth": 3,
    "smc_draws": 100,
}

#: Smallest allowed value of every budget (all are integers; none has an upper bound).
BUDGET_MINIMUM: dict[str, int] = {key: 1 for key in DEFAULT_BUDGET} | {"tune": 0}

#: What each budget key sets, for ``--help`` (the keys are those of :data:`DEFAULT_BUDGET`).
BUDGET_MEANING: dict[str, str] = {
    "em_restarts": "EM starts (also before a Bayesian fit)",
    "em_max_iter": "most exact-EM iterations",
    "sem_max_iter": "stochastic-EM iterations",
    "gmm_restarts": "GaussianMixture starts",
    "map_maxiter": "most L-BFGS-B iterations, MAP and Laplace",
    "pathfinder_maxiter": "most Pathfinder iterations",
    "advi_iterations": "most iterations of both ADVIs",
    "vi_draws": "draws of Laplace, Pathfinder and ADVIs",
    "chains": "chains of NUTS, nutpie and SMC",
    "tune": "tuning draws per chain, NUTS and nutpie",
    "draws": "draws per chain, NUTS and nutpie",
    "max_treedepth": "tree depth of NUTS and nutpie",
    "smc_draws": "SMC particles per chain",
}

#: Small budgets for smoke tests (``--quick``) and the notebooks.
QUICK_BUDGET: dict[str, Any] = {
    "em_restarts": 2,
    "em_max_iter": 30,
    "sem_max_iter": 30,
    "gmm_restarts": 2,
    "map_maxiter": 100,
    "pathfinder_maxiter": 300,
    "advi_iterations": 1000,
    "vi_draws": 50,
    "chains": 2,
    "tune": 20,
    "draws": 20,
    "max_treedepth": 4,
    "smc_draws": 100,  # more particles than the notebooks' small model has parameters (50)
}


@dataclass
class MethodResult:
    """What one inference method produced.

    Attributes
    ----------
    method : str
    paths : (N,) int array, the partition (global path of every observation)
    log_likelihood : total log-likelihood of the point estimate on the data
    bic : ``-2 log L + k log N`` of the point estimate
    seconds : wall time of the fit
    partitions : (R, N) int array, the partitions of every restart or chain
    scores : (R,) array, their log-likelihoods (or log densities)
    params : the point estimate (None for "gmm")
    estimator : the fitted estimator
    extra : method-specific numbers
    converged : whether the method's own convergence criterion held (EM: Aitken's estimate
        of the gain left or the Newton decrement; the stochastic EM: the stationarity of its
        log-likelihood; gmm: scikit-learn's; the Bayesian methods:
        ``BayesianDeepGaussianMixture.converged_``)
    """

    method: str
    paths: NDArray[np.intp]
    log_likelihood: float
    bic: float
    seconds: float
    partitions: NDArray[np.intp]
    scores: Array
    params: DGMMParams | None = None
    estimator: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    converged: bool | None = None


def check_budget(budget: Mapping[str, Any], *, option: str = "budget") -> dict[str, int]:
    """Return ``budget`` as ints, or raise a ValueError naming the key and its allowed range.

    ``option`` names the budget in messages (``--budget`` on the command line).
    """
    unknown = sorted(set(budget) - set(DEFAULT_BUDGET))
    if unknown:
        raise ValueError(f"{option} has unknown keys {unknown}; valid: {sorted(DEFAULT_BUDGET)}.")
    out = {}
    for key, value in budget.items():
        low = BUDGET_MINIMUM[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(
                f"{option} {key}={value!r} is out of range; {key} must be an integer >= {low} "
                f"(default {DEFAULT_BUDGET[key]})."
            )
        out[key] = int(value)
    return out


def fit_single_em(
    X: Array,
    n_components: Sequence[int],
    n_factors: Sequence[int],
    algorithm: str,
    init: str,
    seed: int,
    max_iter: int,
    stopping: str | None = None,
) -> Any:
    """One EM fit from one start (BLAS pinned to one thread); the unit of every experiment.

    ``stopping`` defaults to "fixed" for the stochastic EM (the study ran 200 iterations)
    and to the estimator's rule for the exact EM.
    """
    from threadpoolctl import threadpool_limits

    from bayes_dgmm.em.estimator import DeepGaussianMixture

    if stopping is None:
        stopping = "fixed" if algorithm == "stochastic" else "auto"
    with threadpool_limits(1):
        return DeepGaussianMixture(
            tuple(n_components),
            n_factors=tuple(n_factors),
            algorithm=algorithm,
            init=init,
            n_init=1,
            max_iter=max_iter,
            stopping=stopping,
            random_state=seed,
        ).fit(X)


def fit_em_restarts(
    X: Array,
    spec: DGMMSpec,
    algorithm: str,
    *,
    n_restarts: int,
    max_iter: int,
    random_state: int,
    init: str | None = None,
    n_jobs: int = 1,
) -> list[Any]:
    """Independent single-start EM fits (joblib), one seed each from ``random_state``, each
    run to its algorithm's own convergence criterion (``stopping="auto"``) or ``max_iter``."""
    from joblib import Parallel, delayed

    if init is None:
        init = "random" if algorithm == "stochastic" else _default_init()
    seeds = np.random.SeedSequence(random_state).generate_state(n_restarts)
    return list(
        Parallel(n_jobs=n_jobs)(
            delayed(fit_single_em)(
                X, spec.n_components, spec.n_factors, algorithm, init, int(s), max_iter, "auto"
            )
            for s in seeds
        )
    )


def _default_init() -> str:
    import inspect

    from bayes_dgmm.em.estimator import DeepGaussianMixture

    return str(inspect.signature(DeepGaussianMixture).parameters["init"].default)


def run_method(
    method: str,
    X: Array,
    spec: DGMMSpec,
    *,
    random_state: int = 0,
    budget: Mapping[str, Any] | None = None,
    init: Any = None,
    n_jobs: int = 1,
    progressbar: bool = False,
) -> MethodResult:
    """Fit the DGMM of ``spec`` to ``X`` by ``method`` and summarise (module docstring).

    ``init`` starts the Bayesian methods (a DGMMParams or a fitted estimator); by default an
    exact-EM fit is made first (its time is not counted in ``seconds``).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {list(METHODS)}.")
    b = check_budget({**DEFAULT_BUDGET, **(budget or {})})
    if method in EM_METHODS:
        return _run_em(method, X, spec, b, random_state, n_jobs)
    if method == "gmm":
        return _run_gmm(X, spec, b, random_state)
    return _run_bayes(method, X, spec, b, random_state, init, n_jobs, progressbar)


def _run_em(
    method: str, X: Array, spec: DGMMSpec, b: Mapping[str, Any], seed: int, n_jobs: int
) -> MethodResult:
    t0 = time.perf_counter()
    fits = fit_em_restarts(
        X,
        spec,
        method,
        n_restarts=int(b["em_restarts"]),
        max_iter=int(b["sem_max_iter" if method == "stochastic" else "em_max_iter"]),
        random_state=seed,
        n_jobs=n_jobs,
    )
    seconds = time.perf_counter() - t0
    scores = np.array([f.lower_bound_ for f in fits])
    best = fits[int(np.argmax(scores))]
    return MethodResult(
        method=method,
        paths=best.predict(X),
        log_likelihood=float(best.lower_bound_),
        bic=float(best.bic(X)),
        seconds=seconds,
        partitions=np.stack([f.predict(X) for f in fits]),
        scores=scores,
        params=best.params_,
        estimator=best,
        extra={"n_iter": [int(f.n_iter_) for f in fits]},
        converged=bool(best.converged_),
    )


def _run_gmm(X: Array, spec: DGMMSpec, b: Mapping[str, Any], seed: int) -> MethodResult:
    from threadpoolctl import threadpool_limits

    from bayes_dgmm.experiments._gmm import ScaledGaussianMixture

    fits = []
    t0 = time.perf_counter()
    with threadpool_limits(1):
        for s in np.random.SeedSequence(seed).generate_state(int(b["gmm_restarts"])):
            fits.append(
                ScaledGaussianMixture(
                    spec.n_paths,
                    covariance_type="full",
                    reg_covar=1e-6,
                    max_iter=500,
                    random_state=int(s),
                ).fit(X)
            )
    seconds = time.perf_counter() - t0
    scores = np.array([f.log_likelihood(X) for f in fits])
    best = fits[int(np.argmax(scores))]
    return MethodResult(
        method="gmm",
        paths=best.predict(X),
        log_likelihood=float(scores.max()),
        bic=float(best.bic(X)),
        seconds=seconds,
        partitions=np.stack([f.predict(X) for f in fits]),
        scores=scores,
        estimator=best,
        converged=bool(best.converged_),
    )


def bayes_method_kwargs(method: str, b: Mapping[str, Any], n_jobs: int) -> dict[str, Any]:
    """Keyword arguments of ``BayesianDeepGaussianMixture.fit`` for a budget."""
    if method == "map":
        return {"maxiter": int(b["map_maxiter"])}
    if method == "laplace":
        return {"maxiter": int(b["map_maxiter"]), "draws": int(b["vi_draws"])}
    if method == "pathfinder":
        return {"maxiter": int(b["pathfinder_maxiter"]), "draws": int(b["vi_draws"])}
    if method in ("advi", "fullrank_advi"):
        return {"n": int(b["advi_iterations"]), "draws": int(b["vi_draws"])}
    # A tree depth of 6 (64 leapfrog steps) rather than 10 bounds the cost of a draw; the
    # posterior's rotational ridges otherwise make every trajectory run to 1024 steps.
    nuts = {"max_treedepth": int(b["max_treedepth"])}
    if method == "nuts":
        return {
            "tune": int(b["tune"]),
            "draws": int(b["draws"]),
            "chains": int(b["chains"]),
            "cores": max(1, min(int(b["chains"]), n_jobs)),
            "nuts": nuts,
        }
    if method == "nutpie":
        return {
            "tune": int(b["tune"]),
            "draws": int(b["draws"]),
            "chains": int(b["chains"]),
            "nuts": nuts,
        }
    if method == "smc":
        return {
            "draws": int(b["smc_draws"]),
            "chains": int(b["chains"]),
            "cores": max(1, min(int(b["chains"]), n_jobs)),
        }
    return {}


def _run_bayes(
    method: str,
    X: Array,
    spec: DGMMSpec,
    b: Mapping[str, Any],
    seed: int,
    init: Any,
    n_jobs: int,
    progressbar: bool,
) -> MethodResult:
    from bayes_dgmm.bayes.estimator import BayesianDeepGaussianMixture
    from bayes_dgmm.diagnostics.posterior import (
        chain_partitions,
        posterior_draws,
        relabel_posterior,
    )
    from bayes_dgmm.diagnostics.stacking import loo_summary
    from bayes_dgmm.em.estimator import n_free_parameters

    if init is None and method != "smc":
        fits = fit_em_restarts(
            X,
            spec,
            "exact",
            n_restarts=int(b["em_restarts"]),
            max_iter=int(b["em_max_iter"]),
            random_state=seed,
            n_jobs=n_jobs,
        )
        init = max(fits, key=lambda f: f.lower_bound_)
    est = BayesianDeepGaussianMixture.from_spec(spec, random_seed=seed, progressbar=progressbar)
    t0 = time.perf_counter()
    est.fit(
        X,
        method=method,
        init=None if method == "smc" else init,
        **bayes_method_kwargs(method, b, n_jobs),
    )
    seconds = time.perf_counter() - t0
    draws, shape = posterior_draws(est.idata_)
    # the estimator's point estimate: the draw with the highest log-likelihood
    total = est.idata_["sample_stats"]["log_likelihood_total"].transpose("chain", "draw")
    params = est.params_
    loglik = params.score(X)
    k = n_free_parameters(X.shape[1], spec.n_components, spec.n_factors)
    if shape[0] > 1:
        # align labels within and across chains before averaging each chain's classification
        draws, _ = posterior_draws(relabel_posterior(est.idata_).posterior)
        partitions = chain_partitions(draws, shape, X)
        scores = total.mean("draw").values
    else:
        partitions = est.predict(X)[None]
        scores = np.array([loglik])
    return MethodResult(
        method=method,
        paths=est.predict(X),
        log_likelihood=float(loglik),
        bic=float(-2 * loglik + k * np.log(X.shape[0])),
        seconds=seconds,
        partitions=np.asarray(partitions, dtype=np.intp),
        scores=np.asarray(scores, dtype=float),
        params=params,
        estimator=est,
        extra={
            "n_chains": shape[0],
            "n_draws": shape[1],
            "compile_seconds": float(est.compile_seconds_),
            "convergence": est.convergence_,
            **loo_summary(est.idata_),
        },
        converged=bool(est.converged_),
    )
