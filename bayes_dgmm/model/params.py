"""DGMM parameters in the notation of Viroli & McLachlan (2019) and Selosse et al. (2020).

Layer ``l = 1..L`` (layer 1 next to the data) has ``G_l`` components. Component ``g`` maps the
scores ``z^(l)`` (dimension ``R_l``) to ``z^(l-1)`` (dimension ``R_{l-1}``, ``R_0 = J``)::

    z^(l-1) = eta^(l)_g + Lambda^(l)_g z^(l) + u,   u ~ N(0, diag(psi^(l)_g)),   g ~ pi^(l)

with ``z^(L) ~ N(0, I)`` and ``x = z^(0)``. Marginally ``x`` is a Gaussian mixture over the
paths ``(g_1, ..., g_L)`` (the *global GMM*, eqs. 3-6) and every ``z^(l)`` is a Gaussian
mixture over the sub-paths ``(g_{l+1}, ..., g_L)`` (eqs. 7-10).

Paths are enumerated in one place, :func:`path_table`, with layer 1 varying fastest: path
index ``p = g_1 + G_1 (g_2 + G_2 (g_3 + ...))`` (0-based). This is the order of R's
``expand.grid`` used by the study, so the study's 1-based path ``k`` is our path ``k - 1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bayes_dgmm._validation import RandomLike, as_generator, check_data, check_layer
from bayes_dgmm.model import params_io, scoring
from bayes_dgmm.model.arrays import LayerArrays, check_n_samples
from bayes_dgmm.model.density import GaussianMixtureParams, sym
from bayes_dgmm.model.names import PARAM_NAMES
from bayes_dgmm.model.params_io import PARAMS_FORMAT
from bayes_dgmm.model.paths import path_index, path_table, subpath_weights
from bayes_dgmm.model.scoring import SCORE_CHUNK_ROWS

Array = NDArray[np.float64]

__all__ = ["PARAMS_FORMAT", "SCORE_CHUNK_ROWS", "DGMMParams", "check_n_samples"]


class DGMMParams(LayerArrays):
    """Parameters of a deep Gaussian mixture model.

    Parameters
    ----------
    pi : list over layers of (G_l,) arrays
        Component weights ``pi^(l)``, each summing to one.
    eta : list over layers of (G_l, R_{l-1}) arrays
        Component intercepts ``eta^(l)_g``.
    Lambda : list over layers of (G_l, R_{l-1}, R_l) arrays
        Factor loadings ``Lambda^(l)_g``.
    psi : list over layers of (G_l, R_{l-1}) arrays
        Diagonal noise *variances* ``psi^(l)_g`` (strictly positive).

    Layer 1 (next to the data) comes first in every list; ``R_0 = J``.

    The parameters are immutable (:class:`~bayes_dgmm.model.arrays.LayerArrays`): the arrays
    are read-only copies taken at construction and attributes cannot be reassigned, so the
    cached marginals always describe the parameters and every value has passed the checks.
    Build changed parameters with :meth:`replace`, e.g.
    ``params.replace(psi=[s * 2 for s in params.psi])``.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt through the constructor, so an unpickled copy is checked and read-only
        return (_rebuild, (self.pi, self.eta, self.Lambda, self.psi))

    # ------------------------------------------------------------------ marginals
    def _marginal(self, level: int) -> tuple[Array, Array, Array]:
        """Mean, covariance and weight of ``z^(level)`` per sub-path ``(g_{level+1}..g_L)``.

        Returns (means (S, R), covariances (S, R, R), weights (S,)), sub-paths ordered as
        :func:`path_table` of ``n_components[level:]``.
        """
        key = f"marginal{level}"
        if key not in self._cache:
            L = self.n_layers
            if level == L:
                R = self.n_factors[-1]
                out = (np.zeros((1, R)), np.eye(R)[None], np.ones(1))
            else:
                m, S, _ = self._marginal(level + 1)
                eta, lam, psi = self.eta[level], self.Lambda[level], self.psi[level]
                # (S, G, R): index g + G * s flattens the (s, g) grid with g fastest.
                means = eta[None] + np.einsum("gij,sj->sgi", lam, m)
                covs = np.einsum("gij,sjk,glk->sgil", lam, S, lam)
                covs = sym(covs) + np.einsum("gi,ij->gij", psi, np.eye(psi.shape[1]))[None]
                n_sub = m.shape[0] * lam.shape[0]
                out = (
                    means.reshape(n_sub, -1),
                    covs.reshape(n_sub, *covs.shape[2:]),
                    subpath_weights(self.pi[level:]),
                )
            self._cache[key] = out
        return self._cache[key]

    def layer_gmm(self, layer: int) -> GaussianMixtureParams:
        """Marginal distribution of the scores ``z^(layer)`` (eqs. 7-10).

        Parameters
        ----------
        layer : int in 0..L
            0 gives the global GMM of ``x``; ``L`` gives the standard normal of the top scores.
        """
        layer = check_layer(layer, self.n_layers, allow_zero=True)
        means, covs, weights = self._marginal(layer)
        return GaussianMixtureParams(
            weights=weights.copy(),
            means=means.copy(),
            covariances=covs.copy(),
            paths=path_table(self.n_components[layer:]),
        )

    def global_gmm(self) -> GaussianMixtureParams:
        """The global GMM of ``x``: path weights, means and covariances (eqs. 3-6)."""
        return self.layer_gmm(0)

    # ------------------------------------------------------------------ densities
    def _level1_factors(self) -> tuple[Array, Array, Array]:
        """Means, Cholesky factors and weights of ``z^(1)`` per sub-path ``(g_2..g_L)``."""
        key = "level1_chol"
        if key not in self._cache:
            m, S, w = self._marginal(1)
            C = np.linalg.cholesky(S)
            self._cache[key] = (m, C, w)
        return self._cache[key]

    def log_prob_paths(self, X: ArrayLike) -> Array:
        """Joint log density ``log pi_p + log N(x; mu_p, Sigma_p)`` of every row and path.

        The path covariance is ``Sigma_p = diag(psi1) + W W^T`` with ``W = Lambda1 C``, where
        ``C C^T`` is the covariance of ``z^(1)`` on the sub-path; the density uses Woodbury and
        the determinant lemma (:func:`bayes_dgmm.model.density.lowrank_logpdf`), so its cost is
        linear in the number of features and memory is O(N x paths).

        Parameters
        ----------
        X : (N, J) array

        Returns
        -------
        (N, n_paths) array, columns in :func:`path_table` order.
        """
        Xa = check_data(X, n_features=self.n_features)
        return self._log_prob_paths(Xa)

    def _log_prob_paths(self, X: Array) -> Array:
        m1, C1, _ = self._level1_factors()
        log_w = np.log(self.path_weights())
        return scoring.paths_log_density(X, self.eta[0], self.Lambda[0], self.psi[0], m1, C1, log_w)

    def score_samples(self, X: ArrayLike) -> Array:
        """Log density of each row of ``X`` under the DGMM, shape (N,); computed
        :data:`~bayes_dgmm.model.scoring.SCORE_CHUNK_ROWS` rows at a time, so memory beyond
        the result is flat in N."""
        Xa = check_data(X, n_features=self.n_features)
        scale = max(float(np.max(np.abs(a))) for a in self.Lambda + self.psi)
        return scoring.log_density_rows(self._log_prob_paths, Xa, scale)

    def score(self, X: ArrayLike) -> float:
        """Total log-likelihood of ``X``."""
        return float(np.sum(self.score_samples(X)))

    def predict_proba(self, X: ArrayLike, layer: int | None = None) -> Array:
        """Posterior probabilities of the paths, or of layer ``layer``'s components.

        Parameters
        ----------
        X : (N, J) array
        layer : int in 1..L, optional
            None gives path posteriors (N, n_paths); ``l`` gives (N, G_l) by summing the
            path posteriors over the paths through each component of layer ``l``.
        """
        Xa = check_data(X, n_features=self.n_features)
        return scoring.path_posteriors(self._log_prob_paths, Xa, self.n_components, layer)

    def predict(self, X: ArrayLike, layer: int | None = None) -> NDArray[np.intp]:
        """Bayes classifier: most probable path (or component of layer ``layer``), computed
        in row blocks."""
        Xa = check_data(X, n_features=self.n_features)
        return scoring.predict_rows(self._log_prob_paths, Xa, self.n_components, layer)

    def sample(
        self, n_samples: int, random_state: RandomLike = None
    ) -> tuple[Array, NDArray[np.intp]]:
        """Draw ``n_samples`` observations; returns ``(X, path)`` (see :func:`simulate`)."""
        scores, labels = self.draw(n_samples, as_generator(random_state))
        return scores[0], path_index(labels, self.n_components)

    def draw(
        self, n_samples: int, rng: np.random.Generator
    ) -> tuple[list[Array], NDArray[np.intp]]:
        """The generative process, top layer first (Viroli & McLachlan 2019, sec. 2).

        ``z^(L) ~ N(0, I)``; for ``l = L..1``: ``g_l ~ pi^(l)`` independently and
        ``z^(l-1) = eta^(l)_{g_l} + Lambda^(l)_{g_l} z^(l) + sqrt(psi^(l)_{g_l}) * e``.

        Returns
        -------
        scores : list of L + 1 arrays ``z^(0) = X`` (N, J), ``z^(1)`` (N, R_1), ...
        labels : (N, L) int array, the 0-based component of every layer (layer 1 first)
        """
        check_n_samples(n_samples)
        L = self.n_layers
        z = rng.standard_normal((n_samples, self.n_factors[-1]))
        scores: list[Array] = [z]
        labels = np.empty((n_samples, L), dtype=np.intp)
        for l in range(L - 1, -1, -1):
            g = rng.choice(self.n_components[l], size=n_samples, p=self.pi[l])
            labels[:, l] = g
            z_below = np.sqrt(self.psi[l][g]) * rng.standard_normal(
                (n_samples, self.eta[l].shape[1])
            )
            for k in range(self.n_components[l]):
                rows = g == k
                z_below[rows] += self.eta[l][k] + z[rows] @ self.Lambda[l][k].T
            z = z_below
            scores.insert(0, z)
        return scores, labels

    def anchored(self, pin: str = "noise") -> DGMMParams:
        """The same distribution with every latent layer's location and scale pinned.

        The likelihood is unchanged when the scores ``z^(l)`` of an intermediate layer
        (``1 <= l < L``) are moved to ``a * (z^(l) + b)`` (``a > 0`` per factor) and the
        layers on either side absorb it: ``eta_(l+1) -> a (eta_(l+1) + b)``,
        ``Lambda_(l+1) -> diag(a) Lambda_(l+1)``, ``psi_(l+1) -> a**2 psi_(l+1)``,
        ``eta_l -> eta_l - Lambda_l b``, ``Lambda_l -> Lambda_l diag(1 / a)``. This returns the
        member of that family whose layers ``l >= 2`` have intercepts summing to zero over the
        components and noise variances with geometric mean one over the components, per
        factor (the noise gauge of :mod:`bayes_dgmm.model.gauge`); ``pin="total"`` pins each
        row's total variance ``|Lambda_g[r]|^2 + psi_g[r]`` instead (the standardised gauge).
        Layers are processed from the top down, so anchoring one leaves those above anchored.
        """
        eta, lam, psi = list(self.eta), list(self.Lambda), list(self.psi)
        for l in range(self.n_layers - 1, 0, -1):  # 0-based index of layers L .. 2
            b = -eta[l].mean(axis=0)
            spread = psi[l] if pin == "noise" else np.sum(lam[l] ** 2, axis=-1) + psi[l]
            a = np.exp(-0.5 * np.log(spread).mean(axis=0))
            eta[l] = a * (eta[l] + b)
            lam[l] = a[None, :, None] * lam[l]
            psi[l] = a**2 * psi[l]
            eta[l - 1] = eta[l - 1] - lam[l - 1] @ b
            lam[l - 1] = lam[l - 1] / a[None, None, :]
        return DGMMParams(pi=self.pi, eta=eta, Lambda=lam, psi=psi)

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_named(cls, values: Any, *, renormalise: bool = False) -> DGMMParams:
        """Parameters from per-layer names ``pi_l``, ``eta_l``, ``Lambda_l``, ``psi_l`` (l from 1).

        ``values`` is any mapping of arrays with those keys: a PyMC point, one posterior draw
        (an ``xarray.Dataset`` at one chain and draw). Values are taken as they are, so
        ``from_named(p.to_named()) == p`` exactly; ``renormalise=True`` divides each layer's
        weights by their sum (simplex transforms of samplers leave round-off).
        """
        return cls(**params_io.fields_from_named(values, renormalise=renormalise))

    def to_named(self) -> dict[str, Array]:
        """The inverse of :meth:`from_named`: ``{"pi_1": ..., "eta_1": ..., ...}``."""
        return params_io.named_arrays(self._fields())

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python representation (lists of floats), exact through JSON."""
        return params_io.to_dict(self._fields())

    @classmethod
    def from_dict(cls, data: Any) -> DGMMParams:
        """Parameters from :meth:`to_dict`'s mapping; its sizes must agree with its arrays."""
        params = cls(**params_io.fields_from_dict(data))
        sizes = {k: getattr(params, k) for k in ("n_components", "n_factors", "n_features")}
        params_io.check_stated_sizes(data, sizes)
        return params

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text (floats written with repr, so the round trip is exact); saved if ``path``."""
        return params_io.write_json(self.to_dict(), path)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> DGMMParams:
        """Read parameters from JSON text or a file written by :meth:`to_json`."""
        return cls.from_dict(params_io.read_json(text_or_path))

    def _fields(self) -> dict[str, tuple[Array, ...]]:
        return {name: getattr(self, name) for name in PARAM_NAMES}


def _rebuild(pi: Any, eta: Any, Lambda: Any, psi: Any) -> DGMMParams:
    return DGMMParams(pi=pi, eta=eta, Lambda=Lambda, psi=psi)
