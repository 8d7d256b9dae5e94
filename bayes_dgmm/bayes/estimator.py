"""The Bayesian DGMM estimator: PyMC inference on the marginal model of :mod:`.model`.

``BayesianDeepGaussianMixture(...).fit(X, method=...)`` builds the model once
(:func:`bayes_dgmm.bayes.model.build_model`), hands it to a backend
(:mod:`bayes_dgmm.bayes.backends`) and stores an ``xarray.DataTree`` in ``idata_`` with the
groups

``posterior``
    MCMC draws, draws from the variational approximation, or the MAP as a single draw.
``sample_stats``
    The sampler's statistics (when it has any) plus ``log_likelihood_total`` per draw.
``log_likelihood``
    Pointwise log-likelihood ``x`` (chain, draw, obs), for ArviZ LOO/WAIC.
``labels``
    Posterior path probabilities ``path_proba`` (obs, path) and per-layer component
    probabilities ``component_proba_l`` (obs, component_l), averaged over (thinned) draws.
``observed_data`` / ``constant_data``
    The data (when PyMC writes them).
``loss``
    For ADVI: the negative ELBO per iteration.

Saving and loading are in :mod:`bayes_dgmm.bayes.io`.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Mapping
from numbers import Integral
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pymc as pm
import xarray as xr
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval, StrOptions
from threadpoolctl import threadpool_limits

from bayes_dgmm._validation import (
    check_data,
    check_declared,
    check_feature_names,
    check_method_kwargs,
    check_not_constant,
    feature_names,
)
from bayes_dgmm.bayes import METHODS
from bayes_dgmm.bayes.backends.nutpie import compile_nutpie_model, sample_nutpie
from bayes_dgmm.bayes.backends.pymc import jittered_start, run_pymc
from bayes_dgmm.bayes.backends.timing import compile_timer
from bayes_dgmm.bayes.backends.vi import laplace_sd
from bayes_dgmm.bayes.io import read_fit, write_fit
from bayes_dgmm.bayes.model import CONSTRAINTS, build_model, resolve_priors
from bayes_dgmm.bayes.postprocess import (
    MAX_PREDICT_DRAWS,
    finish_tree,
    fit_convergence,
    labels_dataset,
    posterior_params,
)
from bayes_dgmm.bayes.starts import start_point
from bayes_dgmm.model.gauge import GAUGES
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.paths import aggregate_paths
from bayes_dgmm.model.spec import DGMMSpec, load_spec, validate_architecture

logger = logging.getLogger(__name__)

Array = NDArray[np.float64]

__all__ = ["MAX_PREDICT_DRAWS", "METHODS", "BayesianDeepGaussianMixture", "check_method"]


def check_method(method: str) -> str:
    """Return ``method`` if it is one of :data:`METHODS`, else raise ValueError."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; choose one of {list(METHODS)}.")
    return method


class BayesianDeepGaussianMixture:
    """Bayesian deep Gaussian mixture model fitted with PyMC (labels and scores marginalised).

    Parameters
    ----------
    n_components : sequence of int
        Components per layer ``(G_1, ..., G_L)``, layer 1 next to the data.
    n_factors : sequence of int
        Latent dimensions ``(R_1, ..., R_L)``, strictly decreasing.
    random_seed : int, optional
        Seed for every random step (start jitter, sampling, EM initialisation).
    priors : mapping, optional
        Prior overrides (keys in :mod:`bayes_dgmm.bayes.model`).
    constraint : {None, "ordered", "lower_triangular"}
        Identifiability constraint (see :mod:`bayes_dgmm.bayes.model`).
    gauge : {"standardised", "noise"}
        How the latent layers' location and scale are fixed (:mod:`bayes_dgmm.model.gauge`;
        ``"lower_triangular"`` needs ``"noise"`` when there are latent layers).
    progressbar : bool
        Show PyMC's progress bars during fits.

    Attributes
    ----------
    idata_ : xarray.DataTree
        The fit (groups in the module docstring).
    params_ : DGMMParams
        Point estimate: the draw of highest total log-likelihood (the MAP for ``"map"``); a
        mean of draws is no DGMM when they differ by a rotation or a relabelling.
    model_ : pymc.Model
        The model, built at the first fit and reused while the data keep their shape.
    method_ : str
    spec_ : DGMMSpec
    converged_ : bool, whether the fit met its method's own convergence criterion
    convergence_ : dict, that criterion and its figures
        (:func:`bayes_dgmm.bayes.postprocess.fit_convergence`; samplers: r_hat and bulk ESS
        of identified quantities, divergences)
    compile_seconds_, run_seconds_ : float
        The last fit's wall time spent compiling PyTensor functions
        (:func:`~bayes_dgmm.bayes.backends.timing.compile_timer`), and the rest of it; also
        in ``idata_["posterior"].attrs``.
    """

    # validated at fit, as scikit-learn's estimators do (see DeepGaussianMixture)
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "random_seed": [None, Interval(Integral, 0, 2**32 - 1, closed="both")],
        "constraint": [None, StrOptions({c for c in CONSTRAINTS if c is not None})],
        "gauge": [StrOptions(set(GAUGES))],
        "progressbar": ["boolean"],
    }

    model_: Any
    idata_: Any
    params_: DGMMParams
    spec_: DGMMSpec
    method_: str
    n_features_in_: int
    feature_names_in_: NDArray[np.object_]  # a DataFrame's column names at fit, when strings

    def __init__(
        self,
        n_components: tuple[int, ...] | list[int] = (2,),
        n_factors: tuple[int, ...] | list[int] = (1,),
        *,
        random_seed: int | None = None,
        priors: Mapping[str, Any] | None = None,
        constraint: str | None = None,
        gauge: str = "standardised",
        progressbar: bool = True,
    ) -> None:
        self.n_components = n_components
        self.n_factors = n_factors
        self.random_seed = random_seed
        self.priors = priors
        self.constraint = constraint
        self.gauge = gauge
        self.progressbar = progressbar
        self._spec: DGMMSpec | None = None
        self._model_key: tuple[Any, ...] | None = None
        self._nutpie_compiled: tuple[Any, Any] | None = None
        self._draw_params: list[DGMMParams] | None = None

    @classmethod
    def from_spec(cls, spec: DGMMSpec | str, **kwargs: Any) -> BayesianDeepGaussianMixture:
        """An estimator for a spec (or a shipped spec's name); its ``[priors]`` apply."""
        if isinstance(spec, str):
            spec = load_spec(spec)
        est = cls(n_components=spec.n_components, n_factors=spec.n_factors, **kwargs)
        est._spec = spec
        return est

    def _get_model(self, X: Array, spec: DGMMSpec) -> Any:
        self.model_, self._model_key = _model_for(
            X,
            spec,
            (self.priors, self.constraint, self.gauge),
            getattr(self, "model_", None),
            self._model_key,
        )
        return self.model_

    # ------------------------------------------------------------------ fit
    def fit(
        self, X: ArrayLike, method: str = "nuts", init: Any = None, **method_kwargs: Any
    ) -> BayesianDeepGaussianMixture:
        """Fit the model to ``X`` (N, J).

        Parameters
        ----------
        method : one of :data:`~bayes_dgmm.bayes.METHODS`
            ``map``: the posterior mode on the unconstrained scale by BFGS (one draw; at most
            ``maxiter``, 1000, iterations); ``laplace``: a Gaussian at that mode, Newton-refined,
            ``draws`` (1000) draws; ``pathfinder``: the best Gaussian along an L-BFGS
            path (at most ``maxiter``, 1000, iterations), ``draws`` (1000) draws;
            ``advi``/``fullrank_advi``: ADVI from the diagonal Laplace scale until the ELBO
            stops improving (at most ``n``, 20000, iterations), ``draws`` (1000) draws of q;
            ``nuts``: ``pm.sample``; ``nutpie``: nutpie's NUTS on the JAX density;
            ``smc``: ``pm.sample_smc`` (from the prior; ``init`` ignored). Each route and
            its convergence criterion: ``docs/bayesian-model.md``.
        init : None, "em", DGMMParams or an object with ``params_``
            Start. ``None``: PyMC's default start with U(-1, 1) jitter on the unconstrained
            scale (the unjittered default has all components equal, a saddle). ``"em"``: fit
            :class:`~bayes_dgmm.em.DeepGaussianMixture` first (``n_init``/``max_iter`` from
            the spec's ``[fit]`` table).
        **method_kwargs
            Passed to the PyMC function (e.g. ``draws``, ``tune``, ``chains`` for NUTS).
            ``batch_size`` (ADVI only): minibatch ADVI, the likelihood of ``batch_size``
            random rows per iteration scaled to N (``pm.Minibatch``), for large N.
        """
        Xa = self._check_fit_inputs(X, method, method_kwargs)
        check_feature_names(self, None, reset=True)  # set after the fit's own predictions
        names = feature_names(X)
        spec = _architecture_spec(self.n_components, self.n_factors, Xa.shape[1], self._spec)
        spec.check_n_features(Xa.shape[1])
        model = self._get_model(Xa, spec)
        start = start_point(init, Xa, spec, model, self.constraint, self.random_seed)
        if method == "smc" and start is not None:
            warnings.warn(
                "method='smc' starts from prior draws; init is ignored.", UserWarning, stacklevel=2
            )
            start = None
        kw = dict(method_kwargs)
        run_model = model
        if "batch_size" in kw:
            # minibatch ADVI: q's starting scale from the full data's density, the fit on a
            # model whose likelihood is that of random batches scaled to N
            batch = int(kw.pop("batch_size"))
            if start is None:
                start = jittered_start(model, self.random_seed)
            kw["sd"] = _minibatch_start_sd(Xa, spec, self, start)
            run_model = build_model(
                Xa,
                spec,
                priors=self.priors,
                constraint=self.constraint,
                batch_size=batch,
                gauge=self.gauge,
            )
        t0 = time.perf_counter()
        logger.info("fitting %s with method=%r", spec.name, method)
        with threadpool_limits(1), compile_timer() as compiling:
            idata = self._run(method, run_model, start, kw)
            if run_model is not model:  # a minibatch model's observed data are one batch
                idata["observed_data"] = xr.Dataset({"x": (("obs", "feature"), Xa)})
            self._finish(idata, model, Xa, spec, method)
        if names is not None:
            self.feature_names_in_ = names
        seconds = time.perf_counter() - t0
        self.compile_seconds_ = compiling.seconds
        self.run_seconds_ = seconds - compiling.seconds
        self.idata_["posterior"].attrs.update(
            compile_seconds=self.compile_seconds_, run_seconds=self.run_seconds_
        )
        logger.info("method=%r took %.1f s (%.1f s compiling)", method, seconds, compiling.seconds)
        return self

    def _check_fit_inputs(self, X: ArrayLike, method: str, method_kwargs: dict) -> Array:
        """The checks of :meth:`fit` that come before any work; returns X as an array."""
        check_method(method)
        check_method_kwargs(method, method_kwargs)
        check_declared(
            self._parameter_constraints,
            {name: getattr(self, name) for name in self._parameter_constraints},
            type(self).__name__,
        )
        Xa = check_data(X, min_samples=2)
        check_not_constant(Xa)
        batch = method_kwargs.get("batch_size")
        if batch is not None and int(batch) >= Xa.shape[0]:
            raise ValueError(
                f"batch_size={batch} is not below the {Xa.shape[0]} rows of X; drop "
                "batch_size to fit all the rows, or give a smaller batch."
            )
        return Xa

    def _run(self, method: str, model: Any, start: Any, kw: dict[str, Any]) -> Any:
        seed, bar = self.random_seed, self.progressbar
        if method != "nutpie":
            return run_pymc(method, model, start, kw, random_seed=seed, progressbar=bar)
        # nutpie: the compiled model is kept with the PyMC model and reused
        if self._nutpie_compiled is None or self._nutpie_compiled[0] is not model:
            t0 = time.perf_counter()
            self._nutpie_compiled = (model, compile_nutpie_model(model))
            logger.info("nutpie: compiled the JAX model in %.1f s", time.perf_counter() - t0)
        compiled = self._nutpie_compiled[1]
        return sample_nutpie(compiled, model, start, kw, random_seed=seed, progressbar=bar)

    def _finish(self, idata: Any, model: Any, X: Array, spec: DGMMSpec, method: str) -> None:
        self.idata_ = finish_tree(idata, X, spec)
        self.spec_ = spec
        self.method_ = method
        self.n_features_in_ = X.shape[1]
        self._set_params()
        idata["labels"] = labels_dataset(self.predict_proba(X), spec.n_components)

    def sample_prior_predictive(self, X: ArrayLike, draws: int = 200) -> Any:
        """Draws of the parameters from the prior (``prior``) and of data sets of ``X``'s
        size from them (``prior_predictive``, variable ``x``), as a DataTree; the priors
        are those the fit of ``X`` uses (they scale with the data). On a fitted estimator
        the two groups are also added to ``idata_`` (and saved with it). Check the spread
        with :func:`bayes_dgmm.diagnostics.prior_predictive_spread`.
        """
        check_declared(
            {"draws": [Interval(Integral, 1, None, closed="left")]},
            {"draws": draws},
            "BayesianDeepGaussianMixture.sample_prior_predictive",
        )
        Xa = check_data(X, min_samples=2)
        spec = _architecture_spec(self.n_components, self.n_factors, Xa.shape[1], self._spec)
        spec.check_n_features(Xa.shape[1])
        model = self._get_model(Xa, spec)
        with threadpool_limits(1):
            tree = pm.sample_prior_predictive(
                draws=int(draws), model=model, random_seed=self.random_seed
            )
        if hasattr(self, "idata_"):
            for group in ("prior", "prior_predictive"):
                self.idata_[group] = tree[group]
        return tree

    # ------------------------------------------------------------------ results
    def _set_params(self) -> None:
        posterior = self.idata_["posterior"].to_dataset()
        self._draw_params, self.params_ = posterior_params(
            posterior,
            self.spec_.n_layers,
            self.idata_["sample_stats"]["log_likelihood_total"],
        )
        self.convergence_ = fit_convergence(self.idata_, self.method_)
        self.converged_ = bool(self.convergence_["converged"])

    def _check_fitted(self) -> None:
        if not hasattr(self, "idata_"):
            raise NotFittedError(
                "This BayesianDeepGaussianMixture is not fitted yet; call fit(X) or load(path)."
            )

    def _fitted_draws(self) -> list[DGMMParams]:
        if self._draw_params is None:  # set with idata_ by fit and load
            raise RuntimeError("the fitted draws are missing; refit or load the estimator.")
        return self._draw_params

    def predict_proba(self, X: ArrayLike, layer: int | None = None) -> Array:
        """Posterior probabilities of the paths (or of layer ``layer``'s components).

        The path posteriors of :meth:`DGMMParams.predict_proba` averaged over at most
        :data:`MAX_PREDICT_DRAWS` evenly thinned posterior draws.

        Returns
        -------
        (N, n_paths) array, or (N, G_layer) for ``layer`` in 1..L.
        """
        self._check_fitted()
        check_feature_names(self, X, reset=False)
        Xa = check_data(X, n_features=self.n_features_in_)
        draws = self._fitted_draws()
        with threadpool_limits(1):
            total = sum(p.predict_proba(Xa) for p in draws)
        proba = np.asarray(total) / len(draws)
        if layer is None:
            return proba
        return aggregate_paths(proba, self.spec_.n_components, layer)

    def predict(self, X: ArrayLike, layer: int | None = None) -> NDArray[np.intp]:
        """Most probable path (or component of layer ``layer``) under :meth:`predict_proba`."""
        return np.argmax(self.predict_proba(X, layer=layer), axis=1).astype(np.intp)

    def score_samples(self, X: ArrayLike) -> Array:
        """Log predictive density of each row: ``log mean_draws f(x | theta_draw)``, (N,)."""
        self._check_fitted()
        check_feature_names(self, X, reset=False)
        Xa = check_data(X, n_features=self.n_features_in_)
        draws = self._fitted_draws()
        with threadpool_limits(1):
            logp = np.stack([p.score_samples(Xa) for p in draws])
        return np.asarray(logsumexp(logp, axis=0) - math.log(logp.shape[0]))

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean log predictive density per observation."""
        return float(np.mean(self.score_samples(X)))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``idata_`` and the settings to a netCDF file (atomically; no pickle)."""
        self._check_fitted()
        return write_fit(
            path,
            self.idata_,
            spec=self.spec_,
            method=self.method_,
            n_features_in=self.n_features_in_,
            random_seed=self.random_seed,
            priors=self.priors,
            constraint=self.constraint,
            gauge=self.gauge,
        )

    @classmethod
    def load(
        cls, path: str | Path, spec: DGMMSpec | str | None = None
    ) -> BayesianDeepGaussianMixture:
        """Read a fit written by :meth:`save`; ``spec`` (a DGMMSpec or a shipped spec's name),
        when given, must be the one it was fitted with (see :func:`~.io.read_fit`)."""
        saved = read_fit(path, spec)
        est = cls.from_spec(
            saved.spec,
            random_seed=saved.random_seed,
            priors=saved.priors,
            constraint=saved.constraint,
            gauge=saved.gauge,
        )
        est.idata_ = saved.tree
        est.spec_ = saved.spec
        est.method_ = saved.method
        est.n_features_in_ = saved.n_features_in
        est._set_params()
        return est


#: Rows of the subsample whose diagonal Laplace sds start minibatch ADVI.
SD_ROWS = 4000


def _minibatch_start_sd(X: Array, spec: DGMMSpec, est: Any, start: Any) -> Array:
    """q's starting sds for minibatch ADVI: the diagonal Laplace sds of the model on at most
    :data:`SD_ROWS` rows (every row when N is smaller), shrunk by ``sqrt(n / N)`` as the
    likelihood's curvature grows with N; a start, not a result, so the subsample's
    approximation is enough, and its cost does not grow with N."""
    n = min(X.shape[0], SD_ROWS)
    rows = np.random.default_rng(est.random_seed).choice(X.shape[0], size=n, replace=False)
    sub = X if n == X.shape[0] else X[np.sort(rows)]
    model = build_model(sub, spec, priors=est.priors, constraint=est.constraint, gauge=est.gauge)
    with threadpool_limits(1):
        return laplace_sd(model, start) * math.sqrt(n / X.shape[0])


def _model_for(
    X: Array,
    spec: DGMMSpec,
    settings: tuple[Mapping[str, Any] | None, str | None, str],
    model: Any,
    model_key: tuple[Any, ...] | None,
) -> tuple[Any, tuple[Any, ...]]:
    """The model for ``X`` and its cache key: ``model`` itself when the architecture and the
    ``(priors, constraint, gauge)`` settings are those of ``model_key`` (then only the data
    are swapped, keeping
    PyMC's compiled functions), else a new one."""
    priors, constraint, gauge = settings
    key = (
        spec.to_toml(),
        json.dumps(resolve_priors(spec.priors, priors, gauge), sort_keys=True),
        constraint,
        gauge,
        X.shape[1],
    )
    if model is not None and model_key == key:
        old = model["X"].get_value()
        if X.shape[0] != old.shape[0] or not np.array_equal(X, old):
            logger.info("reusing the model with new data (N=%d)", X.shape[0])
            pm.set_data({"X": X}, model=model, coords={"obs": np.arange(X.shape[0])})
        return model, key
    # The priors scale with the data, so a new data set also gets a new model.
    return build_model(X, spec, priors=priors, constraint=constraint, gauge=gauge), key


def _architecture_spec(
    n_components: Any, n_factors: Any, n_features: int, spec: DGMMSpec | None
) -> DGMMSpec:
    """The estimator's spec: ``spec`` if it was built from one (same architecture), else new."""
    comps, facts = validate_architecture(n_components, n_factors, n_features)
    if spec is None:
        return DGMMSpec(n_components=comps, n_factors=facts, name="custom")
    if (comps, facts) != (spec.n_components, spec.n_factors):
        raise ValueError(
            f"n_components={comps}, n_factors={facts} differ from spec "
            f"{spec.name!r} ({spec.n_components}, {spec.n_factors}); "
            "change the spec or build the estimator without one."
        )
    return spec
