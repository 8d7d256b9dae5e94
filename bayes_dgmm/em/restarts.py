"""Restarts of the EM: starting values, the EM loop with the chosen step, screening.

:class:`~bayes_dgmm.em.estimator.DeepGaussianMixture` runs :func:`run_restart` for every
seed (in joblib workers) and :func:`continue_restart` for the screened ones.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import LinAlgError
from threadpoolctl import threadpool_limits

from bayes_dgmm._validation import RandomLike, as_generator
from bayes_dgmm.em.aligned import aligned_init
from bayes_dgmm.em.driver import EMResult, run_em
from bayes_dgmm.em.exact import exact_step
from bayes_dgmm.em.starts import INITIALISERS
from bayes_dgmm.em.stochastic import stochastic_step
from bayes_dgmm.model.params import DGMMParams

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
    certify: bool = True,
) -> EMResult:
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
            certify=certify and s.algorithm == "exact",
            label=f"restart {restart}",
            verbose=s.verbose,
        )
    except FloatingPointError as exc:
        raise ValueError(
            f"The EM could not start for n_components={s.n_components}, n_factors="
            f"{s.n_factors} on X with n_samples={X.shape[0]}: {exc}"
        ) from exc


def run_restart(
    X: Array, seed: np.random.SeedSequence, s: Settings, restart: int, max_iter: int
) -> EMResult:
    """One restart: starting values from ``seed``, then up to ``max_iter`` iterations (not
    certified when they are a screening phase). Runs in a joblib worker."""
    with threadpool_limits(1):
        rng = np.random.default_rng(seed)
        params = _starting_values(X, s, rng)
        result = _iterate(X, params, s, rng, restart, max_iter, certify=max_iter == s.max_iter)
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
