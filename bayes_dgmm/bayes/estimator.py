"""The Bayesian DGMM estimator: PyMC inference on the marginal model of :mod:`pymc_model`.

``BayesianDeepGaussianMixture(...).fit(X, method=...)`` builds the model once
(:func:`bayes_dgmm.bayes.model.build_model`), runs one of :data:`METHODS` and stores an
``xarray.DataTree`` in ``idata_`` with the groups

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

Saved files (:meth:`save`) are netCDF, written atomically; the root attributes hold the spec
(TOML text), the constraint, the priors and the package version, and :meth:`load` refuses a
file written by another package version or for another spec than the one asked for.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits

from bayes_dgmm._io import atomic_write
from bayes_dgmm._validation import RandomLike, check_data, check_not_constant
from bayes_dgmm.bayes.backends.nutpie import n_free_variables
from bayes_dgmm.model.params import DGMMParams, aggregate_paths
from bayes_dgmm.model.spec import DGMMSpec, validate_architecture

logger = logging.getLogger(__name__)

Array = NDArray[np.float64]

METHODS = ("map", "advi", "fullrank_advi", "nuts", "nutpie", "smc")

SAVE_FORMAT = "bayes-dgmm-bayesian/1"

#: At most this many posterior draws (evenly thinned) enter the label probabilities and
#: predictions; each draw costs one pass of ``DGMMParams.log_prob_paths`` over the data.
MAX_PREDICT_DRAWS = 200

_PARAM_NAMES = ("pi", "eta", "Lambda", "psi")

_SAVED_ATTRS = (
    "bayes_dgmm_format",
    "bayes_dgmm_version",
    "spec_name",
    "spec_toml",
    "constraint",
    "priors",
    "method",
    "random_seed",
    "n_features_in",
    "posterior_sha256",
)


def _version() -> str:
    from bayes_dgmm import __version__

    return __version__


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
    progressbar : bool
        Show PyMC's progress bars during fits.

    Attributes
    ----------
    idata_ : xarray.DataTree
        The fit (groups in the module docstring).
    params_ : DGMMParams
        Point estimate: the MAP for ``method="map"``, otherwise the posterior mean of each
        parameter over all chains and draws. Under label switching (``constraint=None`` with
        chains in different labellings) the mean mixes components; use a constraint or
        :meth:`predict_proba`, which averages per-draw classifications.
    model_ : pymc.Model
        The model, built at the first fit and reused while the data keep their shape.
    method_ : str
    spec_ : DGMMSpec
    """

    model_: Any
    idata_: Any
    params_: DGMMParams
    spec_: DGMMSpec
    method_: str
    n_features_in_: int

    def __init__(
        self,
        n_components: tuple[int, ...] | list[int] = (2,),
        n_factors: tuple[int, ...] | list[int] = (1,),
        *,
        random_seed: int | None = None,
        priors: Mapping[str, Any] | None = None,
        constraint: str | None = None,
        progressbar: bool = True,
    ) -> None:
        self.n_components = n_components
        self.n_factors = n_factors
        self.random_seed = random_seed
        self.priors = priors
        self.constraint = constraint
        self.progressbar = progressbar
        self._spec: DGMMSpec | None = None
        self._model_key: tuple[Any, ...] | None = None
        self._nutpie_compiled: tuple[Any, Any] | None = None
        self._draw_params: list[DGMMParams] | None = None

    @classmethod
    def from_spec(cls, spec: DGMMSpec | str, **kwargs: Any) -> BayesianDeepGaussianMixture:
        """An estimator for a spec (or a shipped spec's name); its ``[priors]`` apply."""
        if isinstance(spec, str):
            from bayes_dgmm.model.spec import load_spec

            spec = load_spec(spec)
        est = cls(n_components=spec.n_components, n_factors=spec.n_factors, **kwargs)
        est._spec = spec
        return est

    # ------------------------------------------------------------------ helpers
    def _make_spec(self, n_features: int | None) -> DGMMSpec:
        comps, facts = validate_architecture(self.n_components, self.n_factors, n_features)
        if self._spec is not None:
            if (comps, facts) != (self._spec.n_components, self._spec.n_factors):
                raise ValueError(
                    f"n_components={comps}, n_factors={facts} differ from spec "
                    f"{self._spec.name!r} ({self._spec.n_components}, {self._spec.n_factors}); "
                    "change the spec or build the estimator without one."
                )
            return self._spec
        return DGMMSpec(n_components=comps, n_factors=facts, name="custom")

    def _get_model(self, X: Array, spec: DGMMSpec) -> Any:
        import pymc as pm

        from bayes_dgmm.bayes.model import build_model, resolve_priors

        key = (
            spec.to_toml(),
            json.dumps(resolve_priors(spec.priors, self.priors), sort_keys=True),
            self.constraint,
            X.shape[1],
        )
        if self._model_key == key:
            # Same architecture and priors: reuse the model (and PyMC's compiled functions);
            # only the data change.
            if X.shape[0] != self.model_["X"].get_value().shape[0] or not np.array_equal(
                X, self.model_["X"].get_value()
            ):
                logger.info("reusing the model with new data (N=%d)", X.shape[0])
                pm.set_data({"X": X}, model=self.model_, coords={"obs": np.arange(X.shape[0])})
            return self.model_
        # The priors scale with the data, so a new data set also gets a new model.
        self.model_ = build_model(X, spec, priors=self.priors, constraint=self.constraint)
        self._model_key = key
        return self.model_

    def _start(self, init: Any, X: Array, spec: DGMMSpec, model: Any) -> dict[str, Array] | None:
        from bayes_dgmm.bayes.model import params_to_point

        if init is None:
            return None
        if isinstance(init, str):
            if init != "em":
                raise ValueError(
                    f"init={init!r} is not supported; give None, 'em', a DGMMParams or a "
                    "fitted estimator with a params_ attribute."
                )
            try:
                from bayes_dgmm.em.estimator import DeepGaussianMixture
            except ImportError as exc:  # pragma: no cover - em.py is written concurrently
                raise ImportError(f"init='em' needs bayes_dgmm.em.estimator ({exc}).") from None
            logger.info("init='em': fitting DeepGaussianMixture for the start")
            em = DeepGaussianMixture(
                spec.n_components,
                n_factors=spec.n_factors,
                n_init=int(spec.fit.get("n_init", 1)),
                max_iter=int(spec.fit.get("max_iter", 200)),
                random_state=self.random_seed,
            ).fit(X)
            params = em.params_
        elif isinstance(init, DGMMParams):
            params = init
        elif hasattr(init, "params_"):
            params = init.params_
        else:
            raise TypeError(
                f"init={init!r} is not a start; give None, 'em', a DGMMParams or a fitted "
                "estimator with a params_ attribute."
            )
        if params.n_components != spec.n_components or params.n_factors != spec.n_factors:
            raise ValueError(
                f"init has n_components={params.n_components}, n_factors={params.n_factors} "
                f"but the model has {spec.n_components}, {spec.n_factors}; use a start of the "
                "same architecture."
            )
        return params_to_point(params, model, self.constraint)

    # ------------------------------------------------------------------ fit
    def fit(
        self, X: ArrayLike, method: str = "nuts", init: Any = None, **method_kwargs: Any
    ) -> BayesianDeepGaussianMixture:
        """Fit the model to ``X`` (N, J).

        Parameters
        ----------
        method : {"map", "advi", "fullrank_advi", "nuts", "nutpie", "smc"}
            ``map``: ``pm.find_MAP`` (the posterior holds one draw). ``advi`` /
            ``fullrank_advi``: ``pm.fit`` (keyword ``n``, default 20000 iterations), then
            ``draws`` (default 1000) draws of the approximation. ``nuts``: ``pm.sample``.
            ``nutpie``: nutpie's Rust NUTS (a core dependency) on the log density compiled
            by PyTensor's C backend (:mod:`bayes_dgmm.bayes.backends.nutpie`; nutpie's own
            route through Numba compiled the study model in ~220 s and ran ~10x slower).
            ``smc``: ``pm.sample_smc`` (starts from prior draws; ``init`` is ignored).
        init : None, "em", DGMMParams or an object with ``params_``
            Start. ``None``: PyMC's default start with U(-1, 1) jitter on the unconstrained
            scale (the unjittered default has all components equal, a saddle). ``"em"``: fit
            :class:`~bayes_dgmm.em.DeepGaussianMixture` first (``n_init``/``max_iter`` from
            the spec's ``[fit]`` table).
        **method_kwargs
            Passed to the PyMC function (e.g. ``draws``, ``tune``, ``chains`` for NUTS).
        """
        check_method(method)
        from bayes_dgmm.bayes.model import check_constraint

        check_constraint(self.constraint)
        Xa = check_data(X, min_samples=2)
        check_not_constant(Xa)
        spec = self._make_spec(Xa.shape[1])
        spec.check_n_features(Xa.shape[1])
        model = self._get_model(Xa, spec)
        start = self._start(init, Xa, spec, model)
        if method == "smc" and start is not None:
            warnings.warn(
                "method='smc' starts from prior draws; init is ignored.", UserWarning, stacklevel=2
            )
            start = None
        t0 = time.perf_counter()
        logger.info("fitting %s with method=%r", spec.name, method)
        with threadpool_limits(1):
            idata = self._run(method, model, start, dict(method_kwargs))
        logger.info("method=%r took %.1f s", method, time.perf_counter() - t0)
        self._finish(idata, model, Xa, spec, method)
        return self

    def _run(self, method: str, model: Any, start: Any, kw: dict[str, Any]) -> Any:
        import pymc as pm

        from bayes_dgmm.bayes.model import compile_mode

        seed = self.random_seed
        bar = self.progressbar
        if method != "nutpie" and "backend" not in kw:
            # PyTensor's default (Numba) compiles the study model ~20x slower than C.
            kw.setdefault("compile_kwargs", {"mode": compile_mode()})
        if method == "map":
            kw.setdefault("jitter", start is None)
            return pm.find_MAP(
                initvals=start,
                model=model,
                random_seed=seed,
                progressbar=bar,
                return_inferencedata=True,
                **kw,
            )
        if method in ("advi", "fullrank_advi"):
            n = int(kw.pop("n", 20000))
            draws = int(kw.pop("draws", 1000))
            if start is None:
                start = _jittered_start(model, seed)
            approx = pm.fit(
                n=n,
                method=method,
                model=model,
                random_seed=seed,
                start=start,
                progressbar=bar,
                **kw,
            )
            idata = approx.sample(draws=draws, random_seed=seed, return_inferencedata=True)
            idata["loss"] = xr.Dataset({"loss": ("iteration", np.asarray(approx.hist))})
            return idata
        if method == "nutpie":
            return self._run_nutpie(model, start, kw)
        if method == "nuts":
            return pm.sample(model=model, initvals=start, random_seed=seed, progressbar=bar, **kw)
        # smc
        n_free = n_free_variables(model)
        draws = int(kw.get("draws", 2000))
        if draws <= n_free:
            raise ValueError(
                f"method='smc' with draws={draws} particles, but the model has {n_free} free "
                "parameters: PyMC's SMC kernels fit a proposal covariance to the particles, "
                f"which is singular with fewer particles than parameters; use draws > {n_free} "
                "(e.g. 2x) or a smaller architecture."
            )
        return pm.sample_smc(model=model, random_seed=seed, progressbar=bar, **kw)

    def _run_nutpie(self, model: Any, start: Any, kw: dict[str, Any]) -> Any:
        """nutpie's NUTS on the C-backend log density (:mod:`bayes_dgmm.bayes.backends.nutpie`).

        Keywords as for ``nuts``: ``draws`` (1000), ``tune`` (1000), ``chains`` (4),
        ``cores``, ``nuts`` (``max_treedepth``, ``target_accept``); any other keyword goes to
        ``nutpie.sample``. The compiled model is kept with the PyMC model and reused.
        """
        import dataclasses

        import nutpie

        from bayes_dgmm.bayes.backends.nutpie import compile_nutpie_model, initial_point_function

        kw.pop("compile_kwargs", None)
        if self._nutpie_compiled is None or self._nutpie_compiled[0] is not model:
            t0 = time.perf_counter()
            self._nutpie_compiled = (model, compile_nutpie_model(model))
            logger.info("nutpie: compiled the C-backend model in %.1f s", time.perf_counter() - t0)
        compiled = dataclasses.replace(
            self._nutpie_compiled[1], _make_initial_points=initial_point_function(model, start)
        )
        # Data may have been swapped since the compile (pm.set_data): the compiled function
        # reads the model's shared X, so nothing is stale.
        nuts = dict(kw.pop("nuts", {}) or {})
        settings: dict[str, Any] = {}
        if "max_treedepth" in nuts:
            settings["maxdepth"] = int(nuts.pop("max_treedepth"))
        if "target_accept" in nuts:
            settings["target_accept"] = float(nuts.pop("target_accept"))
        if nuts:
            raise ValueError(
                f"nuts={nuts!r}: method='nutpie' understands max_treedepth and target_accept."
            )
        seed = self.random_seed
        seed_int = int(np.random.default_rng(seed).integers(2**31)) if seed is not None else None
        t0 = time.perf_counter()
        idata = nutpie.sample(
            compiled,
            draws=int(kw.pop("draws", 1000)),
            tune=int(kw.pop("tune", 1000)),
            chains=int(kw.pop("chains", 4)),
            cores=int(kw.pop("cores", 1)),
            seed=seed_int,
            save_warmup=False,
            progress_bar=self.progressbar,
            **settings,
            **kw,
        )
        stats = idata["sample_stats"].to_dataset()
        if "depth" in stats and "tree_depth" not in stats:
            # PyMC's names, so the two NUTS implementations read the same downstream
            stats = stats.rename({"depth": "tree_depth"})
        idata["sample_stats"] = stats
        idata["posterior"].attrs["sampling_time"] = time.perf_counter() - t0
        return idata

    def _finish(self, idata: Any, model: Any, X: Array, spec: DGMMSpec, method: str) -> None:
        for group in ("fit", "optimizer_result"):
            # find_MAP's extra groups hold objects netCDF cannot store; the MAP is the posterior.
            if group in idata.children:
                del idata[group]
        idata["log_likelihood"] = _log_likelihood(idata["posterior"].to_dataset(), X, spec)
        loglik = idata["log_likelihood"]["x"]
        total = loglik.sum("obs")
        if "sample_stats" in idata.children:
            stats = idata["sample_stats"].to_dataset()
            stats["log_likelihood_total"] = total
            idata["sample_stats"] = stats
        else:
            idata["sample_stats"] = xr.Dataset({"log_likelihood_total": total})
        self.idata_ = idata
        self.spec_ = spec
        self.method_ = method
        self.n_features_in_ = X.shape[1]
        self._set_params()
        idata["labels"] = self._labels_dataset(X)

    # ------------------------------------------------------------------ results
    def _set_params(self) -> None:
        from bayes_dgmm.bayes.model import point_to_params

        post = self.idata_["posterior"].to_dataset()
        names = [
            f"{p}_{l}" for l in range(1, len(self.spec_.n_components) + 1) for p in _PARAM_NAMES
        ]
        post = post[names]
        n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
        total = n_chain * n_draw
        flat = post.stack(sample=("chain", "draw")).transpose("sample", ...)
        keep = np.unique(
            np.linspace(0, total - 1, min(total, MAX_PREDICT_DRAWS)).round().astype(int)
        )
        self._draw_params = [point_to_params({k: flat[k].values[i] for k in names}) for i in keep]
        # numpy on C-ordered copies: the same mean whatever the arrays' memory layout (a
        # loaded file must give bit-identical parameters).
        self.params_ = point_to_params(
            {
                k: np.ascontiguousarray(post[k].values).reshape(total, *post[k].shape[2:]).mean(0)
                for k in names
            }
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "idata_"):
            raise RuntimeError(
                "This BayesianDeepGaussianMixture is not fitted yet; call fit(X) or load(path)."
            )

    def _labels_dataset(self, X: Array) -> xr.Dataset:
        proba = self.predict_proba(X)
        data: dict[str, Any] = {"path_proba": (("obs", "path"), proba)}
        for l in range(1, len(self.spec_.n_components) + 1):
            data[f"component_proba_{l}"] = (
                ("obs", f"component_{l}"),
                aggregate_paths(proba, self.spec_.n_components, l),
            )
        return xr.Dataset(
            data,
            coords={"obs": np.arange(X.shape[0]), "path": np.arange(self.spec_.n_paths)},
        )

    def predict_proba(self, X: ArrayLike, layer: int | None = None) -> Array:
        """Posterior probabilities of the paths (or of layer ``layer``'s components).

        The path posteriors of :meth:`DGMMParams.predict_proba` averaged over at most
        :data:`MAX_PREDICT_DRAWS` evenly thinned posterior draws.

        Returns
        -------
        (N, n_paths) array, or (N, G_layer) for ``layer`` in 1..L.
        """
        self._check_fitted()
        Xa = check_data(X, n_features=self.n_features_in_)
        assert self._draw_params is not None
        with threadpool_limits(1):
            total = sum(p.predict_proba(Xa) for p in self._draw_params)
        proba = np.asarray(total) / len(self._draw_params)
        if layer is None:
            return proba
        return aggregate_paths(proba, self.spec_.n_components, layer)

    def predict(self, X: ArrayLike, layer: int | None = None) -> NDArray[np.intp]:
        """Most probable path (or component of layer ``layer``) under :meth:`predict_proba`."""
        return np.argmax(self.predict_proba(X, layer=layer), axis=1).astype(np.intp)

    def score_samples(self, X: ArrayLike) -> Array:
        """Log predictive density of each row: ``log mean_draws f(x | theta_draw)``, (N,)."""
        self._check_fitted()
        Xa = check_data(X, n_features=self.n_features_in_)
        assert self._draw_params is not None
        with threadpool_limits(1):
            logp = np.stack([p.score_samples(Xa) for p in self._draw_params])
        return np.asarray(logsumexp(logp, axis=0) - math.log(logp.shape[0]))

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean log predictive density per observation."""
        return float(np.mean(self.score_samples(X)))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``idata_`` and the settings to a netCDF file (atomically; no pickle)."""
        self._check_fitted()
        tree = self.idata_.copy()
        attrs = {
            "bayes_dgmm_format": SAVE_FORMAT,
            "bayes_dgmm_version": _version(),
            "spec_name": self.spec_.name,
            "spec_toml": self.spec_.to_toml(),
            "constraint": json.dumps(self.constraint),
            "priors": json.dumps(dict(self.priors or {}), sort_keys=True),
            "method": self.method_,
            "random_seed": json.dumps(self.random_seed),
            "n_features_in": int(self.n_features_in_),
            "posterior_sha256": _posterior_digest(tree["posterior"].to_dataset()),
        }
        assert set(attrs) == set(_SAVED_ATTRS)
        tree.attrs.update(attrs)
        _drop_object_variables(tree)

        def write(tmp: Path) -> None:
            tree.to_netcdf(tmp, engine="h5netcdf")

        return atomic_write(Path(path), write)

    @classmethod
    def load(
        cls, path: str | Path, spec: DGMMSpec | str | None = None
    ) -> BayesianDeepGaussianMixture:
        """Read a fit written by :meth:`save`.

        Parameters
        ----------
        spec : DGMMSpec or shipped spec name, optional
            When given, the file must have been fitted with this spec.

        Raises
        ------
        ValueError
            The file is not a bayes-dgmm fit, was written by another package version, or is
            for another spec than ``spec``.
        """
        import tomllib

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; give the path of a saved fit.")
        try:
            with _quiet_unraisable():
                with xr.open_datatree(path, engine="h5netcdf") as opened:
                    tree = opened.load()
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise ValueError(
                f"{path} cannot be read as a netCDF fit ({type(exc).__name__}: {exc}); the file "
                "is truncated, damaged or not a netCDF file: restore it or refit."
            ) from None
        attrs = dict(tree.attrs)
        if attrs.get("bayes_dgmm_format") != SAVE_FORMAT:
            raise ValueError(
                f"{path}: bayes_dgmm_format={attrs.get('bayes_dgmm_format')!r} is not "
                f"{SAVE_FORMAT!r}; this is not a fit saved by BayesianDeepGaussianMixture.save."
            )
        saved_version, version = attrs.get("bayes_dgmm_version"), _version()
        if saved_version != version:
            raise ValueError(
                f"{path} was saved by bayes-dgmm {saved_version}, this is version {version}; "
                f"refit with this version or install bayes-dgmm=={saved_version} to load it."
            )
        if "posterior" not in tree.children or attrs.get("posterior_sha256") != _posterior_digest(
            tree["posterior"].to_dataset()
        ):
            raise ValueError(
                f"{path}: the posterior draws do not match the checksum written with them; the "
                "file was modified after it was saved: restore it or refit."
            )
        missing = [key for key in _SAVED_ATTRS if key not in attrs]
        if missing:
            raise ValueError(
                f"{path} lacks the attribute {missing[0]!r} that save writes; the file was "
                "damaged or edited after it was saved: restore it or refit."
            )
        try:
            saved_spec = DGMMSpec.from_dict(tomllib.loads(attrs["spec_toml"]), source=str(path))
            saved = {k: json.loads(attrs[k]) for k in ("priors", "random_seed", "constraint")}
            n_features_in = int(attrs["n_features_in"])
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(
                f"{path}: the attributes written by save cannot be read ({exc}); the file was "
                "damaged or edited after it was saved: restore it or refit."
            ) from None
        if spec is not None:
            if isinstance(spec, str):
                from bayes_dgmm.model.spec import load_spec

                spec = load_spec(spec)
            if spec.to_dict() != saved_spec.to_dict():
                raise ValueError(
                    f"{path} was fitted with spec {saved_spec.name!r} "
                    f"({saved_spec.n_components}, {saved_spec.n_factors}, priors "
                    f"{dict(saved_spec.priors)}), not the spec {spec.name!r} asked for; load "
                    "without spec= or with the spec it was fitted with."
                )
        for key in _SAVED_ATTRS:
            tree.attrs.pop(key, None)
        est = cls.from_spec(
            saved_spec,
            random_seed=saved["random_seed"],
            priors=saved["priors"] or None,
            constraint=saved["constraint"],
        )
        est.idata_ = tree
        est.spec_ = saved_spec
        est.method_ = str(attrs["method"])
        est.n_features_in_ = n_features_in
        est._set_params()
        return est


@contextlib.contextmanager
def _quiet_unraisable() -> Iterator[None]:
    """Drop the "Exception ignored in File.__del__" that h5netcdf prints for a damaged file.

    Closing a file that failed to open raises again in its finaliser; Python prints that to
    stderr next to our own message. Only h5netcdf's and h5py's finalisers are silenced.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        obj = unraisable.object
        module = str(getattr(obj, "__module__", None) or type(obj).__module__)
        if not module.startswith(("h5netcdf", "h5py")):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        gc.collect()  # run the finalisers of what failed to open while the hook is set
        sys.unraisablehook = previous


def _posterior_digest(posterior: xr.Dataset) -> str:
    """SHA-256 of the posterior draws (names, shapes and float64 values), for :meth:`load`."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(map(str, posterior.data_vars)):
        values = np.ascontiguousarray(posterior[name].values, dtype=np.float64)
        h.update(name.encode())
        h.update(repr(values.shape).encode())
        h.update(values.tobytes())
    return h.hexdigest()


def _jittered_start(model: Any, random_seed: RandomLike) -> dict[str, Array]:
    """Constrained start: the model's default point with U(-1, 1) jitter (unconstrained)."""
    from pymc.initial_point import make_initial_point_fn

    fn = make_initial_point_fn(
        model=model, jitter_rvs=set(model.free_RVs), return_transformed=False
    )
    seed = None if random_seed is None else np.random.default_rng(random_seed).integers(2**30)
    point = fn(seed)
    names = {rv.name for rv in model.free_RVs}
    return {k: v for k, v in point.items() if k in names}


def _log_likelihood(posterior: xr.Dataset, X: Array, spec: DGMMSpec) -> xr.Dataset:
    """Pointwise log-likelihood ``x`` (chain, draw, obs) of every posterior draw.

    Uses the compiled twin of the model's likelihood, cached per architecture
    (:func:`bayes_dgmm.bayes.model.pointwise_loglik_function`), instead of
    ``pm.compute_log_likelihood``, which would compile the model's graph again at every fit.
    """
    from bayes_dgmm.bayes.model import pointwise_loglik_function

    fn = pointwise_loglik_function(spec.n_components, spec.n_factors)
    names = [f"{p}_{l}" for l in range(1, spec.n_layers + 1) for p in _PARAM_NAMES]
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


def _drop_object_variables(tree: Any) -> None:
    """Make a tree about to be saved storable in netCDF, in place.

    SMC's per-stage statistics are ragged (object dtype: one array of stages per chain);
    netCDF cannot store them. Each is replaced by its final-stage value, ``<name>_final``
    (for ``log_marginal_likelihood``: the evidence estimate of each chain).
    """
    for node in tree.subtree:
        for name in list(node.data_vars):
            da = node[name]
            if da.dtype != object:
                continue
            try:
                values = [np.asarray(v, dtype=float).ravel()[-1] for v in da.values.ravel()]
                final = np.asarray(values, dtype=np.float64).reshape(da.shape)
            except (TypeError, ValueError, IndexError):
                logger.info("save: dropping %s/%s (object dtype, not storable)", node.path, name)
            else:
                node[f"{name}_final"] = xr.Variable(da.dims, final)
            del node[name]
