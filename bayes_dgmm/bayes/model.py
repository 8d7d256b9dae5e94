"""The DGMM as a PyMC model with labels and scores marginalised.

:func:`build_model` turns data and a :class:`~bayes_dgmm.model.spec.DGMMSpec` into a
``pm.Model`` whose likelihood is the global GMM's marginal density (eqs. 3-6), in the Woodbury
form of :func:`bayes_dgmm.model.density.lowrank_logpdf`. Variables and dims, priors
(:data:`PRIOR_DEFAULTS`), the anchoring of the latent layers and the identifiability
constraints: ``docs/bayesian-model.md``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import ArrayLike, NDArray

from bayes_dgmm._validation import check_data
from bayes_dgmm.bayes.graph_density import dgmm_logp
from bayes_dgmm.bayes.layers import OrderedFirstColumn as OrderedFirstColumn
from bayes_dgmm.bayes.layers import (
    data_layer,
    layer_dim,
    lower_indices,
    noise_layer,
    standardised_layer,
)
from bayes_dgmm.bayes.likelihood import RowLogLik
from bayes_dgmm.em.exact import rotate_loadings
from bayes_dgmm.model.gauge import check_gauge, in_gauge, latent_coordinates
from bayes_dgmm.model.names import n_named_layers
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.priors import PRIOR_DEFAULTS as PRIOR_DEFAULTS
from bayes_dgmm.model.priors import resolve_priors
from bayes_dgmm.model.simulate import simulate
from bayes_dgmm.model.spec import DGMMSpec

Array = NDArray[np.float64]


CONSTRAINTS: tuple[str | None, ...] = (None, "ordered", "lower_triangular")


# ---------------------------------------------------------------------------- options
def compile_mode() -> str:
    """PyTensor mode for the package's compiled functions and PyMC fits.

    PyTensor's JAX backend unless the user configured a mode (``PYTENSOR_FLAGS=mode=...`` or
    ``pytensor.config.mode``): the likelihood is a JAX function, so under JAX the whole log
    density and gradient are one jitted function. On the study model it compiled cold in
    20 s and ran in 12.9 ms, against 100 s and 19.7 ms with the priors in the C backend
    around the JAX likelihood (``benchmarks/bench_logp.py``, ``docs/bayesian-model.md``).
    """
    import pytensor

    mode = pytensor.config.mode
    return "JAX" if mode in ("Mode", "FAST_RUN") else str(mode)


def latent_second_moment(
    hyper: Mapping[str, float],
    n_components: Sequence[int],
    n_factors: Sequence[int],
    gauge: str = "standardised",
) -> float:
    """Typical prior second moment of one coordinate of ``z^(1)``.

    Top down from ``z^(L) ~ N(0, I)``, with ``s = eta_scale^2 (1 - 1/G_l)`` the variance of
    an intercept that sums to zero over G_l components. In the noise gauge ``m_{l-1} = s +
    Lambda_scale^2 R_l m_l + psi_scale`` (the noise at its anchored geometric mean). In the
    standardised gauge a row's variance given ``z^(l)`` is ``t ((1 - u) m_l + u)``, with the
    uniqueness ``u ~ Beta(nu / 2, R_l / 2)`` and ``E t = exp(t_log_sd^2 (1 - 1/G_l) / 2)``,
    so ``m_{l-1} = s + E t ((1 - E u) m_l + E u)``. Layer 1's loadings are scaled by
    ``1 / sqrt(R_1 m_1)``; then ``Lambda_1 z^(1)`` has a typical prior spread of
    ``Lambda_1_scale * sd(x)``, whatever the depth and widths of the latent layers.
    """
    m = 1.0
    for l in range(len(n_components) - 1, 0, -1):  # 0-based layer l maps z^(l+1) -> z^(l)
        g, r = int(n_components[l]), int(n_factors[l])
        spread = hyper["eta_scale"] ** 2 * (1 - 1 / g)
        if gauge == "noise":
            m = spread + hyper["Lambda_scale"] ** 2 * r * m + hyper["psi_scale"]
        else:
            mean_t = math.exp(0.5 * hyper["t_log_sd"] ** 2 * (1 - 1 / g))
            mean_u = hyper["loading_nu"] / (hyper["loading_nu"] + r)
            m = spread + mean_t * ((1 - mean_u) * m + mean_u)
    return float(m)


def check_constraint(constraint: str | None) -> str | None:
    """Return ``constraint`` if it is one of :data:`CONSTRAINTS`, else raise ValueError."""
    if constraint not in CONSTRAINTS:
        raise ValueError(
            f"constraint={constraint!r} is not supported; choose one of {list(CONSTRAINTS)}."
        )
    return constraint


# ---------------------------------------------------------------------------- likelihood
def _split_params(
    params: Sequence[Any], n_layers: int
) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """Flat ``(pi_1, eta_1, Lambda_1, psi_1, pi_2, ...)`` to four per-layer lists."""
    return (
        list(params[0::4]),
        list(params[1::4]),
        list(params[2::4]),
        list(params[3::4]),
    )


def _likelihood_fns(
    n_components: Sequence[int], n_factors: Sequence[int], likelihood: str = "jax"
) -> tuple[Callable[..., Any], Callable[..., Any], str]:
    comps = tuple(int(g) for g in n_components)
    facts = tuple(int(r) for r in n_factors)
    L = len(comps)

    core_ndims = (1, 2, 3, 2) * L

    def logp(value: Any, *params: Any) -> Any:
        # PyMC hands the parameters over with the value's batch dims (length 1) in front.
        core = [p[(0,) * (p.ndim - k)] for p, k in zip(params, core_ndims, strict=True)]
        if likelihood == "graph":
            pi, eta, lam, psi = _split_params(core, L)
            return dgmm_logp(value, pi, eta, lam, psi, comps, facts)
        return RowLogLik(comps, facts)(value, *core)

    def random(*params: Any, rng: np.random.Generator | None = None, size: Any = None) -> Array:
        core = [
            np.asarray(p)[(0,) * (np.ndim(p) - k)] for p, k in zip(params, core_ndims, strict=True)
        ]
        pi, eta, lam, psi = _split_params(core, L)
        dgmm = DGMMParams(pi=[p / p.sum() for p in pi], eta=eta, Lambda=lam, psi=psi)
        shape = (1,) if size is None else tuple(np.atleast_1d(size))
        x = simulate(dgmm, math.prod(shape), random_state=rng).X
        return x.reshape(*shape, dgmm.n_features)

    parts = []
    for l in range(1, L + 1):
        parts += [f"(g{l})", f"(g{l},r{l - 1})", f"(g{l},r{l - 1},r{l})", f"(g{l},r{l - 1})"]
    signature = ",".join(parts) + "->(r0)"
    return logp, random, signature


@functools.lru_cache(maxsize=16)
def pointwise_loglik_function(
    n_components: tuple[int, ...], n_factors: tuple[int, ...]
) -> Callable[..., Array]:
    """``f(X, pi_1, eta_1, Lambda_1, psi_1, pi_2, ...) -> (N,)`` log densities: the model's
    likelihood (:class:`~bayes_dgmm.bayes.likelihood.RowLogLik`) on numpy arrays. Its JAX
    function is compiled once per architecture and process (and kept in JAX's disk cache)."""
    op = RowLogLik(n_components, n_factors)

    def pointwise(X: ArrayLike, *params: ArrayLike) -> Array:
        flat = [np.asarray(p, dtype=np.float64) for p in params]
        return np.asarray(op._run(0, np.asarray(X, dtype=np.float64), *op.split(flat)))

    return pointwise


# ---------------------------------------------------------------------------- model
def build_model(
    X: ArrayLike,
    spec: DGMMSpec,
    priors: Mapping[str, Any] | None = None,
    constraint: str | None = None,
    batch_size: int | None = None,
    reference: tuple[ArrayLike, ArrayLike] | None = None,
    gauge: str = "standardised",
    likelihood: str = "jax",
) -> pm.Model:
    """The DGMM with labels and scores marginalised, as a PyMC model.

    Parameters
    ----------
    X : (N, J) array
        Observations; they enter through ``pm.Data("X")`` so new data can be set later.
    spec : DGMMSpec
        Architecture (and ``[priors]`` overrides).
    priors : mapping, optional
        Prior overrides on top of the spec's (keys in ``docs/bayesian-model.md``).
    constraint : {None, "ordered", "lower_triangular"}
        Identifiability constraint (``docs/bayesian-model.md``).
    batch_size : int, optional
        Minibatches for stochastic VI: the likelihood is that of ``batch_size`` rows drawn
        at random at every evaluation (``pm.Minibatch``), scaled to ``N`` (``total_size``).
        Its log density is then an unbiased estimate, usable by ADVI only.
    reference : (location, scale), optional
        Per-feature location and scale (length ``J`` each, scale > 0) that centre and scale
        the layer-1 priors, instead of ``X``'s mean and standard deviation. A prior fixed
        in advance, whatever the data (simulation-based calibration needs one).
    gauge : {"standardised", "noise"}
        How the latent layers' location and scale are fixed (:mod:`bayes_dgmm.model.gauge`).
    likelihood : {"jax", "graph"}
        The hand-written JAX density (:mod:`bayes_dgmm.bayes.likelihood`), or the same
        density as a PyTensor graph (:mod:`bayes_dgmm.bayes.graph_density`), faster on tiny
        models under PyTensor's Numba backend.

    Returns a ``pm.Model`` with coords ``obs``, ``feature``, ``path`` and per layer
    ``component_l``, ``factor_l`` (and ``lower_l`` under ``"lower_triangular"``).
    """
    Xa = check_data(X, min_samples=2)
    spec.check_n_features(Xa.shape[1])
    constraint, gauge = check_constraint(constraint), check_gauge(gauge)
    if likelihood not in ("jax", "graph"):
        raise ValueError(f"likelihood={likelihood!r} is not supported; choose 'jax' or 'graph'.")
    hyper = resolve_priors(spec.priors, priors, gauge)
    comps, facts = spec.n_components, spec.n_factors
    N, J = Xa.shape
    x_mean, x_sd = _check_reference(reference, J) if reference is not None else _location_scale(Xa)

    with pm.Model(coords=_coords(N, J, spec, constraint)) as model:
        X_data = pm.Data("X", Xa, dims=("obs", "feature"))
        params: list[Any] = []
        for l in range(1, len(comps) + 1):
            G = comps[l - 1]
            comp = f"component_{l}"
            if G > 1:
                pi_l = pm.Dirichlet(f"pi_{l}", a=np.full(G, hyper["pi_alpha"]), dims=comp)
            else:
                pi_l = pm.Deterministic(f"pi_{l}", pt.ones(1), dims=comp)
            if l == 1:
                m1 = latent_second_moment(hyper, comps, facts, gauge)
                layer = data_layer(G, facts[0], x_mean, x_sd, m1, hyper, constraint)
            elif gauge == "standardised":
                layer = standardised_layer(l, G, (J, *facts), hyper, constraint)
            else:
                layer = noise_layer(l, G, (J, *facts), hyper, constraint)
            params += [pi_l, *layer]

        logp, random, signature = _likelihood_fns(comps, facts, likelihood)
        if batch_size is None:
            observed: dict[str, Any] = {"observed": X_data, "dims": ("obs", "feature")}
        else:
            batch = pm.Minibatch(X_data, batch_size=int(batch_size))
            observed = {"observed": batch, "total_size": N}
        pm.CustomDist("x", *params, logp=logp, random=random, signature=signature, **observed)
    return model


def _coords(N: int, J: int, spec: DGMMSpec, constraint: str | None) -> dict[str, Any]:
    dims_r = (J, *spec.n_factors)
    coords: dict[str, Any] = {
        "obs": np.arange(N),
        "feature": np.arange(J),
        "path": np.arange(spec.n_paths),
    }
    for l in range(1, len(spec.n_components) + 1):
        coords[f"component_{l}"] = np.arange(spec.n_components[l - 1])
        coords[layer_dim(l)] = np.arange(spec.n_factors[l - 1])
        if constraint == "lower_triangular":
            coords[f"lower_{l}"] = np.arange(lower_indices(dims_r[l - 1], dims_r[l])[0].size)
    return coords


def _location_scale(X: Array) -> tuple[Array, Array]:
    """Per-feature mean and standard deviation (1 where a feature is constant)."""
    sd = X.std(axis=0)
    return X.mean(axis=0), np.where(sd > 0, sd, 1.0)


def _check_reference(reference: Any, J: int) -> tuple[Array, Array]:
    """``reference`` as two float arrays of length ``J``, the scale positive."""
    try:
        loc, scale = (np.broadcast_to(np.asarray(a, dtype=float), (J,)) for a in reference)
    except (TypeError, ValueError):
        raise ValueError(
            f"reference={reference!r} is not a (location, scale) pair of length-{J} arrays "
            "(or scalars); give the per-feature location and scale of the layer-1 priors."
        ) from None
    if not (np.isfinite(loc).all() and np.isfinite(scale).all() and (scale > 0).all()):
        raise ValueError(
            f"reference={reference!r}: the location must be finite and the scale finite and "
            "positive in every feature."
        )
    return loc.copy(), scale.copy()


# ---------------------------------------------------------------------------- conversions
def n_layers_of(model: pm.Model) -> int:
    """Number of DGMM layers of a model built by :func:`build_model`."""
    return n_named_layers(model.named_vars)


def point_to_params(point: Mapping[str, Any]) -> DGMMParams:
    """DGMM parameters from constrained values named ``pi_l``, ``eta_l``, ``Lambda_l``, ``psi_l``.

    ``point`` may be a dict of arrays (e.g. a MAP point) or one posterior draw (an
    ``xarray.Dataset`` selected at one chain and draw). Weights are renormalised to sum to one
    exactly (the simplex transform leaves round-off).
    """
    return DGMMParams.from_named(point, renormalise=True)


def params_to_point(
    params: DGMMParams, model: pm.Model, constraint: str | None = None
) -> dict[str, Array]:
    """Constrained values of the model's free variables from DGMM parameters.

    The result is what ``initvals``/``start`` of PyMC's fitting functions take (keys are the
    free variables' names). Under ``"ordered"`` each layer's components are relabelled so the
    first coordinate of ``eta_l`` increases (an exact relabelling; ties are spread by a
    relative 1e-9). Under ``"lower_triangular"`` the top layer's loadings are rotated to
    lower-triangular form exactly (``Lambda = L Q``; ``z^(L) ~ N(0, I)`` absorbs ``Q``);
    below the top layer no exact rotation exists, so the lower triangle is kept and the
    diagonal made positive, which only approximates ``params``.
    """
    constraint = check_constraint(constraint)
    L = params.n_layers
    if n_layers_of(model) != L:
        raise ValueError(
            f"params has {L} layers but the model has {n_layers_of(model)}; use parameters of "
            "the model's architecture."
        )
    gauge = model_gauge(model)
    moved = in_gauge(params, gauge)
    pi = [p.copy() for p in moved.pi]
    eta = [e.copy() for e in moved.eta]
    lam = [a.copy() for a in moved.Lambda]
    psi = [s.copy() for s in moved.psi]
    if constraint == "ordered":
        for l in range(L):
            order = np.argsort(eta[l][:, 0], kind="stable")
            pi[l], eta[l], lam[l], psi[l] = (
                pi[l][order],
                eta[l][order],
                lam[l][order],
                psi[l][order],
            )
            first = eta[l][:, 0]
            tiny = 1e-9 * max(1.0, float(np.max(np.abs(first))))
            for g in range(1, first.size):
                first[g] = max(first[g], first[g - 1] + tiny)
    # The values of every variable any gauge and constraint can have; the gauge's values
    # satisfy its constraints exactly, so they are their own raw values.
    values: dict[str, Array] = {}
    for l in range(1, L + 1):
        values.update({f"pi_{l}": pi[l - 1], f"eta_{l}": eta[l - 1], f"psi_{l}": psi[l - 1]})
        values.update({f"Lambda_{l}": lam[l - 1], f"eta_{l}_zs": eta[l - 1].T})
        values.update({f"eta_{l}_raw": eta[l - 1], f"log_psi_{l}_zs": np.log(psi[l - 1]).T})
        values[f"log_psi_{l}_raw"] = np.log(psi[l - 1])
        if l >= 2:
            c, log_t = latent_coordinates(lam[l - 1], psi[l - 1])
            values.update({f"c_{l}": c, f"log_t_{l}_zs": log_t.T, f"log_t_{l}_raw": log_t})
        if constraint == "lower_triangular":
            lower = _lower_triangular_values(lam[l - 1], top=l == L, layer=l)
            values.update(lower)
            if l >= 2:
                scale = np.sqrt(psi[l - 1])[:, : lower[f"Lambda_{l}_diag"].shape[1]]
                values[f"c_{l}_diag"] = lower[f"Lambda_{l}_diag"] / scale
                rows = lower_indices(*lam[l - 1].shape[1:])[0]
                values[f"c_{l}_lower"] = lower[f"Lambda_{l}_lower"] / np.sqrt(psi[l - 1])[:, rows]
    free = [rv.name for rv in model.free_RVs]
    missing = sorted(set(free) - set(values))
    if missing:
        raise ValueError(f"params_to_point: no value for free variables {missing}.")
    return {name: values[name] for name in free}


def _lower_triangular_values(a: Array, *, top: bool, layer: int) -> dict[str, Array]:
    """``Lambda_l_diag`` and ``Lambda_l_lower`` from loadings ``a``: at the top layer the
    rotation to lower-triangular form is exact (the LQ form of each component)."""
    if top:
        a = rotate_loadings(a, np.ones(a.shape[:2]), "lower_triangular")
    r_in, r_out = a.shape[1:]
    rows, cols = lower_indices(r_in, r_out)
    k = np.arange(r_out)
    return {
        f"Lambda_{layer}_diag": np.maximum(np.abs(a[:, k, k]), 1e-12),
        f"Lambda_{layer}_lower": a[:, rows, cols],
    }


def uses_minibatch(model: pm.Model) -> bool:
    """Whether ``model``'s likelihood is that of random minibatches (``batch_size``)."""
    from pymc.variational.minibatch_rv import MinibatchRandomVariable

    return any(isinstance(rv.owner.op, MinibatchRandomVariable) for rv in model.observed_RVs)


def model_gauge(model: pm.Model) -> str:
    """The gauge a model of :func:`build_model` was built in."""
    return "standardised" if "c_2" in model.named_vars else "noise"


def transformed_point(model: pm.Model, point: Mapping[str, Any]) -> dict[str, Array]:
    """Unconstrained (value-variable) point from constrained free-variable values."""
    from pymc.initial_point import make_initial_point_fn

    fn = make_initial_point_fn(
        model=model,
        overrides={model[k]: np.asarray(v) for k, v in point.items()},
        jitter_rvs=set(),
        return_transformed=True,
    )
    return fn(0)
