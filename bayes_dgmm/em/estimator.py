"""EM estimators of the deep Gaussian mixture model with the scikit-learn API.

:class:`DeepGaussianMixture` fits a DGMM (Viroli & McLachlan 2019; notation of
:mod:`bayes_dgmm.model.params`) by maximum likelihood, with two algorithms:

- ``"exact"`` (default): EM on the marginal likelihood of the global GMM (eqs. 3-6). Labels
  *and* scores are latent; given a path the scores of all layers and ``x`` are jointly
  Gaussian, so the E-step is exact and the M-step is closed form per layer and component
  (:mod:`bayes_dgmm.em.exact`). The log-likelihood never decreases.
- ``"stochastic"``: the layer-wise stochastic EM of the R package ``deepgmm`` (one draw of the
  scores per observation per iteration), from :mod:`bayes_dgmm.em.stochastic`.

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
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from joblib import Parallel, delayed
from numpy.typing import ArrayLike, NDArray
from scipy.special import xlogy
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils._param_validation import Interval, StrOptions

from bayes_dgmm._validation import (
    RandomLike,
    as_generator,
    check_data,
    check_declared,
    check_feature_names,
    check_not_constant,
)
from bayes_dgmm.em import ALGORITHMS
from bayes_dgmm.em.driver import STATIONARY_WINDOW, STATIONARY_Z, EMResult, stationary_drift
from bayes_dgmm.em.exact import CONSTRAINTS
from bayes_dgmm.em.restarts import (
    SCREEN_ITER,
    SCREEN_MARGIN,
    SCREEN_MARGIN_PER_ROW,
    Settings,
    continue_restart,
    distinct_modes,
    run_restart,
    seed_sequences,
)
from bayes_dgmm.em.starts import INITIALISERS
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.spec import validate_architecture

Array = NDArray[np.float64]

logger = logging.getLogger(__name__)

#: "aligned" (the default) is :func:`bayes_dgmm.em.aligned.aligned_init`; the others are
#: the layer-wise partitions of :mod:`bayes_dgmm.em.starts` (the study's random-start baseline).
INITS = ("aligned", *INITIALISERS)
STOPPING = ("auto", "aitken", "tol", "fixed", "deepgmm", "stationary")
ACCELERATIONS = ("anderson", None)

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
    remaining: float = math.nan


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
        by L-BFGS (:mod:`bayes_dgmm.em.aligned`, ``docs/recover.md``); it recovers the study
        data's partition, which EM from the other starts does not. ``"kmeans"``: k-means on
        ``x``, a factor analyser per cluster, then the same on the pooled layer-1 scores for
        layer 2, and so on; ``"random"``: uniform random partitions
        instead of k-means; a :class:`DGMMParams`: these starting values (the exact EM, being
        deterministic, then runs once whatever ``n_init``; the stochastic EM's restarts
        start from them with their own draws).
    n_init : int, default 4
        Number of restarts; the one with the highest final log-likelihood is kept. With
        the exact EM the restarts are screened: each runs ``SCREEN_ITER`` (100) iterations and
        those within ``max(20, 5e-3 N)`` nats of the best run on to ``max_iter``, one per
        mode: restarts whose partitions into paths agree (ARI >= 0.99) are one mode, and only
        the best of them runs on. A restart left in a far worse optimum stops early.
    max_iter : int, default 1500
        Most iterations per restart (the study ran 200 with ``stopping="fixed"``).
    tol : float, default 1e-3
        Per observation. With ``stopping="aitken"``: Aitken's estimate of the log-likelihood
        still to gain (:func:`bayes_dgmm.em.driver.aitken_remaining`) below ``tol * N``; with
        ``"tol"``: one iteration's gain below ``tol * N``; with ``"deepgmm"``: the ``eps`` of
        deepgmm's rule. The exact EM's run ends with Newton steps
        (:mod:`bayes_dgmm.em.newton`; two per 25 of ``max_iter``, at most 120), and
        ``converged_`` is then the Newton decrement at most ``tol * N``; without them
        (``max_iter < 25``, a ``constraint``, more than 4000 free parameters, another stopping
        rule) it is Aitken's criterion at ``tol``.
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
    stopping : {"auto", "aitken", "tol", "fixed", "deepgmm", "stationary"}, default "auto"
        ``"aitken"``: the estimated remaining gain below ``tol * N``, a rule that a crawling
        EM cannot meet (its gains shrink too slowly); ``"tol"``: one iteration's gain below
        ``tol * N`` (scikit-learn's rule, met by a crawl); ``"fixed"``: run ``max_iter``
        iterations (the study's 200); ``"deepgmm"``: deepgmm's moving-average rule with
        ``eps=tol`` (met by a crawl too: 1e-3 of the log-likelihood is hundreds of nats);
        ``"stationary"``: the stochastic EM's log-likelihood has no drift beyond its noise
        over the last 50 iterations (:func:`bayes_dgmm.em.driver.stationary_drift`, checked
        every 25); ``"auto"``: ``"aitken"`` for ``"exact"``, ``"stationary"`` for
        ``"stochastic"``.
    acceleration : {"anderson", None}, default "anderson"
        Anderson acceleration of the exact EM (memory 10) with a safeguard that keeps the
        log-likelihood monotone; None: plain iterations. Off under a ``constraint``.
    parameter_expansion : bool, default True
        Parameter-expanded EM for the exact algorithm: each M-step also maximises over an
        affine working map of every component's latent scores and folds it into the
        loadings (Liu, Rubin & Wu 1998). It moves the components' latent frames, EM's slow
        directions on data like the study's, in a few iterations instead of thousands.
    random_state : None, int or numpy Generator, default None
        Seeds the restarts: each restart gets a ``SeedSequence`` spawned from it, so results
        do not depend on ``n_jobs``.
    verbose : int, default 0
        1 logs one line per restart, 2 one per iteration (loggers under
        ``bayes_dgmm.em``, level INFO).
    n_jobs : int or None, default None
        Restarts run in parallel with joblib (BLAS is pinned to one thread in each).

    Attributes
    ----------
    params_ : DGMMParams, the best restart's parameters
    converged_ : bool, the convergence criterion (``stopping``, ``tol``) holds at the end:
        the Newton decrement or Aitken's for the exact EM (``tol``), the stationarity rule
        (or deepgmm's) for the stochastic EM
    remaining_ : float, the log-likelihood (nats) the best restart would still gain: the
        Newton decrement where the run ends with Newton steps, else Aitken's estimate (exact
        EM); for ``stopping="stationary"`` the drift of the last 25 iterations' mean over the
        25 before (``nan`` for the stochastic EM's other rules)
    criterion_ : str, what ``converged_`` and ``remaining_`` measure: ``"newton"`` (the
        Newton decrement), ``"aitken"``, or the stopping rule's name
    n_iter_ : int, EM iterations and then Newton steps
    lower_bound_ : float, total log-likelihood of ``params_`` on the training data
    history_ : FitHistory, log-likelihood and BIC after every iteration of the best restart
    restarts_ : list of RestartSummary, one per restart
    n_features_in_ : int
    feature_names_in_ : (J,) object array, the column names of a DataFrame ``X`` (all
        strings) at fit; ``predict`` and the scores refuse a DataFrame whose columns differ
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_components": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "n_factors": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "algorithm": [StrOptions(set(ALGORITHMS))],
        "init": [StrOptions(set(INITS)), DGMMParams],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, math.inf, closed="left")],
        "reg_psi": [Interval(Real, 0, math.inf, closed="neither")],
        "constraint": [None, StrOptions(set(CONSTRAINTS))],
        "stopping": [StrOptions(set(STOPPING))],
        "acceleration": [None, StrOptions({a for a in ACCELERATIONS if a is not None})],
        "parameter_expansion": ["boolean"],
        "random_state": [
            None,
            Interval(Integral, 0, None, closed="left"),
            np.random.RandomState,
            np.random.Generator,
        ],
        "verbose": [Interval(Integral, 0, None, closed="left")],
        "n_jobs": [
            None,
            Interval(Integral, 1, 4096, closed="both"),
            Interval(Integral, -4096, -1, closed="both"),
        ],
    }

    def __init__(
        self,
        n_components: int | Sequence[int] = (2,),
        *,
        n_factors: int | Sequence[int] = (1,),
        algorithm: str = "exact",
        init: str | DGMMParams = "aligned",
        n_init: int = 4,
        max_iter: int = 1500,
        tol: float = 1e-3,
        reg_psi: float = 1e-10,
        constraint: str | None = None,
        stopping: str = "auto",
        acceleration: str | None = "anderson",
        parameter_expansion: bool = True,
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
        self.acceleration = acceleration
        self.parameter_expansion = parameter_expansion
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ checks
    def _check_input(self, X: Any, n_features: int | None = None, *, reset: bool = False) -> Array:
        check_feature_names(self, X, reset=reset)
        arr = check_data(X)
        if n_features is not None and arr.shape[1] != n_features:
            raise ValueError(
                f"X has {arr.shape[1]} features, but {type(self).__name__} is expecting "
                f"{n_features} features as input (as at fit time); pass data with the same "
                "columns."
            )
        return arr

    def _validate_params(self) -> None:
        # scikit-learn's hook, called by ``_fit_context`` unless validation is switched off
        check_declared(
            self._parameter_constraints, self.get_params(deep=False), "DeepGaussianMixture"
        )

    def _check_settings(self, X: Array) -> Settings:
        """The checks that involve the data or several parameters at once."""
        comps, facts = validate_architecture(self.n_components, self.n_factors, X.shape[1])
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
        if isinstance(self.init, DGMMParams) and (
            self.init.n_components != comps
            or self.init.n_factors != facts
            or self.init.n_features != X.shape[1]
        ):
            raise ValueError(
                f"init={self.init!r} does not match n_components={comps}, "
                f"n_factors={facts} and the {X.shape[1]} features of X; pass starting "
                "values of this architecture."
            )
        stopping = self.stopping
        if stopping == "auto":
            stopping = "aitken" if self.algorithm == "exact" else "stationary"
        if stopping == "aitken" and self.algorithm == "stochastic":
            raise ValueError(
                "stopping='aitken' needs a monotone EM; the stochastic EM's log-likelihood "
                "is random: use stopping='stationary', 'deepgmm' or 'fixed' with "
                "algorithm='stochastic'."
            )
        return Settings(
            n_components=comps,
            n_factors=facts,
            algorithm=self.algorithm,
            init=self.init,
            max_iter=int(self.max_iter),
            tol=float(self.tol),
            reg_psi=float(self.reg_psi),
            constraint=self.constraint,
            stopping=stopping,
            acceleration=self.acceleration,
            parameter_expansion=bool(self.parameter_expansion),
            verbose=int(self.verbose),
        )

    def _check_fitted(self) -> DGMMParams:
        if not hasattr(self, "params_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(X) first."
            )
        return self.params_

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
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

        Xa = self._check_input(X, reset=True)
        settings = self._check_settings(Xa)
        settings_n_init = int(self.n_init)
        if isinstance(settings.init, DGMMParams) and settings.algorithm == "exact":
            settings_n_init = 1  # the exact EM is deterministic: restarts from one start agree
        seeds = seed_sequences(self.random_state, settings_n_init)
        screen = (
            settings.algorithm == "exact"
            and settings_n_init > 1
            and settings.stopping != "fixed"
            and settings.max_iter > SCREEN_ITER
        )
        first_iter = SCREEN_ITER if screen else settings.max_iter
        results: list[EMResult] = Parallel(n_jobs=self.n_jobs)(
            delayed(run_restart)(Xa, seed, settings, k, first_iter) for k, seed in enumerate(seeds)
        )
        if screen:
            finals = np.array([r.log_likelihood[-1] for r in results])
            margin = max(SCREEN_MARGIN, SCREEN_MARGIN_PER_ROW * Xa.shape[0])
            close = [k for k in range(len(results)) if finals[k] >= finals.max() - margin]
            keep = distinct_modes(Xa, results, close)
            continued: list[EMResult] = Parallel(n_jobs=self.n_jobs)(
                delayed(continue_restart)(Xa, results[k], settings, k) for k in keep
            )
            for k, r in zip(keep, continued, strict=True):
                results[k] = r
        best = int(np.argmax([r.log_likelihood[-1] for r in results]))
        result = results[best]
        self.params_ = result.params
        self.n_features_in_ = Xa.shape[1]
        self.converged_ = result.converged
        self.remaining_ = float(result.remaining)
        self.criterion_ = result.criterion if settings.stopping == "aitken" else settings.stopping
        self.n_iter_ = result.n_iter
        self.lower_bound_ = float(result.log_likelihood[-1])
        ll = np.asarray(result.log_likelihood)
        k = n_free_parameters(Xa.shape[1], settings.n_components, settings.n_factors)
        self.history_ = FitHistory(log_likelihood=ll, bic=-2.0 * ll + k * np.log(Xa.shape[0]))
        self.restarts_ = [
            RestartSummary(float(r.log_likelihood[-1]), r.n_iter, r.converged, r.remaining)
            for r in results
        ]
        self._warn(result, settings, settings_n_init, Xa.shape[0])
        return self

    def _warn(self, result: EMResult, s: Settings, n_init: int, n_samples: int) -> None:
        if result.failure is not None:
            warnings.warn(
                f"EM stopped early because {result.failure}; the parameters of the previous "
                "iteration are kept. Standardise X, raise reg_psi or reduce n_factors.",
                ConvergenceWarning,
                stacklevel=3,
            )
        elif not result.converged:
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
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral):
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
        params = self._check_fitted()
        Xa = self._check_input(X, self.n_features_in_)
        ll = float(np.sum(params.score_samples(Xa)))
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
    entries = [_grid_entry(k, entry) for k, entry in enumerate(_grid_list(grid))]
    rows = []
    for comps, facts in entries:
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


def _grid_list(grid: Any) -> list[Any]:
    if isinstance(grid, (str, bytes, Mapping)) or not isinstance(grid, Iterable):
        raise TypeError(
            f"grid={grid!r} is not a list of architectures; give e.g. "
            "[((3, 2), (2, 1)), ((2, 2), (2, 1))]."
        )
    return list(grid)


def _grid_entry(k: int, entry: Any) -> tuple[Any, Any]:
    """The (n_components, n_factors) of grid entry ``k``, or a clear error."""
    if isinstance(entry, Mapping) and {"n_components", "n_factors"} <= set(entry):
        return entry["n_components"], entry["n_factors"]
    if not isinstance(entry, Mapping) and isinstance(entry, Sequence) and len(entry) == 2:
        return entry[0], entry[1]
    raise ValueError(
        f"grid[{k}]={entry!r} is not an architecture; give a pair (n_components, n_factors), "
        "e.g. ((3, 2), (2, 1)), or a mapping with those two keys."
    )
