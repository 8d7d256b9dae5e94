"""EM estimators of the deep Gaussian mixture model with the scikit-learn API.

:class:`DeepGaussianMixture` fits a DGMM (Viroli & McLachlan 2019; notation of
:mod:`bayes_dgmm.params`) by maximum likelihood, with two algorithms:

- ``"exact"`` (default): EM on the marginal likelihood of the global GMM (eqs. 3-6). Labels
  *and* scores are latent; given a path the scores of all layers and ``x`` are jointly
  Gaussian, so the E-step is exact and the M-step is closed form per layer and component
  (:mod:`bayes_dgmm._em_exact`). The log-likelihood never decreases.
- ``"stochastic"``: the layer-wise stochastic EM of the R package ``deepgmm`` (one draw of the
  scores per observation per iteration), from :mod:`bayes_dgmm._stochastic_em`.

Model selection by BIC over a grid of architectures: :func:`select_architecture`.

Free parameters (used by BIC, AIC and ICL), the usual count of a mixture of factor analysers
applied layer by layer: for layer ``l`` and each of its ``G_l`` components, ``eta``
(``R_{l-1}``), ``Lambda`` (``R_{l-1} R_l``) less ``R_l (R_l - 1) / 2`` for its rotational
redundancy, and ``psi`` (``R_{l-1}``); plus ``G_l - 1`` weights. A rotation ``Q`` of
``z^(l)`` leaves the model unchanged when it is absorbed by ``Lambda^(l) Q``; at the top layer
this is the exact invariance ``z^(L) ~ N(0, I)``; below, it is the factor-analytic convention
(see :func:`n_free_parameters`).
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import xlogy
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from threadpoolctl import threadpool_limits

from bayes_dgmm._em_exact import (
    CONSTRAINTS,
    apply_constraint,
    e_step,
    m_step,
    path_model,
    path_statistics,
)
from bayes_dgmm._init import INITIALISERS
from bayes_dgmm._validation import RandomLike, as_generator, check_data, check_not_constant
from bayes_dgmm.params import DGMMParams
from bayes_dgmm.spec import validate_architecture

Array = NDArray[np.float64]

logger = logging.getLogger(__name__)

ALGORITHMS = ("exact", "stochastic")
#: "aligned" (the default) is :func:`bayes_dgmm._recover.aligned_init`; the others are
#: the layer-wise partitions of :mod:`bayes_dgmm._init` (the study's random-start baseline).
INITS = ("aligned", *INITIALISERS)
STOPPING = ("auto", "tol", "fixed", "deepgmm")

#: scikit-learn estimator checks that cannot pass, mapped to the reason (the test suite passes
#: it to ``parametrize_with_checks``). Empty: with ``n_components=(2,), n_factors=(1,)`` every
#: check of scikit-learn 1.9 passes (one-feature data is refused with a ValueError, which
#: ``check_fit2d_1feature`` accepts: a DGMM needs ``n_factors[0] < n_features``).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


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


@dataclass
class _RunResult:
    params: DGMMParams
    log_likelihood: list[float]
    n_iter: int
    converged: bool
    empty: list[tuple[int, int]] = field(default_factory=list)
    failure: str | None = None


@dataclass(frozen=True)
class _Settings:
    n_components: tuple[int, ...]
    n_factors: tuple[int, ...]
    algorithm: str
    init: str | DGMMParams
    max_iter: int
    tol: float
    reg_psi: float
    constraint: str | None
    stopping: str
    verbose: int


def _run_exact(X: Array, params: DGMMParams, s: _Settings, restart: int) -> _RunResult:
    """EM iterations of the exact algorithm from ``params`` (BLAS threads already pinned)."""
    N = X.shape[0]
    var_x = X.var(axis=0)
    G1, R1 = params.n_components[0], params.n_factors[0]
    model = path_model(params)
    log_norm, resp = e_step(X, model, G1)
    history = [float(np.sum(log_norm))]
    converged, n_iter = False, 0
    empty: list[tuple[int, int]] = []
    failure: str | None = None
    for n_iter in range(1, s.max_iter + 1):
        stats = path_statistics(X, resp, model, R1)
        new_params, empty = m_step(stats, params, s.reg_psi, var_x)
        if s.constraint is not None:
            new_params = apply_constraint(new_params, s.constraint)
        new_model = path_model(new_params)
        log_norm, new_resp = e_step(X, new_model, G1)
        ll = float(np.sum(log_norm))
        if not np.isfinite(ll):
            failure = f"the log-likelihood became {ll} at iteration {n_iter}"
            n_iter -= 1
            break
        params, model, resp = new_params, new_model, new_resp
        history.append(ll)
        if s.verbose >= 2:
            logger.info("restart %d iteration %d: log-likelihood %.6f", restart, n_iter, ll)
        if _should_stop(history, s, N):
            converged = True
            break
    return _RunResult(params, history, n_iter, converged, empty, failure)


def _should_stop(history: Sequence[float], s: _Settings, n_samples: int) -> bool:
    if s.stopping == "fixed" or len(history) < 2:
        return False
    if s.stopping == "deepgmm":
        from bayes_dgmm._stochastic_em import deepgmm_should_stop

        return bool(deepgmm_should_stop(history, s.tol))
    return abs(history[-1] - history[-2]) / n_samples < s.tol


def _run_stochastic(
    X: Array, params: DGMMParams, s: _Settings, rng: np.random.Generator, restart: int
) -> _RunResult:
    """Iterations of deepgmm's stochastic EM (:mod:`bayes_dgmm._stochastic_em`)."""
    from bayes_dgmm._stochastic_em import stochastic_em_iteration

    N = X.shape[0]
    history = [params.score(X)]
    converged, n_iter = False, 0
    failure: str | None = None
    for n_iter in range(1, s.max_iter + 1):
        new_params = stochastic_em_iteration(X, params, rng, reg_psi=s.reg_psi)
        if s.constraint is not None:
            new_params = apply_constraint(new_params, s.constraint)
        ll = new_params.score(X)
        if not np.isfinite(ll):
            failure = f"the log-likelihood became {ll} at iteration {n_iter}"
            n_iter -= 1
            break
        params = new_params
        history.append(ll)
        if s.verbose >= 2:
            logger.info("restart %d iteration %d: log-likelihood %.6f", restart, n_iter, ll)
        if _should_stop(history, s, N):
            converged = True
            break
    return _RunResult(params, history, n_iter, converged, [], failure)


def _run_restart(X: Array, seed: np.random.SeedSequence, s: _Settings, restart: int) -> _RunResult:
    """One restart: starting values from ``seed``, then EM. Runs in a joblib worker."""
    with threadpool_limits(1):
        rng = np.random.default_rng(seed)
        if isinstance(s.init, DGMMParams):
            params = s.init.copy()
        elif s.init == "aligned":
            from bayes_dgmm._recover import aligned_init

            params = aligned_init(X, s.n_components, s.n_factors, rng)
        else:
            params = INITIALISERS[s.init](X, s.n_components, s.n_factors, rng)
        if s.algorithm == "exact":
            result = _run_exact(X, params, s, restart)
        else:
            result = _run_stochastic(X, params, s, rng, restart)
    if s.verbose >= 1:
        logger.info(
            "restart %d: log-likelihood %.6f after %d iterations (converged: %s)",
            restart,
            result.log_likelihood[-1],
            result.n_iter,
            result.converged,
        )
    return result


def _seed_sequences(random_state: RandomLike, n: int) -> list[np.random.SeedSequence]:
    """``n`` independent seeds spawned from ``random_state`` (the same for any ``n_jobs``)."""
    if random_state is None:
        root = np.random.SeedSequence()
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        as_generator(random_state)  # rejects negative seeds with a clear message
        root = np.random.SeedSequence(int(random_state))
    else:
        root = np.random.SeedSequence(int(as_generator(random_state).integers(2**63)))
    return root.spawn(n)


class DeepGaussianMixture(DensityMixin, BaseEstimator):
    """Deep Gaussian mixture model fitted by EM (Viroli & McLachlan 2019).

    Layer ``l = 1..L`` (layer 1 next to the data) has ``G_l`` components mapping the scores
    ``z^(l)`` to ``z^(l-1) = eta^(l)_g + Lambda^(l)_g z^(l) + u``, ``u ~ N(0, diag(psi^(l)_g))``,
    ``g ~ pi^(l)``, ``z^(L) ~ N(0, I)``, ``x = z^(0)``; ``x`` is a Gaussian mixture over the
    ``prod G_l`` paths (the global GMM, eqs. 3-6).

    Parameters
    ----------
    n_components : int or sequence of int, default (2,)
        Components per layer ``(G_1, ..., G_L)``, e.g. ``(3, 3, 2)``.
    n_factors : int or sequence of int, default (1,)
        Latent dimensions ``(R_1, ..., R_L)``, strictly decreasing, ``R_1 < n_features``,
        e.g. ``(11, 6, 2)``.
    algorithm : {"exact", "stochastic"}, default "exact"
        ``"exact"``: EM on the marginal likelihood (module docstring). ``"stochastic"``: the
        layer-wise stochastic EM of the R package deepgmm.
    init : {"aligned", "kmeans", "random"} or DGMMParams, default "aligned"
        ``"aligned"``: layer-wise mixtures of factor analysers whose components' latent
        frames are registered onto each other before the next layer is fitted, then refined
        by L-BFGS (:mod:`bayes_dgmm._recover`, ``docs/recover.md``); it recovers the study
        data's partition, which EM from the other starts does not. ``"kmeans"``: k-means on
        ``x``, a factor analyser per cluster, then the same on the pooled layer-1 scores for
        layer 2, and so on; ``"random"``: uniform random partitions
        instead of k-means; a :class:`DGMMParams`: these starting values (every restart then
        starts from them).
    n_init : int, default 1
        Number of restarts; the one with the highest final log-likelihood is kept.
    max_iter : int, default 200
        Iterations per restart (the study ran 200).
    tol : float, default 1e-3
        With ``stopping="tol"``: stop when the mean log-likelihood per sample changes by less
        than ``tol``. With ``stopping="deepgmm"``: the ``eps`` of deepgmm's rule.
    reg_psi : float, default 1e-10
        Floor on the noise variances ``psi``, *relative* to the variance of each feature
        (layer 1) or of each score ``z^(l-1)`` (layer ``l``). Keep it far below the smallest
        noise-to-signal ratio expected: layer 1 of the study data has ``psi`` about 1e-7 of
        ``var(x)``.
    constraint : {None, "lower_triangular", "orthonormal", "diagonal"}, default None
        Identifiability constraint applied after every M-step by rotating each
        ``Lambda^(l)_g`` (``Lambda -> Lambda Q``, ``Q`` orthogonal): ``"lower_triangular"``
        (positive diagonal), ``"orthonormal"`` (orthogonal columns ordered by decreasing
        variance), ``"diagonal"`` (``Lambda^T Psi^-1 Lambda`` diagonal). The rotation leaves
        the likelihood unchanged at the top layer, hence for a one-layer model. Below the top
        layer the scores ``z^(l)`` are not isotropic (they are a Gaussian mixture), so a
        component-wise rotation changes the model: the constraint then restricts it, as in
        the study (sec. 3.4), and the log-likelihood may decrease at that step.
    stopping : {"auto", "tol", "fixed", "deepgmm"}, default "auto"
        ``"tol"``: change of the mean log-likelihood below ``tol`` (scikit-learn's rule);
        ``"fixed"``: run ``max_iter`` iterations (the study's 200); ``"deepgmm"``: deepgmm's
        moving-average rule with ``eps=tol``; ``"auto"``: ``"tol"`` for ``"exact"``,
        ``"deepgmm"`` for ``"stochastic"``.
    random_state : None, int or numpy Generator, default None
        Seeds the restarts: each restart gets a ``SeedSequence`` spawned from it, so results
        do not depend on ``n_jobs``.
    verbose : int, default 0
        1 logs one line per restart, 2 one per iteration (logger ``bayes_dgmm.em``, level INFO).
    n_jobs : int or None, default None
        Restarts run in parallel with joblib (BLAS is pinned to one thread in each).

    Attributes
    ----------
    params_ : DGMMParams, the best restart's parameters
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float, total log-likelihood of ``params_`` on the training data
    history_ : FitHistory, log-likelihood and BIC after every iteration of the best restart
    restarts_ : list of RestartSummary, one per restart
    n_features_in_ : int
    """

    def __init__(
        self,
        n_components: int | Sequence[int] = (2,),
        *,
        n_factors: int | Sequence[int] = (1,),
        algorithm: str = "exact",
        init: str | DGMMParams = "aligned",
        n_init: int = 1,
        max_iter: int = 200,
        tol: float = 1e-3,
        reg_psi: float = 1e-10,
        constraint: str | None = None,
        stopping: str = "auto",
        random_state: RandomLike = None,
        verbose: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.n_factors = n_factors
        self.algorithm = algorithm
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.reg_psi = reg_psi
        self.constraint = constraint
        self.stopping = stopping
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ checks
    def _check_input(self, X: Any, n_features: int | None = None) -> Array:
        arr = check_data(X)
        if n_features is not None and arr.shape[1] != n_features:
            raise ValueError(
                f"X has {arr.shape[1]} features, but {type(self).__name__} is expecting "
                f"{n_features} features as input (as at fit time); pass data with the same "
                "columns."
            )
        return arr

    def _check_settings(self, X: Array) -> _Settings:
        comps, facts = validate_architecture(self.n_components, self.n_factors, X.shape[1])
        needed = max(2, max(comps))
        if X.shape[0] < needed:
            raise ValueError(
                f"X has n_samples={X.shape[0]}; at least {needed} are needed for "
                f"n_components={comps}; pass more rows or fewer components."
            )
        check_not_constant(X)
        for name in ("n_init", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer, e.g. {name}=1.")
        for name, low in (("tol", 0.0), ("reg_psi", None)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not math.isfinite(value)
                or value < 0
                or (low is None and value == 0)
            ):
                bound = ">= 0" if low is not None else "> 0 (e.g. 1e-10)"
                raise ValueError(f"{name}={value!r} must be a finite number {bound}.")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm={self.algorithm!r} is not one of {ALGORITHMS}.")
        if isinstance(self.init, DGMMParams):
            if (
                self.init.n_components != comps
                or self.init.n_factors != facts
                or self.init.n_features != X.shape[1]
            ):
                raise ValueError(
                    f"init={self.init!r} does not match n_components={comps}, "
                    f"n_factors={facts} and the {X.shape[1]} features of X; pass starting "
                    "values of this architecture."
                )
        elif not isinstance(self.init, str) or self.init not in INITS:
            raise ValueError(f"init={self.init!r} is not one of {INITS} or a DGMMParams.")
        if self.constraint is not None and self.constraint not in CONSTRAINTS:
            raise ValueError(f"constraint={self.constraint!r} is not None or one of {CONSTRAINTS}.")
        if self.stopping not in STOPPING:
            raise ValueError(f"stopping={self.stopping!r} is not one of {STOPPING}.")
        stopping = self.stopping
        if stopping == "auto":
            stopping = "tol" if self.algorithm == "exact" else "deepgmm"
        return _Settings(
            n_components=comps,
            n_factors=facts,
            algorithm=self.algorithm,
            init=self.init,
            max_iter=int(self.max_iter),
            tol=float(self.tol),
            reg_psi=float(self.reg_psi),
            constraint=self.constraint,
            stopping=stopping,
            verbose=int(self.verbose),
        )

    def _check_fitted(self) -> DGMMParams:
        if not hasattr(self, "params_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(X) first."
            )
        return self.params_

    # ------------------------------------------------------------------ fitting
    def fit(self, X: ArrayLike, y: Any = None) -> DeepGaussianMixture:
        """Fit by EM with ``n_init`` restarts and keep the best (highest log-likelihood).

        Parameters
        ----------
        X : (N, J) array-like
        y : ignored

        Returns
        -------
        self
        """
        from joblib import Parallel, delayed

        Xa = self._check_input(X)
        settings = self._check_settings(Xa)
        seeds = _seed_sequences(self.random_state, settings_n_init := int(self.n_init))
        results: list[_RunResult] = Parallel(n_jobs=self.n_jobs)(
            delayed(_run_restart)(Xa, seed, settings, k) for k, seed in enumerate(seeds)
        )
        best = int(np.argmax([r.log_likelihood[-1] for r in results]))
        result = results[best]
        self.params_ = result.params
        self.n_features_in_ = Xa.shape[1]
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = float(result.log_likelihood[-1])
        ll = np.asarray(result.log_likelihood)
        k = n_free_parameters(Xa.shape[1], settings.n_components, settings.n_factors)
        self.history_ = FitHistory(log_likelihood=ll, bic=-2.0 * ll + k * np.log(Xa.shape[0]))
        self.restarts_ = [
            RestartSummary(float(r.log_likelihood[-1]), r.n_iter, r.converged) for r in results
        ]
        self._warn(result, settings, settings_n_init)
        return self

    def _warn(self, result: _RunResult, s: _Settings, n_init: int) -> None:
        if result.failure is not None:
            warnings.warn(
                f"EM stopped early because {result.failure}; the parameters of the previous "
                "iteration are kept. Standardise X, raise reg_psi or reduce n_factors.",
                ConvergenceWarning,
                stacklevel=3,
            )
        elif not result.converged and s.stopping in ("tol", "deepgmm"):
            warnings.warn(
                f"The best of n_init={n_init} restarts did not converge in max_iter="
                f"{s.max_iter} iterations (tol={s.tol}); increase max_iter or tol, or try "
                "other starting values.",
                ConvergenceWarning,
                stacklevel=3,
            )
        if result.empty:
            where = ", ".join(f"layer {l} component {g}" for l, g in result.empty)
            warnings.warn(
                f"Empty components ({where}): they hold no observation and kept their "
                "previous parameters. Reduce n_components or try more restarts (n_init).",
                ConvergenceWarning,
                stacklevel=3,
            )

    def fit_predict(self, X: ArrayLike, y: Any = None) -> NDArray[np.intp]:
        """Fit, then label ``X`` by its most probable path: the same as ``fit(X).predict(X)``."""
        return self.fit(X).predict(X)

    # ------------------------------------------------------------------ inference
    def predict_proba(self, X: ArrayLike, layer: int | None = None) -> Array:
        """Posterior probabilities of the paths (N, P), or of layer ``layer``'s components.

        Parameters
        ----------
        X : (N, J) array-like
        layer : int in 1..L, optional
        """
        params = self._check_fitted()
        return params.predict_proba(self._check_input(X, self.n_features_in_), layer=layer)

    def predict(self, X: ArrayLike, layer: int | None = None) -> NDArray[np.intp]:
        """Most probable global path (0-based, :func:`bayes_dgmm.path_table` order), or the
        most probable component of layer ``layer`` (1-based layer), shape (N,)."""
        return np.argmax(self.predict_proba(X, layer=layer), axis=1).astype(np.intp)

    def score_samples(self, X: ArrayLike) -> Array:
        """Log density of each row of ``X``, shape (N,)."""
        params = self._check_fitted()
        return params.score_samples(self._check_input(X, self.n_features_in_))

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean log-likelihood per sample (scikit-learn convention)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1) -> tuple[Array, NDArray[np.intp]]:
        """Draw ``n_samples`` observations and their paths: ``(X (n, J), paths (n,))``."""
        params = self._check_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
            raise ValueError(f"n_samples={n_samples!r} must be a positive integer.")
        if n_samples < 1:
            raise ValueError(f"n_samples={n_samples} must be a positive integer.")
        return params.sample(int(n_samples), random_state=as_generator(self.random_state))

    # ------------------------------------------------------------------ model selection
    def n_parameters(self) -> int:
        """Number of free parameters (see :func:`n_free_parameters`)."""
        params = self._check_fitted()
        return n_free_parameters(params.n_features, params.n_components, params.n_factors)

    def bic(self, X: ArrayLike) -> float:
        """Bayesian information criterion ``-2 log L + k log N`` (lower is better)."""
        Xa = self._check_input(X, getattr(self, "n_features_in_", None))
        ll = float(np.sum(self.score_samples(Xa)))
        return -2.0 * ll + self.n_parameters() * math.log(Xa.shape[0])

    def aic(self, X: ArrayLike) -> float:
        """Akaike information criterion ``-2 log L + 2 k`` (lower is better)."""
        ll = float(np.sum(self.score_samples(X)))
        return -2.0 * ll + 2.0 * self.n_parameters()

    def icl(self, X: ArrayLike) -> float:
        """Integrated completed likelihood: BIC plus twice the entropy of the path posteriors,
        ``BIC - 2 sum_i sum_p t_ip log t_ip`` (Biernacki et al. 2000; lower is better)."""
        proba = self.predict_proba(X)
        return self.bic(X) - 2.0 * float(np.sum(xlogy(proba, proba)))


def select_architecture(
    X: ArrayLike,
    grid: Iterable[tuple[Sequence[int], Sequence[int]] | Mapping[str, Sequence[int]]],
    **estimator_kwargs: Any,
) -> Any:
    """Fit one :class:`DeepGaussianMixture` per architecture and tabulate BIC, AIC and ICL.

    Parameters
    ----------
    X : (N, J) array-like
    grid : iterable of ``(n_components, n_factors)`` pairs or of mappings with those keys,
        e.g. the study's Table 1: ``[((g, 3, 2), (11, 6, 2)) for g in range(2, 7)]``
    **estimator_kwargs : passed to every estimator (``n_init``, ``random_state``, ...)

    Returns
    -------
    pandas.DataFrame, one row per architecture: ``n_components``, ``n_factors``,
    ``n_parameters``, ``log_likelihood``, ``bic``, ``aic``, ``icl``, ``converged``,
    ``n_iter`` and ``selected`` (True on the row with the lowest BIC).
    """
    import pandas as pd

    Xa = check_data(X)
    rows = []
    for entry in grid:
        if isinstance(entry, Mapping):
            comps, facts = entry["n_components"], entry["n_factors"]
        else:
            comps, facts = entry
        est = DeepGaussianMixture(n_components=comps, n_factors=facts, **estimator_kwargs)
        est.fit(Xa)
        rows.append(
            {
                "n_components": tuple(est.params_.n_components),
                "n_factors": tuple(est.params_.n_factors),
                "n_parameters": est.n_parameters(),
                "log_likelihood": est.lower_bound_,
                "bic": est.bic(Xa),
                "aic": est.aic(Xa),
                "icl": est.icl(Xa),
                "converged": est.converged_,
                "n_iter": est.n_iter_,
            }
        )
    table = pd.DataFrame(rows)
    if len(table):
        table["selected"] = table["bic"] == table["bic"].min()
    return table
