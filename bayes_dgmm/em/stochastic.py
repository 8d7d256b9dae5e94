"""The study's baseline: the layer-wise stochastic EM of Viroli & McLachlan (2019).

One iteration of the CRAN package ``deepgmm``'s algorithm as pure numpy functions, with the
exact global GMM for the responsibilities; :func:`stochastic_step` makes it a step of the EM
loop. Sources read, departures from deepgmm and its stopping rule: ``docs/stochastic-em.md``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import LinAlgError, cho_factor, cho_solve, cholesky, solve_triangular
from scipy.special import logsumexp

from bayes_dgmm.em.driver import Step, StepOutput
from bayes_dgmm.em.exact import apply_constraint, variance_floor
from bayes_dgmm.em.starts import factor_scores
from bayes_dgmm.model.density import lowrank_logpdf
from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]

logger = logging.getLogger(__name__)

#: Components with fewer expected observations keep their eta, Lambda and psi (deepgmm's
#: initialisation gives every cluster at least 2 observations).
MIN_COMPONENT_WEIGHT = 2.0

#: Added to every expected count before the weights are normalised (as scikit-learn's
#: GaussianMixture does), so that no weight is exactly zero.
_WEIGHT_EPS = 10.0 * np.finfo(np.float64).eps


# --------------------------------------------------------------------------- posteriors
@dataclass(frozen=True)
class ScorePosterior:
    """Gaussian posteriors of ``z^(l)`` given the layer's input, per component and sub-path.

    Attributes
    ----------
    log_density : (N, G, S) array, ``log N(y; eta_g + Lambda_g m_s, Psi_g + Lambda_g
        Sigma_s Lambda_g^T)``: the density of the input under component ``g``, sub-path ``s``
    means : (G, S, N, R) array, ``E[z | y, g, s]`` (component-major, so that the M-step
        reads each component's block contiguously)
    chol_cov : (G, S, R, R) array, a factor ``F`` with ``Cov[z | y, g, s] = F F^T``
    """

    log_density: Array
    means: Array
    chol_cov: Array

    @property
    def covariances(self) -> Array:
        """(G, S, R, R) posterior covariances."""
        return np.einsum("gsij,gskj->gsik", self.chol_cov, self.chol_cov)


def score_posterior(
    Y: Array,
    eta: Array,
    Lambda: Array,
    psi: Array,
    prior_means: Array,
    prior_covs: Array,
) -> ScorePosterior:
    """Posterior of the scores of one layer, for every component and sub-path above it.

    Model: ``y = eta_g + Lambda_g z + u``, ``u ~ N(0, diag(psi_g))``, prior
    ``z ~ N(m_s, Sigma_s)``. With ``Sigma_s = C C^T`` and ``z = m_s + C v``, ``v ~ N(0, I)``,
    this is a factor model in ``v`` with loadings ``W = Lambda_g C``, whose posterior is
    ``v | y ~ N(b, (I + W~^T W~)^-1)`` (``W~ = Psi^-1/2 W``, ``b`` from
    :func:`bayes_dgmm.model.density.lowrank_logpdf`). Hence ``E[z|y] = m_s + C b`` and
    ``Cov[z|y] = F F^T`` with ``F = C K^-T``, ``K K^T = I + W~^T W~``.

    Parameters
    ----------
    Y : (N, D) array, the layer's input (``x`` or the scores of the layer below)
    eta : (G, D) array
    Lambda : (G, D, R) array
    psi : (G, D) array, noise variances
    prior_means : (S, R) array, ``m_s``
    prior_covs : (S, R, R) array, ``Sigma_s``

    Returns
    -------
    ScorePosterior
    """
    N = Y.shape[0]
    G, _, R = Lambda.shape
    S = prior_means.shape[0]
    log_density = np.empty((N, G, S))
    means = np.empty((G, S, N, R))
    chol_cov = np.empty((G, S, R, R))
    prior_chol = np.linalg.cholesky(prior_covs)
    eye = np.eye(R)
    for s in range(S):
        C = prior_chol[s]
        for g in range(G):
            W = Lambda[g] @ C
            log_density[:, g, s], b = lowrank_logpdf(
                Y, eta[g] + Lambda[g] @ prior_means[s], W, psi[g]
            )
            Wt = W / np.sqrt(psi[g])[:, None]
            K = cholesky(eye + Wt.T @ Wt, lower=True, check_finite=False)
            means[g, s] = prior_means[s] + b @ C.T
            chol_cov[g, s] = solve_triangular(K, C.T, lower=True, check_finite=False).T
    return ScorePosterior(log_density=log_density, means=means, chol_cov=chol_cov)


def path_posterior(log_density: Array, pi: Array, subpath_weights: Array) -> tuple[Array, Array]:
    """Joint posterior of layer 1's component and the sub-path above it, i.e. of the path.

    Parameters
    ----------
    log_density : (N, G_1, S) array from :func:`score_posterior` on ``x``
    pi : (G_1,) array, layer-1 weights
    subpath_weights : (S,) array, weights of the sub-paths ``(g_2..g_L)``

    Returns
    -------
    log_lik : (N,) array, ``log f(x_n)`` under the global GMM
    proba : (N, n_paths) array in :func:`bayes_dgmm.path_table` order (layer 1 fastest)
    """
    with np.errstate(divide="ignore"):
        logp = log_density + np.log(pi)[None, :, None] + np.log(subpath_weights)[None, None, :]
    N = logp.shape[0]
    # (N, S, G_1) flattened C-order gives path index g_1 + G_1 * s.
    flat = logp.transpose(0, 2, 1).reshape(N, -1)
    log_lik = logsumexp(flat, axis=1)
    return log_lik, np.exp(flat - log_lik[:, None])


def layer_responsibilities(proba: Array, n_components: Sequence[int], layer: int) -> Array:
    """Posterior of (component of ``layer``, sub-path above it) given ``x``.

    Parameters
    ----------
    proba : (N, n_paths) path posteriors, :func:`bayes_dgmm.path_table` order
    n_components : ``(G_1, ..., G_L)``
    layer : int in 1..L

    Returns
    -------
    (N, G_layer, S) array, ``S = prod_{m > layer} G_m``, sub-paths in ``path_table`` order
    of ``n_components[layer:]``; summed over the layers below.
    """
    below = math.prod(n_components[: layer - 1])
    G = n_components[layer - 1]
    S = math.prod(n_components[layer:])
    # path = a + below * (g + G * s)
    tau = proba.reshape(proba.shape[0], S, G, below).sum(axis=3)
    return np.ascontiguousarray(tau.transpose(0, 2, 1))


def draw_scores(tau: Array, post: ScorePosterior, rng: np.random.Generator) -> Array:
    """deepgmm's "sample" of the scores: one draw per (component, sub-path), averaged.

    ``z_n = sum_{g,s} tau[n,g,s] (E[z|y_n,g,s] + F_{g,s} e_{n,g,s})`` with independent
    ``e ~ N(0, I)``: labels are not drawn, the draws are weighted by their posterior
    probabilities (``deep.sem.alg.3``, arrays ``z2.one``/``z.one``).

    Parameters
    ----------
    tau : (N, G, S) array of posterior probabilities (rows sum to 1)
    post : posteriors for the same (G, S)
    rng : numpy Generator

    Returns
    -------
    (N, R) array
    """
    e = rng.standard_normal(post.means.shape)  # (G, S, N, R)
    draws = post.means + e @ np.swapaxes(post.chol_cov, -1, -2)
    return np.einsum("gsn,gsni->ni", tau.transpose(1, 2, 0), draws)


# --------------------------------------------------------------------------- M-step
def m_step_component(
    Y: Array, tau: Array, means: Array, covariances: Array
) -> tuple[Array, Array, Array] | None:
    """Closed-form update of one component's ``(eta, Lambda, psi)`` from posterior moments.

    Maximises ``sum_n sum_s tau[n,s] E[log N(y_n; eta + Lambda z, diag(psi)) | y_n, s]``:
    ``[Lambda, eta] = (sum tau y [Ez; 1]^T) (sum tau [[Ezz, Ez], [Ez^T, 1]])^-1``, then ``psi``
    the expected squared residual at the new ``(eta, Lambda)``.

    Parameters
    ----------
    Y : (N, D) array
    tau : (N, S) array, ``p(g, s | x)`` for this component ``g``
    means : (S, N, R) array, ``E[z | y, g, s]``
    covariances : (S, R, R) array, ``Cov[z | y, g, s]``

    Returns
    -------
    (eta (D,), Lambda (D, R), psi (D,)) or None when the moment matrix is singular.
    """
    S, N, R = means.shape
    tau_s = np.ascontiguousarray(tau.T)[:, :, None]  # (S, N, 1)
    n_s = tau_s.sum(axis=(1, 2))  # (S,)
    weighted = tau_s * means  # (S, N, R)
    weighted_mean = weighted.sum(axis=0)  # (N, R)
    moment = np.empty((R + 1, R + 1))
    moment[:R, :R] = np.einsum("s,srt->rt", n_s, covariances) + weighted.reshape(
        S * N, R
    ).T @ means.reshape(S * N, R)
    moment[:R, R] = moment[R, :R] = weighted_mean.sum(axis=0)
    moment[R, R] = n_s.sum()
    cross = Y.T @ np.column_stack([weighted_mean, tau.sum(axis=1)])  # (D, R + 1)
    try:
        factor = cho_factor(moment, lower=True, check_finite=False)
    except LinAlgError:
        return None
    coef = cho_solve(factor, cross.T, check_finite=False).T
    Lambda, eta = coef[:, :R], coef[:, R]
    resid = Y - eta - means @ Lambda.T  # (S, N, D)
    sq = (tau_s * resid * resid).sum(axis=(0, 1))
    sq += np.einsum("s,dr,srt,dt->d", n_s, Lambda, covariances, Lambda)
    return eta, Lambda, sq / moment[R, R]


def update_layer(
    Y: Array,
    tau: Array,
    post: ScorePosterior,
    eta: Array,
    Lambda: Array,
    psi: Array,
    psi_floor: Array,
    kept: list[tuple[int, str]] | None = None,
) -> tuple[Array, Array, Array, Array]:
    """M-step of one layer: weights and every component's ``(eta, Lambda, psi)``.

    A component that holds (almost) no observation, or whose update is singular or not
    finite, keeps its current values; with ``kept`` given, ``(g, "empty")`` or
    ``(g, "singular")`` is appended to it for each such component.

    Parameters
    ----------
    Y : (N, D) array, the layer's input
    tau : (N, G, S) array, ``p(g, s | x)``
    post : posteriors of the layer's scores
    eta, Lambda, psi : (G, D), (G, D, R), (G, D) current values, kept for empty components
    psi_floor : (D,) array, lower bound of the new ``psi``

    Returns
    -------
    pi (G,), eta (G, D), Lambda (G, D, R), psi (G, D): new arrays
    """
    counts = tau.sum(axis=(0, 2))
    G = counts.shape[0]
    pi = (counts + _WEIGHT_EPS) / (counts.sum() + G * _WEIGHT_EPS)
    new_eta, new_Lambda, new_psi = eta.copy(), Lambda.copy(), psi.copy()
    covariances = post.covariances
    for g in range(G):
        if counts[g] < MIN_COMPONENT_WEIGHT:
            logger.debug("component %d holds %.3g observations: kept unchanged", g, counts[g])
            if kept is not None:
                kept.append((g, "empty"))
            continue
        out = m_step_component(Y, tau[:, g], post.means[g], covariances[g])
        if out is None or not all(np.all(np.isfinite(a)) for a in out):
            logger.debug("component %d: singular or non-finite update, kept unchanged", g)
            if kept is not None:
                kept.append((g, "singular"))
            continue
        new_eta[g], new_Lambda[g] = out[0], out[1]
        new_psi[g] = np.maximum(out[2], psi_floor)
    return pi, new_eta, new_Lambda, new_psi


def _psi_floor(Y: Array, reg_psi: float) -> Array:
    """``reg_psi * var(y_j)`` per coordinate (``reg_psi`` itself where a variance is 0)."""
    return variance_floor(Y.var(axis=0), reg_psi)


# --------------------------------------------------------------------------- public
def stochastic_em_iteration(
    X: np.ndarray,
    params: DGMMParams,
    rng: np.random.Generator,
    *,
    reg_psi: float,
    kept: list[tuple[int, int, str]] | None = None,
) -> DGMMParams:
    """One full iteration of the layer-wise stochastic EM, all layers; returns new params.

    Layer by layer from 1 to L (see the module docstring for deepgmm's algorithm and our
    departures): posteriors of the layer's scores given its input and every (component,
    sub-path) pair, with the sub-path prior from the current parameters of the layers
    above; an M-step weighted by the posterior of (component, sub-path) given ``x`` under
    the exact global GMM of the parameters at the start of the iteration; then the
    probability-weighted draw of the scores becomes the next layer's input.

    Parameters
    ----------
    X : (N, J) array of finite floats (checked by the caller)
    params : current parameters (not modified)
    rng : numpy Generator, the only source of randomness (unused when L = 1)
    reg_psi : float > 0
        Floor of the noise variances relative to the variance of the layer's input.
    kept : list, optional
        Receives ``(layer, component, "empty" | "singular")`` (1-based layer) for every
        component that could not be updated and kept its values.

    Returns
    -------
    DGMMParams, never NaN: components that cannot be updated keep their values.
    """
    if not (np.isfinite(reg_psi) and reg_psi > 0):
        raise ValueError(f"reg_psi={reg_psi!r} must be a positive finite float, e.g. 1e-10.")
    X = np.asarray(X, dtype=np.float64)
    comps = params.n_components
    L = params.n_layers
    new_layers: list[tuple[Array, Array, Array, Array]] = []
    Y = X
    proba = np.empty((0, 0))
    for l in range(L):
        prior_means, prior_covs, subpath_w = params._marginal(l + 1)
        post = score_posterior(
            Y, params.eta[l], params.Lambda[l], params.psi[l], prior_means, prior_covs
        )
        if l == 0:
            _, proba = path_posterior(post.log_density, params.pi[0], subpath_w)
        tau = layer_responsibilities(proba, comps, l + 1)
        kept_here: list[tuple[int, str]] = []
        new_layers.append(
            update_layer(
                Y,
                tau,
                post,
                params.eta[l],
                params.Lambda[l],
                params.psi[l],
                _psi_floor(Y, reg_psi),
                kept_here,
            )
        )
        if kept is not None:
            kept.extend((l + 1, g, why) for g, why in kept_here)
        if l + 1 < L:
            Y = draw_scores(tau, post, rng)
    pi, eta, Lambda, psi = zip(*new_layers, strict=True)
    return DGMMParams(pi=pi, eta=eta, Lambda=Lambda, psi=psi)


def simple_kmeans_init(
    X: np.ndarray,
    n_components: Sequence[int],
    n_factors: Sequence[int],
    rng: np.random.Generator,
) -> DGMMParams:
    """A deepgmm-style start: k-means, then a factor analysis per cluster, layer by layer.

    Layer ``l``: k-means (10 starts) on the standardised input (``x``, then the pooled
    scores), every cluster given at least 2 members (as deepgmm does); per cluster a
    maximum-likelihood factor analysis (scikit-learn) gives ``eta`` (the cluster mean),
    ``Lambda`` and ``psi``; ``pi`` are the cluster proportions; the clusters' Bartlett scores
    ``(Lambda^T Psi^-1 Lambda)^-1 Lambda^T Psi^-1 (y - eta)``, pooled, are the next layer's
    input (deepgmm's ``factanal(..., scores = "Bartlett")``).

    Parameters
    ----------
    X : (N, J) array
    n_components : ``(G_1, ..., G_L)``
    n_factors : ``(R_1, ..., R_L)``
    rng : numpy Generator (seeds k-means)

    Returns
    -------
    DGMMParams
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import FactorAnalysis
    from sklearn.exceptions import ConvergenceWarning

    Y = np.asarray(X, dtype=np.float64)
    N = Y.shape[0]
    pi, eta, Lambda, psi = [], [], [], []
    for G, R in zip(n_components, n_factors, strict=True):
        D = Y.shape[1]
        if G > 1:
            sd = Y.std(axis=0)
            Z = (Y - Y.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
            seed = int(rng.integers(2**31 - 1))
            labels = KMeans(G, n_init=10, random_state=seed).fit_predict(Z)
        else:
            labels = np.zeros(N, dtype=np.intp)
        for g in range(G):
            if np.count_nonzero(labels == g) < 2:
                labels[rng.choice(N, size=2, replace=False)] = g
        layer_eta, layer_lam, layer_psi = np.empty((G, D)), np.empty((G, D, R)), np.empty((G, D))
        scores = np.empty((N, R))
        for g in range(G):
            rows = labels == g
            with warnings.catch_warnings():
                # A rough fit is enough for a start; the EM iterations refine it.
                warnings.simplefilter("ignore", ConvergenceWarning)
                fa = FactorAnalysis(R, svd_method="lapack", max_iter=1000).fit(Y[rows])
            mean, lam = fa.mean_, fa.components_.T
            noise = np.maximum(fa.noise_variance_, 1e-12 * max(float(Y[rows].var()), 1e-300))
            layer_eta[g], layer_lam[g], layer_psi[g] = mean, lam, noise
            scores[rows] = factor_scores(Y[rows], mean, lam, noise, prior=False)  # Bartlett's
        pi.append(np.bincount(labels, minlength=G) / N)
        eta.append(layer_eta)
        Lambda.append(layer_lam)
        psi.append(layer_psi)
        Y = scores
    return DGMMParams(pi=pi, eta=eta, Lambda=Lambda, psi=psi)


def stochastic_step(
    X: Array, rng: np.random.Generator, *, reg_psi: float, constraint: str | None = None
) -> Step:
    """One iteration of deepgmm's stochastic EM (:mod:`bayes_dgmm.em.stochastic`) as a
    step; its log-likelihood is not monotone."""

    def step(params: DGMMParams) -> StepOutput:
        ll = params.score(X)
        kept: list[tuple[int, int, str]] = []
        new = stochastic_em_iteration(X, params, rng, reg_psi=reg_psi, kept=kept)
        if constraint is not None:
            new = apply_constraint(new, constraint)
        empty = tuple((l, g) for l, g, why in kept if why == "empty")
        singular = tuple((l, g) for l, g, why in kept if why == "singular")
        return StepOutput(new, ll, empty, singular)

    return step
