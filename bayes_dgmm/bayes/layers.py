"""The PyMC variables of one DGMM layer: priors, anchoring and identifiability constraints.

:func:`data_layer` builds layer 1's (on the data's scale), :func:`standardised_layer` and
:func:`noise_layer` a latent layer's in the two gauges of :mod:`bayes_dgmm.model.gauge`;
called by :func:`bayes_dgmm.bayes.model.build_model` inside its model context. The priors
and their defaults: ``docs/bayesian-model.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import NDArray
from pymc.logprob.transforms import Transform

Array = NDArray[np.float64]


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


def layer_dim(layer: int) -> str:
    """Name of the dim of ``z^(layer)``: ``feature`` for 0, else ``factor_<layer>``."""
    return "feature" if layer == 0 else f"factor_{layer}"


def lower_indices(r_in: int, r_out: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row and column indices of the strictly lower entries of an (r_in, r_out) matrix."""
    rows, cols = np.tril_indices(r_in, k=-1, m=r_out)
    return rows.astype(np.intp), cols.astype(np.intp)


def _intercepts(
    name: str, G: int, mu: Array, sd: Array, dims: tuple[str, str], constraint: str | None
) -> Any:
    """``eta`` of one layer: free normal (layer 1), or summing to zero over the components
    (``name`` of a latent layer): ``ZeroSumNormal``, or under ``"ordered"`` the raw form
    centred (the ordered transform needs it)."""
    latent = not name.endswith("_1")
    kw: dict[str, Any] = {}
    if constraint == "ordered" and G > 1:
        # The default start (all components at the prior mean) is on the boundary of the
        # ordered set; spread the first coordinate across the prior.
        init = np.tile(mu, (G, 1))
        init[:, 0] += np.linspace(-1.0, 1.0, G) * sd[0]
        kw = {"transform": OrderedFirstColumn(), "initval": init}
    elif latent:
        return _zero_sum(name, G, mu.size, float(sd[0]), *dims)
    raw = pm.Normal(
        f"{name}_raw" if latent else name,
        mu=np.tile(mu, (G, 1)),
        sigma=np.tile(sd, (G, 1)),
        dims=dims,
        **kw,
    )
    if not latent:
        return raw
    return pm.Deterministic(name, raw - raw.mean(axis=0, keepdims=True), dims=dims)


def _centred_log(name: str, G: int, r_in: int, sd: float, dims: Any, ordered: bool) -> Any:
    """Log scales of a latent layer with mean zero over the components: ``ZeroSumNormal``,
    or the raw normal form centred under ``"ordered"``."""
    if not ordered:
        return _zero_sum(name, G, r_in, sd, *dims)
    raw = pm.Normal(f"{name}_raw", mu=0.0, sigma=sd, dims=dims)
    return raw - raw.mean(axis=0, keepdims=True)


def data_layer(
    G: int, r_out: int, x_mean: Array, x_sd: Array, m1: float, hyper: Any, constraint: str | None
) -> list[Any]:
    """``eta_1, Lambda_1, psi_1``: priors on the data's scale (``docs/bayesian-model.md``)."""
    dims = ("component_1", "feature", "factor_1")
    eta = _intercepts("eta_1", G, x_mean, hyper["eta_1_scale"] * x_sd, dims[:2], constraint)
    # typical spread of Lambda_1 z^(1): Lambda_1_scale * sd(x) (latent_second_moment)
    lam_sd = hyper["Lambda_1_scale"] * x_sd[:, None] / math.sqrt(r_out * m1) * np.ones((1, r_out))
    lam = _loadings(1, G, lam_sd, dims, constraint)
    psi = pm.LogNormal(
        "psi_1",
        mu=np.tile(np.log(hyper["psi_1_scale"] * x_sd**2), (G, 1)),
        sigma=hyper["psi_log_sd"],
        dims=dims[:2],
    )
    return [eta, lam, psi]


def _loadings(layer: int, G: int, lam_sd: Array, dims: Any, constraint: str | None) -> Any:
    if constraint == "lower_triangular":
        return _lower_triangular_loadings(layer, G, lam_sd, dims)
    return pm.Normal(
        f"Lambda_{layer}", mu=0.0, sigma=np.broadcast_to(lam_sd, (G, *lam_sd.shape)), dims=dims
    )


def noise_layer(
    l: int, G: int, dims_r: Sequence[int], hyper: Any, constraint: str | None
) -> list[Any]:
    """Latent layer ``l`` in the noise gauge: normal loadings, log noise variances with mean
    zero over the components."""
    r_in, r_out = dims_r[l - 1], dims_r[l]
    dims = (f"component_{l}", layer_dim(l - 1), layer_dim(l))
    eta_sd = np.full(r_in, hyper["eta_scale"])
    eta = _intercepts(f"eta_{l}", G, np.zeros(r_in), eta_sd, dims[:2], constraint)
    lam = _loadings(l, G, np.full((r_in, r_out), hyper["Lambda_scale"]), dims, constraint)
    ordered = constraint == "ordered"
    log_psi = _centred_log(f"log_psi_{l}", G, r_in, hyper["psi_log_sd"], dims[:2], ordered)
    psi = pm.Deterministic(f"psi_{l}", pt.exp(log_psi), dims=dims[:2])
    return [eta, lam, psi]


def standardised_layer(
    l: int, G: int, dims_r: Sequence[int], hyper: Any, constraint: str | None
) -> list[Any]:
    """Latent layer ``l`` in the standardised gauge: per component and factor, the total
    variance ``t`` (log mean zero over the components) and the loadings in noise units
    ``c`` (multivariate t, so that the uniqueness ``1 / (1 + |c|^2)`` is Beta(nu/2, R_l/2));
    ``Lambda = sqrt(t) c / sqrt(1 + |c|^2)``, ``psi = t / (1 + |c|^2)``."""
    r_in, r_out = dims_r[l - 1], dims_r[l]
    dims = (f"component_{l}", layer_dim(l - 1), layer_dim(l))
    eta_sd = np.full(r_in, hyper["eta_scale"])
    eta = _intercepts(f"eta_{l}", G, np.zeros(r_in), eta_sd, dims[:2], constraint)
    ordered = constraint == "ordered"
    log_t = _centred_log(f"log_t_{l}", G, r_in, hyper["t_log_sd"], dims[:2], ordered)
    nu = hyper["loading_nu"]
    if constraint == "lower_triangular":
        c = _lower_triangular_c(l, G, r_in, r_out, nu, dims)
    else:
        c = pm.MvStudentT(f"c_{l}", nu=nu, mu=np.zeros(r_out), scale=np.eye(r_out) / nu, dims=dims)
    scale = pt.exp(0.5 * log_t) / pt.sqrt(1.0 + pt.sum(c**2, axis=-1))
    lam = pm.Deterministic(f"Lambda_{l}", scale[..., None] * c, dims=dims)
    psi = pm.Deterministic(f"psi_{l}", scale**2, dims=dims[:2])
    return [eta, lam, psi]


def _zero_sum(name: str, G: int, r_in: int, sigma: float, comp: str, din: str) -> Any:
    """``(G, r_in)`` values summing to zero over the components: ``ZeroSumNormal`` on the
    last axis of ``{name}_zs`` (dims ``(din, comp)``), transposed into ``name``. One
    component leaves nothing free: the values are zero."""
    if G == 1:
        return pm.Deterministic(name, pt.zeros((1, r_in)), dims=(comp, din))
    raw = pm.ZeroSumNormal(f"{name}_zs", sigma=sigma, dims=(din, comp))
    return raw.T if name.startswith("log_") else pm.Deterministic(name, raw.T, dims=(comp, din))


def _lower_triangular_c(l: int, G: int, r_in: int, r_out: int, nu: float, dims: Any) -> Any:
    """``c_l`` lower-triangular with a positive diagonal: independent Student-t entries with
    the scale of the multivariate t's marginals (a half-t on the diagonal)."""
    rows, cols = lower_indices(r_in, r_out)
    k = np.arange(r_out)
    sd = 1.0 / math.sqrt(nu)
    diag = pm.HalfStudentT(f"c_{l}_diag", nu=nu, sigma=sd, dims=(dims[0], dims[2]))
    lower = pm.StudentT(f"c_{l}_lower", nu=nu, mu=0.0, sigma=sd, dims=(dims[0], f"lower_{l}"))
    c = pt.zeros((G, r_in, r_out))
    c = pt.set_subtensor(c[:, k, k], diag)
    return pm.Deterministic(f"c_{l}", pt.set_subtensor(c[:, rows, cols], lower), dims=dims)


def _lower_triangular_loadings(
    layer: int, G: int, lam_sd: Array, dims: tuple[str, str, str]
) -> Any:
    """``Lambda_l`` lower-triangular with a positive diagonal, from two free variables."""
    r_in, r_out = lam_sd.shape
    rows, cols = lower_indices(r_in, r_out)
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
