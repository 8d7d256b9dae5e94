"""EM estimators of the deep Gaussian mixture model with the scikit-learn API.

:class:`DeepGaussianMixture` fits a DGMM (Viroli & McLachlan 2019; notation of
:mod:`bayes_dgmm.model.params`) by maximum likelihood, with two algorithms:

- ``"exact"`` (default): EM on the marginal likelihood of the global GMM (eqs. 3-6). Labels
  *and* scores are latent; given a path the scores of all layers and ``x`` are jointly
  Gaussian, so the E-step is exact and the M-step is closed form per layer and component
  (:mod:`bayes_dgmm.em.exact`). The log-likelihood never decreases.
- ``"stochastic"``: the layer-wise stochastic EM of the R package ``deepgmm`` (one draw of the
  scores per observation per iteration), from :mod:`bayes_dgmm.em.stochastic`.

Model selection by BIC over a grid of architectures: :func:`select_architecture`. The count
of free parameters behind BIC, the fit's history and its warnings are in
:mod:`bayes_dgmm.em.results` (re-exported here).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from bayes_dgmm._validation import (
    RandomLike,
    check_data,
    check_declared,
)
from bayes_dgmm.em import ALGORITHMS
from bayes_dgmm.em.exact import CONSTRAINTS
from bayes_dgmm.em.fitted import FittedDGMMMixin
from bayes_dgmm.em.restarts import check_settings, run_restarts, seed_sequences
from bayes_dgmm.em.results import (
    FitHistory,
    RestartSummary,
    n_free_parameters,
    warn_about_fit,
)
from bayes_dgmm.em.starts import INITIALISERS
from bayes_dgmm.model.params import DGMMParams

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


class DeepGaussianMixture(FittedDGMMMixin, DensityMixin, BaseEstimator):
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

    def _validate_params(self) -> None:
        # scikit-learn's hook, called by ``_fit_context`` unless validation is switched off
        check_declared(
            self._parameter_constraints, self.get_params(deep=False), "DeepGaussianMixture"
        )

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
        settings = check_settings(Xa, self.get_params(deep=False))
        n_init = int(self.n_init)
        if isinstance(settings.init, DGMMParams) and settings.algorithm == "exact":
            n_init = 1  # the exact EM is deterministic: restarts from one start agree
        seeds = seed_sequences(self.random_state, n_init)
        results = run_restarts(Xa, settings, seeds, self.n_jobs)
        result = results[int(np.argmax([r.log_likelihood[-1] for r in results]))]
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
        warn_about_fit(result, settings, n_init, Xa.shape[0])
        return self

    def fit_predict(self, X: ArrayLike, y: Any = None) -> NDArray[np.intp]:
        """Fit, then label ``X`` by its most probable path: the same as ``fit(X).predict(X)``."""
        return self.fit(X).predict(X)


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
