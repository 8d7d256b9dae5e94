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
from pymc.logprob.transforms import Transform
from pytensor.gradient import disconnected_grad
from pytensor.tensor.linalg import cholesky, solve_triangular

from bayes_dgmm._validation import check_data
from bayes_dgmm.em.exact import rotate_loadings
from bayes_dgmm.model.density import LOG_2PI
from bayes_dgmm.model.names import n_named_layers
from bayes_dgmm.model.params import DGMMParams
from bayes_dgmm.model.paths import path_table
from bayes_dgmm.model.priors import PRIOR_DEFAULTS as PRIOR_DEFAULTS
from bayes_dgmm.model.priors import resolve_priors
from bayes_dgmm.model.simulate import simulate
from bayes_dgmm.model.spec import DGMMSpec

Array = NDArray[np.float64]


#: Differentiate the quadratic form with the ridge coefficients held fixed (exact at their
#: optimum); False differentiates through the solves (kept for tests and comparisons).
#: The held-fixed graph gives exact first derivatives only: a second derivative taken
#: through it (a Hessian or Hessian-vector product by autodiff) is wrong, so such graphs
#: must be built with False (``docs/bayes-convergence.md``).
ENVELOPE_GRADIENT = True

CONSTRAINTS: tuple[str | None, ...] = (None, "ordered", "lower_triangular")


# ---------------------------------------------------------------------------- options
def compile_mode() -> str:
    """PyTensor mode for the package's compiled functions and PyMC fits.

    The C backend (``"CVM"``) unless the user configured a mode (``PYTENSOR_FLAGS=mode=...``
    or ``pytensor.config.mode``). On the study model PyTensor's default (Numba) took about
    200 s to compile the log density and gradient and ran 4x slower than the C backend,
    whose compiled modules are also cached on disk across sessions (see
    ``benchmarks/bench_pymc.py``).
    """
    import pytensor

    mode = pytensor.config.mode
    return "CVM" if mode in ("Mode", "FAST_RUN") else str(mode)


def latent_second_moment(
    hyper: Mapping[str, float], n_components: Sequence[int], n_factors: Sequence[int]
) -> float:
    """Typical prior second moment of one coordinate of ``z^(1)``.

    Top down from ``z^(L) ~ N(0, I)``: ``m_{l-1} = eta_scale^2 (1 - 1/G_l) + Lambda_scale^2
    R_l m_l + psi_scale``. The first term is the variance of an intercept that sums to zero
    over G_l components, the second that of ``Lambda_l z^(l)``, and the third the noise at
    its anchored geometric mean (the median of its log-normal prior; its mean is dominated
    by the tail). Layer 1's loadings are scaled by ``1 / sqrt(R_1 m_1)``. Then
    ``Lambda_1 z^(1)`` has a typical prior spread of ``Lambda_1_scale * sd(x)``, whatever the
    depth and widths of the latent layers.
    """
    m = 1.0
    for l in range(len(n_components) - 1, 0, -1):  # 0-based layer l maps z^(l+1) -> z^(l)
        g, r = int(n_components[l]), int(n_factors[l])
        m = hyper["eta_scale"] ** 2 * (1 - 1 / g) + hyper["Lambda_scale"] ** 2 * r * m
        m += hyper["psi_scale"]
    return float(m)


def check_constraint(constraint: str | None) -> str | None:
    """Return ``constraint`` if it is one of :data:`CONSTRAINTS`, else raise ValueError."""
    if constraint not in CONSTRAINTS:
        raise ValueError(
            f"constraint={constraint!r} is not supported; choose one of {list(CONSTRAINTS)}."
        )
    return constraint


# ---------------------------------------------------------------------------- transforms
class OrderedFirstColumn(Transform):
    """Ordered transform on column 0 of a (G, R) matrix; the other columns are free.

    ``x[0, 0] = y[0, 0]``, ``x[g, 0] = x[g-1, 0] + exp(y[g, 0])``; ``x[:, 1:] = y[:, 1:]``.
    """

    name = "ordered_first_column"
    ndim_supp = 2

    def backward(self, value: Any, *inputs: Any) -> Any:
        first = pt.concatenate([value[:1, 0], pt.exp(value[1:, 0])])
        return pt.set_subtensor(value[:, 0], pt.cumsum(first))

    def forward(self, value: Any, *inputs: Any) -> Any:
        first = pt.concatenate([value[:1, 0], pt.log(value[1:, 0] - value[:-1, 0])])
        return pt.set_subtensor(value[:, 0], first)

    def log_jac_det(self, value: Any, *inputs: Any) -> Any:
        return pt.sum(value[1:, 0])


# ---------------------------------------------------------------------------- likelihood
def dgmm_log_prob_paths(
    X: Any,
    pi: Sequence[Any],
    eta: Sequence[Any],
    Lambda: Sequence[Any],
    psi: Sequence[Any],
    n_components: Sequence[int],
    n_factors: Sequence[int],
) -> Any:
    """Symbolic ``log pi_p + log N(x_i; mu_p, Sigma_p)`` for every row and path, (N, P).

    The PyTensor twin of :meth:`bayes_dgmm.model.params.DGMMParams.log_prob_paths`: same path
    order (:func:`~bayes_dgmm.model.params.path_table`), same residual-plus-penalty Woodbury form.

    Parameters
    ----------
    X : (N, J) tensor
    pi, eta, Lambda, psi : per-layer tensors shaped as in :class:`DGMMParams`
    n_components, n_factors : the architecture ``(G_1, ..., G_L)``, ``(R_1, ..., R_L)``
    """
    paths = path_table(n_components)  # (P, L) constant index table
    n_layers = len(n_components)
    P = paths.shape[0]
    log_w = sum(pt.log(pi[l])[paths[:, l]] for l in range(n_layers))

    # Mean and covariance of z^(1) on every path's sub-path (g_2..g_L), eqs. 5-6, top down.
    # Identity matrices are numpy constants of the architecture's sizes: symbolic eye and
    # broadcast_to made the gradient graph many times slower to build and compile.
    r_top = n_factors[-1]
    m: Any = pt.as_tensor(np.zeros((P, r_top)))
    S: Any = pt.as_tensor(np.broadcast_to(np.eye(r_top), (P, r_top, r_top)).copy())
    for l in range(n_layers - 1, 0, -1):
        g = paths[:, l]
        lam = Lambda[l][g]  # (P, R_{l-1}, R_l) in 0-based layer l
        m = eta[l][g] + pt.matmul(lam, m[:, :, None])[:, :, 0]
        S = pt.matmul(pt.matmul(lam, S), lam.mT)
        S = 0.5 * (S + S.mT) + np.eye(n_factors[l - 1])[None] * psi[l][g][:, None, :]

    g1 = paths[:, 0]
    lam1 = Lambda[0][g1]  # (P, J, R1)
    mean = eta[0][g1] + pt.matmul(lam1, m[:, :, None])[:, :, 0]  # (P, J)
    W = pt.matmul(lam1, cholesky(S, lower=True))  # (P, J, R1)
    psi1 = psi[0][g1]  # (P, J)
    Wd = W / psi1[:, :, None]  # D^{-1} W
    M = pt.matmul(W.mT, Wd) + np.eye(n_factors[0])[None]  # I + W~^T W~, (P, R1, R1)
    LM = cholesky(M, lower=True)
    # A = M^{-1} W^T D^{-1} (P, R1, J): a small solve with J right-hand sides; then
    # b = A (x - mean) is one matrix product. An error in b enters the quadratic form at
    # second order only (the form is the minimum over b), so this loses no accuracy.
    A = solve_triangular(LM.mT, solve_triangular(LM, Wd.mT, lower=True), lower=False)
    D = X[None, :, :] - mean[:, None, :]  # (P, N, J)
    b = pt.matmul(D, A.mT)  # (P, N, R1)
    if ENVELOPE_GRADIENT:
        # The quadratic form is min_b q(b); at the minimiser dq/db = 0, so its gradient with
        # b held fixed is the exact gradient (envelope theorem). Cutting the graph there
        # skips differentiating the solves: a smaller graph, faster to compile and run.
        b = disconnected_grad(b)
    resid = D - pt.matmul(b, W.mT)  # (P, N, J), in data units before scaling
    quad = pt.sum(resid**2 / psi1[:, None, :], axis=-1) + pt.sum(b**2, axis=-1)  # (P, N)
    logdet = pt.sum(pt.log(psi1), axis=-1) + 2.0 * pt.sum(
        pt.log(pt.diagonal(LM, axis1=-2, axis2=-1)), axis=-1
    )
    J = X.shape[-1]
    logpdf = -0.5 * (J * LOG_2PI + logdet[:, None] + quad)  # (P, N)
    return (logpdf + log_w[:, None]).T


def dgmm_logp(
    X: Any,
    pi: Sequence[Any],
    eta: Sequence[Any],
    Lambda: Sequence[Any],
    psi: Sequence[Any],
    n_components: Sequence[int],
    n_factors: Sequence[int],
) -> Any:
    """Symbolic marginal log density of each row of ``X``, shape (N,)."""
    log_prob = dgmm_log_prob_paths(X, pi, eta, Lambda, psi, n_components, n_factors)
    return pt.logsumexp(log_prob, axis=1)


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
    n_components: Sequence[int], n_factors: Sequence[int]
) -> tuple[Callable[..., Any], Callable[..., Any], str]:
    comps = tuple(int(g) for g in n_components)
    facts = tuple(int(r) for r in n_factors)
    L = len(comps)

    core_ndims = (1, 2, 3, 2) * L

    def logp(value: Any, *params: Any) -> Any:
        # PyMC hands the parameters over with the value's batch dims (length 1) in front.
        core = [p[(0,) * (p.ndim - k)] for p, k in zip(params, core_ndims, strict=True)]
        pi, eta, lam, psi = _split_params(core, L)
        return dgmm_logp(value, pi, eta, lam, psi, comps, facts)

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
    """Compiled ``f(X, pi_1, eta_1, Lambda_1, psi_1, pi_2, ...) -> (N,)`` log densities.

    Cached per architecture for the whole process, so fitting again, or another estimator of
    the same architecture, does not recompile (a PyTensor compile takes seconds).
    """
    import pytensor

    X = pt.matrix("X")
    inputs: list[Any] = [X]
    layers: list[list[Any]] = [[], [], [], []]
    for l in range(1, len(n_components) + 1):
        for k, (name, ndim) in enumerate(
            zip(("pi", "eta", "Lambda", "psi"), (1, 2, 3, 2), strict=True)
        ):
            var = pt.tensor(f"{name}_{l}", shape=(None,) * ndim)
            layers[k].append(var)
            inputs.append(var)
    pi, eta, lam, psi = layers
    out = dgmm_logp(X, pi, eta, lam, psi, n_components, n_factors)
    return pytensor.function(inputs, out, mode=compile_mode())


# ---------------------------------------------------------------------------- model
def layer_dim(layer: int) -> str:
    """Name of the dim of ``z^(layer)``: ``feature`` for 0, else ``factor_<layer>``."""
    return "feature" if layer == 0 else f"factor_{layer}"


def _lower_indices(r_in: int, r_out: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row and column indices of the strictly lower entries of an (r_in, r_out) matrix."""
    rows, cols = np.tril_indices(r_in, k=-1, m=r_out)
    return rows.astype(np.intp), cols.astype(np.intp)


def build_model(
    X: ArrayLike,
    spec: DGMMSpec,
    priors: Mapping[str, Any] | None = None,
    constraint: str | None = None,
    batch_size: int | None = None,
    reference: tuple[ArrayLike, ArrayLike] | None = None,
) -> pm.Model:
    """The DGMM with labels and scores marginalised, as a PyMC model.

    Parameters
    ----------
    X : (N, J) array
        Observations; they enter through ``pm.Data("X")`` so new data can be set later.
    spec : DGMMSpec
        Architecture (and ``[priors]`` overrides).
    priors : mapping, optional
        Prior overrides on top of the spec's (keys in the module docstring).
    constraint : {None, "ordered", "lower_triangular"}
        Identifiability constraint (module docstring).
    batch_size : int, optional
        Minibatches for stochastic VI: the likelihood is that of ``batch_size`` rows drawn
        at random at every evaluation (``pm.Minibatch``), scaled to ``N`` (``total_size``).
        Its log density is then an unbiased estimate, usable by ADVI only.
    reference : (location, scale), optional
        Per-feature location and scale (length ``J`` each, scale > 0) that centre and scale
        the layer-1 priors, instead of ``X``'s mean and standard deviation. A prior fixed
        in advance, whatever the data (simulation-based calibration needs one).

    Returns
    -------
    pm.Model with coords ``obs``, ``feature``, ``path`` and per layer ``component_l``,
    ``factor_l`` (and ``lower_l`` under ``"lower_triangular"``).
    """
    Xa = check_data(X, min_samples=2)
    spec.check_n_features(Xa.shape[1])
    constraint = check_constraint(constraint)
    hyper = resolve_priors(spec.priors, priors)
    comps, facts = spec.n_components, spec.n_factors
    n_layers = len(comps)
    N, J = Xa.shape
    dims_r = (J, *facts)
    if reference is None:
        x_mean, x_sd = Xa.mean(axis=0), Xa.std(axis=0)
        x_sd = np.where(x_sd > 0, x_sd, 1.0)
    else:
        x_mean, x_sd = _check_reference(reference, J)

    coords: dict[str, Any] = {
        "obs": np.arange(N),
        "feature": np.arange(J),
        "path": np.arange(spec.n_paths),
    }
    for l in range(1, n_layers + 1):
        coords[f"component_{l}"] = np.arange(comps[l - 1])
        coords[layer_dim(l)] = np.arange(facts[l - 1])
        if constraint == "lower_triangular":
            coords[f"lower_{l}"] = np.arange(_lower_indices(dims_r[l - 1], dims_r[l])[0].size)

    with pm.Model(coords=coords) as model:
        X_data = pm.Data("X", Xa, dims=("obs", "feature"))
        params: list[Any] = []
        for l in range(1, n_layers + 1):
            G, r_in, r_out = comps[l - 1], dims_r[l - 1], dims_r[l]
            comp, din, dout = f"component_{l}", layer_dim(l - 1), layer_dim(l)
            if l == 1:
                eta_mu, eta_sd = x_mean, hyper["eta_1_scale"] * x_sd
                # typical spread of Lambda_1 z^(1): Lambda_1_scale * sd(x) (latent_second_moment)
                m1 = latent_second_moment(hyper, comps, facts)
                lam_sd = hyper["Lambda_1_scale"] * x_sd[:, None] / math.sqrt(r_out * m1)
                lam_sd = lam_sd * np.ones((1, r_out))
                psi_mu = np.log(hyper["psi_1_scale"] * x_sd**2)
            else:
                eta_mu, eta_sd = np.zeros(r_in), np.full(r_in, hyper["eta_scale"])
                lam_sd = np.full((r_in, r_out), hyper["Lambda_scale"])
                psi_mu = np.full(r_in, np.log(hyper["psi_scale"]))

            if G > 1:
                pi_l = pm.Dirichlet(f"pi_{l}", a=np.full(G, hyper["pi_alpha"]), dims=comp)
            else:
                pi_l = pm.Deterministic(f"pi_{l}", pt.ones(1), dims=comp)

            eta_kw: dict[str, Any] = {}
            if constraint == "ordered" and G > 1:
                # The default start (all components at the prior mean) is on the boundary
                # of the ordered set; spread the first coordinate across the prior.
                init = np.tile(eta_mu, (G, 1))
                init[:, 0] += np.linspace(-1.0, 1.0, G) * eta_sd[0]
                eta_kw = {"transform": OrderedFirstColumn(), "initval": init}
            # Layers >= 2 are anchored: intercepts sum to zero and log noise variances have
            # mean zero over the components. Without "ordered", both are ZeroSumNormal on the
            # components (the exact law of iid normals minus their mean, with no redundant
            # direction); under "ordered" the ordered transform needs the raw form.
            anchor = l >= 2
            zero_sum = anchor and constraint != "ordered"
            if zero_sum:
                eta_l = _zero_sum(f"eta_{l}", G, r_in, hyper["eta_scale"], comp, din)
            else:
                eta_l = pm.Normal(
                    f"eta_{l}_raw" if anchor else f"eta_{l}",
                    mu=np.tile(eta_mu, (G, 1)),
                    sigma=np.tile(eta_sd, (G, 1)),
                    dims=(comp, din),
                    **eta_kw,
                )
            if anchor and not zero_sum:
                eta_l = pm.Deterministic(
                    f"eta_{l}", eta_l - eta_l.mean(axis=0, keepdims=True), dims=(comp, din)
                )

            if constraint == "lower_triangular":
                lam_l = _lower_triangular_loadings(l, G, lam_sd, (comp, din, dout))
            else:
                lam_l = pm.Normal(
                    f"Lambda_{l}",
                    mu=0.0,
                    sigma=np.broadcast_to(lam_sd, (G, r_in, r_out)),
                    dims=(comp, din, dout),
                )
            if zero_sum:
                log_psi = _zero_sum(f"log_psi_{l}", G, r_in, hyper["psi_log_sd"], comp, din)
                psi_l = pm.Deterministic(f"psi_{l}", pt.exp(log_psi), dims=(comp, din))
            else:
                psi_l = pm.LogNormal(
                    f"psi_{l}_raw" if anchor else f"psi_{l}",
                    mu=np.tile(psi_mu, (G, 1)),
                    sigma=hyper["psi_log_sd"],
                    dims=(comp, din),
                )
            if anchor and not zero_sum:
                log_psi = pt.log(psi_l)
                psi_l = pm.Deterministic(
                    f"psi_{l}",
                    pt.exp(log_psi - log_psi.mean(axis=0, keepdims=True)),
                    dims=(comp, din),
                )
            params += [pi_l, eta_l, lam_l, psi_l]

        logp, random, signature = _likelihood_fns(comps, facts)
        if batch_size is None:
            observed: dict[str, Any] = {"observed": X_data, "dims": ("obs", "feature")}
        else:
            batch = pm.Minibatch(X_data, batch_size=int(batch_size))
            observed = {"observed": batch, "total_size": N}
        pm.CustomDist("x", *params, logp=logp, random=random, signature=signature, **observed)
    return model


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


def _zero_sum(name: str, G: int, r_in: int, sigma: float, comp: str, din: str) -> Any:
    """``(G, r_in)`` values summing to zero over the components: ``ZeroSumNormal`` on the
    last axis of ``{name}_zs`` (dims ``(din, comp)``), transposed into ``name``. One
    component leaves nothing free: the values are zero."""
    if G == 1:
        return pm.Deterministic(name, pt.zeros((1, r_in)), dims=(comp, din))
    raw = pm.ZeroSumNormal(f"{name}_zs", sigma=sigma, dims=(din, comp))
    return raw.T if name.startswith("log_") else pm.Deterministic(name, raw.T, dims=(comp, din))


def _lower_triangular_loadings(
    layer: int, G: int, lam_sd: Array, dims: tuple[str, str, str]
) -> Any:
    """``Lambda_l`` lower-triangular with a positive diagonal, from two free variables."""
    r_in, r_out = lam_sd.shape
    rows, cols = _lower_indices(r_in, r_out)
    diag_idx = np.arange(r_out)
    comp, _, dout = dims
    diag = pm.HalfNormal(
        f"Lambda_{layer}_diag",
        sigma=np.broadcast_to(lam_sd[diag_idx, diag_idx], (G, r_out)),
        dims=(comp, dout),
    )
    lower = pm.Normal(
        f"Lambda_{layer}_lower",
        mu=0.0,
        sigma=np.broadcast_to(lam_sd[rows, cols], (G, rows.size)),
        dims=(comp, f"lower_{layer}"),
    )
    lam = pt.zeros((G, r_in, r_out))
    lam = pt.set_subtensor(lam[:, diag_idx, diag_idx], diag)
    lam = pt.set_subtensor(lam[:, rows, cols], lower)
    return pm.Deterministic(f"Lambda_{layer}", lam, dims=dims)


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
    anchored = params.anchored()
    pi = [p.copy() for p in anchored.pi]
    eta = [e.copy() for e in anchored.eta]
    lam = [a.copy() for a in anchored.Lambda]
    psi = [s.copy() for s in anchored.psi]
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
    point: dict[str, Array] = {}
    for l in range(1, L + 1):
        if f"pi_{l}" in model.named_vars and model[f"pi_{l}"] in model.free_RVs:
            point[f"pi_{l}"] = pi[l - 1]
        # Anchored values satisfy the anchoring exactly, so they are their own raw values.
        if f"eta_{l}_zs" in model.named_vars:
            point[f"eta_{l}_zs"] = eta[l - 1].T
            point[f"log_psi_{l}_zs"] = np.log(psi[l - 1]).T
        elif l == 1 or f"eta_{l}_raw" in model.named_vars:
            suffix = "_raw" if l >= 2 else ""
            point[f"eta_{l}{suffix}"] = eta[l - 1]
            point[f"psi_{l}{suffix}"] = psi[l - 1]
        if constraint == "lower_triangular":
            a = lam[l - 1]
            if l == L:
                # at the top layer the rotation is exact: the LQ form of each component
                a = rotate_loadings(a, np.ones(a.shape[:2]), "lower_triangular")
            r_in, r_out = a.shape[1:]
            rows, cols = _lower_indices(r_in, r_out)
            k = np.arange(r_out)
            point[f"Lambda_{l}_diag"] = np.maximum(np.abs(a[:, k, k]), 1e-12)
            point[f"Lambda_{l}_lower"] = a[:, rows, cols]
        else:
            point[f"Lambda_{l}"] = lam[l - 1]
    missing = {rv.name for rv in model.free_RVs} - set(point)
    if missing:
        raise ValueError(f"params_to_point: no value for free variables {sorted(missing)}.")
    return point


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
