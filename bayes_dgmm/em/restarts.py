"""Restarts of the EM: the checked settings, starting values, the EM loop with the chosen
step, screening.

:class:`~bayes_dgmm.em.estimator.DeepGaussianMixture` checks its settings with
:func:`check_settings` and hands them to :func:`run_restarts`, which runs :func:`run_restart`
for every seed (in joblib workers) and :func:`continue_restart` for the screened ones.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from numpy.typing import NDArray
from scipy.linalg import LinAlgError
from threadpoolctl import threadpool_limits

from bayes_dgmm._validation import RandomLike, as_generator, check_not_constant
from bayes_dgmm.em.aligned import aligned_init
from bayes_dgmm.em.driver import EMResult, run_em
from bayes_dgmm.em.exact import exact_step, variance_floor
from bayes_dgmm.em.newton import MAX_NEWTON_ITER, MAX_PARAMETERS, n_parameters, newton_finish
from bayes_dgmm.em.starts import INITIALISERS
from bayes_dgmm.em.stochastic import stochastic_step
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.spec import validate_architecture

Array = NDArray[np.float64]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """The checked hyper-parameters of one fit."""

    n_components: tuple[int, ...]
    n_factors: tuple[int, ...]
    algorithm: str
    init: str | DGMMParams
    max_iter: int
    tol: float
    reg_psi: float
    constraint: str | None
    stopping: str
    acceleration: str | None
    parameter_expansion: bool
    verbose: int


#: With ``n_init > 1`` the exact EM screens its restarts: each runs ``SCREEN_ITER`` iterations,
#: and only those within ``max(SCREEN_MARGIN, SCREEN_MARGIN_PER_ROW * N)`` nats of the best
#: run on to convergence, so restarts left in far worse optima cost little while every
#: close call is decided by converged likelihoods.
SCREEN_ITER = 100
SCREEN_MARGIN = 20.0
SCREEN_MARGIN_PER_ROW = 5e-3
#: The Newton steps that end a run are budgeted with its EM: two per this many of
#: ``max_iter`` (120 at the default 1500); a ``max_iter`` below it keeps Aitken's rule. The
#: EM hands over where it crawls, so the Newton steps may have far to go: icbinb-like data set
#: 1 under Sandybridge kernels still had a decrement of 5.4 nats after 60 (docs/em-speed.md).
EM_ITER_PER_NEWTON = 25
#: Screened restarts whose partitions into paths agree to this adjusted Rand index sit in
#: one mode: only the best of them runs on (on the study data every aligned restart lands in
#: the same mode, and running each to convergence would multiply the cost by ``n_init``).
SAME_MODE_ARI = 0.99


def distinct_modes(X: Array, results: list[EMResult], candidates: list[int]) -> list[int]:
    """The candidates (indices into ``results``) left after dropping every restart whose
    hard partition into paths agrees (ARI >= :data:`SAME_MODE_ARI`) with that of a restart
    of higher log-likelihood; best first."""
    from sklearn.metrics import adjusted_rand_score

    order = sorted(candidates, key=lambda k: -results[k].log_likelihood[-1])
    kept: list[tuple[int, NDArray[np.intp]]] = []
    for k in order:
        labels = results[k].params.predict(X)
        if all(adjusted_rand_score(other, labels) < SAME_MODE_ARI for _, other in kept):
            kept.append((k, labels))
    return [k for k, _ in kept]


class StartWarning(UserWarning):
    """The requested starting values could not be computed and a simpler start was used."""


def _starting_values(X: Array, s: Settings, rng: np.random.Generator) -> DGMMParams:
    if isinstance(s.init, DGMMParams):
        return s.init.copy()
    if s.init == "aligned":
        try:
            return aligned_init(X, s.n_components, s.n_factors, rng)
        except (LinAlgError, FloatingPointError, ValueError) as exc:
            # the aligned start fits mixtures inside every component; with few rows per
            # component their covariances are singular, while k-means partitions still work
            warnings.warn(
                f"init='aligned' could not be computed ({type(exc).__name__}: {exc}); this "
                "restart starts from init='kmeans' instead. With so few rows per component, "
                "consider fewer components or factors.",
                StartWarning,
                stacklevel=2,
            )
    try:
        return INITIALISERS["kmeans" if s.init == "aligned" else s.init](
            X, s.n_components, s.n_factors, rng
        )
    except (LinAlgError, FloatingPointError) as exc:
        raise ValueError(
            f"No starting values for n_components={s.n_components}, n_factors={s.n_factors} "
            f"on X with n_samples={X.shape[0]} ({type(exc).__name__}: {exc}); pass more rows "
            "or fewer components or factors."
        ) from exc


def _iterate(
    X: Array,
    params: DGMMParams,
    s: Settings,
    rng: np.random.Generator,
    restart: int,
    max_iter: int,
    final: bool = True,
) -> EMResult:
    """EM from ``params``; a ``final`` phase (not a screening one) is certified, and where
    the Newton finish follows it (:func:`newton_applies`) the EM hands over to it."""
    if s.algorithm == "exact":
        step = exact_step(
            X, reg_psi=s.reg_psi, constraint=s.constraint, expand=s.parameter_expansion
        )
        accelerate = s.acceleration == "anderson" and s.constraint is None
    else:
        step = stochastic_step(X, rng, reg_psi=s.reg_psi, constraint=s.constraint)
        accelerate = False
    try:
        return run_em(
            step,
            params,
            n_samples=X.shape[0],
            max_iter=max_iter,
            stopping=s.stopping,
            tol=s.tol,
            accelerate=accelerate,
            certify=final and s.algorithm == "exact",
            handover=final and newton_applies(s, params),
            label=f"restart {restart}",
            verbose=s.verbose,
        )
    except FloatingPointError as exc:
        raise ValueError(
            f"The EM could not start for n_components={s.n_components}, n_factors="
            f"{s.n_factors} on X with n_samples={X.shape[0]}: {exc}"
        ) from exc


def newton_applies(s: Settings, params: DGMMParams) -> bool:
    """Whether the exact EM's run ends with :func:`bayes_dgmm.em.newton.newton_finish`: the
    exact algorithm under Aitken's rule, without a constraint (which the Newton steps would
    not keep), at most :data:`bayes_dgmm.em.newton.MAX_PARAMETERS` free parameters."""
    return (
        s.algorithm == "exact"
        and s.stopping == "aitken"
        and s.constraint is None
        and n_parameters(params) <= MAX_PARAMETERS
    )


def finish(X: Array, result: EMResult, s: Settings, restart: int) -> EMResult:
    """Newton steps after the EM until the Newton decrement is at most ``tol * N``
    (:mod:`bayes_dgmm.em.newton`), at most ``2 * (max_iter // EM_ITER_PER_NEWTON)`` of them; that
    decrement then decides ``converged``, whether or not Aitken's rule already held (its
    estimate can fall below the tolerance while the EM still crawls). The result unchanged
    when Newton does not apply, the budget allows no step, or the run failed."""
    budget = min(MAX_NEWTON_ITER, 2 * (s.max_iter // EM_ITER_PER_NEWTON))
    if budget == 0 or result.failure is not None or not newton_applies(s, result.params):
        return result
    floor = variance_floor(X.var(axis=0), s.reg_psi)
    psi_floor = [np.broadcast_to(floor, result.params.psi[0].shape)] + [
        np.zeros_like(p) for p in result.params.psi[1:]
    ]
    with threadpool_limits(1):
        fin = newton_finish(
            X,
            result.params,
            tol=s.tol,
            max_iter=budget,
            psi_floor=psi_floor,
            label=f"restart {restart}",
        )
    if not fin.log_likelihood:  # the EM's last iterate could not be evaluated
        return result
    history = [*result.log_likelihood, *fin.log_likelihood[1:]]
    return EMResult(
        params=fin.params,
        log_likelihood=history,
        n_iter=len(history) - 1,
        converged=fin.decrement <= s.tol * X.shape[0],
        remaining=fin.decrement,
        empty=result.empty,
        singular=result.singular,
        criterion="newton",
    )


def run_restart(
    X: Array, seed: np.random.SeedSequence, s: Settings, restart: int, max_iter: int
) -> EMResult:
    """One restart: starting values from ``seed``, then up to ``max_iter`` iterations (not
    certified when they are a screening phase, else finished by :func:`finish`). Runs in a
    joblib worker."""
    with threadpool_limits(1):
        rng = np.random.default_rng(seed)
        params = _starting_values(X, s, rng)
        result = _iterate(X, params, s, rng, restart, max_iter, final=max_iter == s.max_iter)
    if max_iter == s.max_iter:
        result = finish(X, result, s, restart)
    _log_restart(s, restart, result)
    return result


def continue_restart(X: Array, first: EMResult, s: Settings, restart: int) -> EMResult:
    """Run a screened restart on to convergence; its history continues the first phase's."""
    with threadpool_limits(1):
        rest = _iterate(
            X, first.params, s, np.random.default_rng(0), restart, s.max_iter - first.n_iter
        )
    rest.log_likelihood = [*first.log_likelihood, *rest.log_likelihood[1:]]
    rest.n_iter = len(rest.log_likelihood) - 1
    rest = finish(X, rest, s, restart)
    _log_restart(s, restart, rest)
    return rest


def _log_restart(s: Settings, restart: int, result: EMResult) -> None:
    if s.verbose >= 1:
        logger.info(
            "restart %d: log-likelihood %.6f after %d iterations (converged: %s)",
            restart,
            result.log_likelihood[-1],
            result.n_iter,
            result.converged,
        )


def run_restarts(
    X: Array, s: Settings, seeds: list[np.random.SeedSequence], n_jobs: int | None
) -> list[EMResult]:
    """One restart per seed, in parallel with joblib. With the exact EM and several seeds
    they are screened: each runs :data:`SCREEN_ITER` iterations, and those within
    ``max(SCREEN_MARGIN, SCREEN_MARGIN_PER_ROW * N)`` nats of the best, one per mode
    (:func:`distinct_modes`), run on to ``max_iter`` (:func:`continue_restart`)."""
    screen = (
        s.algorithm == "exact"
        and len(seeds) > 1
        and s.stopping != "fixed"
        and s.max_iter > SCREEN_ITER
    )
    first_iter = SCREEN_ITER if screen else s.max_iter
    results: list[EMResult] = Parallel(n_jobs=n_jobs)(
        delayed(run_restart)(X, seed, s, k, first_iter) for k, seed in enumerate(seeds)
    )
    if screen:
        finals = np.array([r.log_likelihood[-1] for r in results])
        margin = max(SCREEN_MARGIN, SCREEN_MARGIN_PER_ROW * X.shape[0])
        close = [k for k in range(len(results)) if finals[k] >= finals.max() - margin]
        keep = distinct_modes(X, results, close)
        continued: list[EMResult] = Parallel(n_jobs=n_jobs)(
            delayed(continue_restart)(X, results[k], s, k) for k in keep
        )
        for k, r in zip(keep, continued, strict=True):
            results[k] = r
    return results


def check_settings(X: Array, est: Mapping[str, Any]) -> Settings:
    """The estimator's hyper-parameters ``est`` (its ``get_params()``), checked where they
    involve the data or several of them at once, and resolved (``stopping="auto"``)."""
    comps, facts = validate_architecture(est["n_components"], est["n_factors"], X.shape[1])
    init, algorithm = est["init"], est["algorithm"]
    needed = max(2, max(comps))
    if X.shape[0] < needed:
        raise ValueError(
            f"X has n_samples={X.shape[0]}; at least {needed} are needed for "
            f"n_components={comps}; pass more rows or fewer components."
        )
    n_paths = math.prod(comps)
    if X.shape[0] < 2 * n_paths:
        # fewer rows than two per path: components sit on single points and the
        # likelihood grows without bound, a fit that converges to nothing
        raise ValueError(
            f"X has n_samples={X.shape[0]}, fewer than two per path of n_components="
            f"{comps} ({n_paths} paths): the fit would be degenerate; pass at least "
            f"{2 * n_paths} rows or fewer components."
        )
    check_not_constant(X)
    if isinstance(init, DGMMParams) and (
        init.n_components != comps or init.n_factors != facts or init.n_features != X.shape[1]
    ):
        raise ValueError(
            f"init={init!r} does not match n_components={comps}, "
            f"n_factors={facts} and the {X.shape[1]} features of X; pass starting "
            "values of this architecture."
        )
    stopping = est["stopping"]
    if stopping == "auto":
        stopping = "aitken" if algorithm == "exact" else "stationary"
    if stopping == "aitken" and algorithm == "stochastic":
        raise ValueError(
            "stopping='aitken' needs a monotone EM; the stochastic EM's log-likelihood "
            "is random: use stopping='stationary', 'deepgmm' or 'fixed' with "
            "algorithm='stochastic'."
        )
    return Settings(
        n_components=comps,
        n_factors=facts,
        algorithm=algorithm,
        init=init,
        max_iter=int(est["max_iter"]),
        tol=float(est["tol"]),
        reg_psi=float(est["reg_psi"]),
        constraint=est["constraint"],
        stopping=stopping,
        acceleration=est["acceleration"],
        parameter_expansion=bool(est["parameter_expansion"]),
        verbose=int(est["verbose"]),
    )


def seed_sequences(random_state: RandomLike, n: int) -> list[np.random.SeedSequence]:
    """``n`` independent seeds spawned from ``random_state`` (the same for any ``n_jobs``)."""
    if random_state is None:
        root = np.random.SeedSequence()
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        as_generator(random_state)  # rejects negative seeds with a clear message
        root = np.random.SeedSequence(int(random_state))
    else:
        root = np.random.SeedSequence(int(as_generator(random_state).integers(2**63)))
    return root.spawn(n)
