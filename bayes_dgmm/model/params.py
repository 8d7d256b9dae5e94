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

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bayes_dgmm._io import atomic_write_text
from bayes_dgmm._validation import RandomLike, as_generator, check_data, check_layer
from bayes_dgmm.model.density import GaussianMixtureParams, log_normalize, lowrank_logpdf, sym
from bayes_dgmm.model.names import PARAM_NAMES, n_named_layers
from bayes_dgmm.model.paths import aggregate_paths, path_index, path_table, subpath_weights
from bayes_dgmm.model.spec import validate_architecture

Array = NDArray[np.float64]

PARAMS_FORMAT = "bayes-dgmm-params/1"


#: Rows per block of ``score_samples`` and ``predict``.
SCORE_CHUNK_ROWS = 65536


def check_n_samples(n_samples: int) -> int:
    """Return ``n_samples`` if it is a positive integer, else raise ValueError."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ValueError(f"n_samples={n_samples!r} must be a positive integer.")
    return n_samples


class DGMMParams:
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

    The parameters are immutable: the arrays are read-only copies taken at construction
    (held in tuples) and attributes cannot be reassigned, so the cached marginals always
    describe the parameters and every value has passed the checks. Build changed parameters
    with :meth:`replace`, e.g. ``params.replace(psi=[s * 2 for s in params.psi])``.
    """

    pi: tuple[Array, ...]
    eta: tuple[Array, ...]
    Lambda: tuple[Array, ...]
    psi: tuple[Array, ...]
    _cache: dict[str, Any]

    def __init__(
        self,
        *,
        pi: Sequence[ArrayLike],
        eta: Sequence[ArrayLike],
        Lambda: Sequence[ArrayLike],
        psi: Sequence[ArrayLike],
    ) -> None:
        lists = {"pi": pi, "eta": eta, "Lambda": Lambda, "psi": psi}
        for name, value in lists.items():
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise TypeError(
                    f"{name}={value!r} is not a list of arrays; give one array per layer, "
                    "layer 1 first."
                )
        lengths = {k: len(v) for k, v in lists.items()}
        if len(set(lengths.values())) != 1 or lengths["pi"] == 0:
            raise ValueError(
                f"pi, eta, Lambda and psi must be non-empty lists with one entry per layer; "
                f"got lengths {lengths}."
            )
        for name, value in lists.items():
            object.__setattr__(self, name, tuple(_frozen(name, l, a) for l, a in enumerate(value)))
        object.__setattr__(self, "_cache", {})
        self._check()

    @classmethod
    def unchecked(
        cls,
        *,
        pi: Sequence[Array],
        eta: Sequence[Array],
        Lambda: Sequence[Array],
        psi: Sequence[Array],
    ) -> DGMMParams:
        """Read-only parameters from float64 arrays that the package computed itself, without
        the constructor's checks (the EM's intermediate iterates, thousands per fit: a non-finite
        iterate is refused by the E-step that evaluates it)."""
        obj = cls.__new__(cls)
        for name, value in (("pi", pi), ("eta", eta), ("Lambda", Lambda), ("psi", psi)):
            arrays = []
            for a in value:
                arr = np.array(a, dtype=np.float64, copy=True)
                arr.setflags(write=False)
                arrays.append(arr)
            object.__setattr__(obj, name, tuple(arrays))
        object.__setattr__(obj, "_cache", {})
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"DGMMParams is immutable: cannot set {name!r}; build new parameters with "
            f"params.replace({name}=...) instead."
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"DGMMParams is immutable: cannot delete {name!r}.")

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt through the constructor, so an unpickled copy is checked and read-only
        return (_rebuild, (self.pi, self.eta, self.Lambda, self.psi))

    def replace(self, **changes: Sequence[ArrayLike]) -> DGMMParams:
        """New parameters with some of ``pi``, ``eta``, ``Lambda``, ``psi`` replaced (checked)."""
        bad = sorted(set(changes) - set(_FIELDS))
        if bad:
            raise TypeError(f"replace() got {bad[0]!r}; the parameters are {', '.join(_FIELDS)}.")
        kwargs: dict[str, Any] = {k: getattr(self, k) for k in _FIELDS}
        kwargs.update(changes)
        return DGMMParams(**kwargs)

    # ------------------------------------------------------------------ structure
    def _check(self) -> None:
        n_features = self.Lambda[0].shape[1] if self.Lambda[0].ndim == 3 else None
        for l, lam in enumerate(self.Lambda, start=1):
            if lam.ndim != 3:
                raise ValueError(
                    f"Lambda[{l - 1}] (layer {l}) has shape {lam.shape}; expected "
                    "(G_l, R_{l-1}, R_l)."
                )
        comps = tuple(lam.shape[0] for lam in self.Lambda)
        dims = (self.Lambda[0].shape[1], *(lam.shape[2] for lam in self.Lambda))
        for l in range(1, len(self.Lambda)):
            if self.Lambda[l].shape[1] != dims[l]:
                raise ValueError(
                    f"Lambda[{l}] (layer {l + 1}) has shape {self.Lambda[l].shape} but layer "
                    f"{l} has {dims[l]} factors; expected ({comps[l]}, {dims[l]}, R_{l + 1})."
                )
        validate_architecture(comps, dims[1:], n_features)
        for l, (g, r_in) in enumerate(zip(comps, dims[:-1], strict=True)):
            expected = {"pi": (g,), "eta": (g, r_in), "psi": (g, r_in)}
            for name, shape in expected.items():
                arr = getattr(self, name)[l]
                if arr.shape != shape:
                    raise ValueError(
                        f"{name}[{l}] (layer {l + 1}) has shape {arr.shape}; expected {shape}."
                    )
        for name in ("pi", "eta", "Lambda", "psi"):
            for l, arr in enumerate(getattr(self, name)):
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{name}[{l}] (layer {l + 1}) contains NaN or inf values.")
        for l, (p, s) in enumerate(zip(self.pi, self.psi, strict=True)):
            if np.any(p < 0) or not np.isclose(p.sum(), 1.0, rtol=0, atol=1e-8):
                raise ValueError(
                    f"pi[{l}] (layer {l + 1}) = {p} is not a probability vector (sum "
                    f"{p.sum():.6g}); use non-negative weights summing to 1."
                )
            if np.any(s <= 0):
                raise ValueError(
                    f"psi[{l}] (layer {l + 1}) has a non-positive variance ({s.min():.3g}); "
                    "psi holds variances, which must be > 0."
                )

    @property
    def n_layers(self) -> int:
        return len(self.pi)

    @property
    def n_components(self) -> tuple[int, ...]:
        """Components per layer ``(G_1, ..., G_L)``."""
        return tuple(int(p.shape[0]) for p in self.pi)

    @property
    def n_factors(self) -> tuple[int, ...]:
        """Latent dimensions ``(R_1, ..., R_L)``."""
        return tuple(int(lam.shape[2]) for lam in self.Lambda)

    @property
    def n_features(self) -> int:
        return int(self.Lambda[0].shape[1])

    @property
    def n_paths(self) -> int:
        return math.prod(self.n_components)

    @property
    def paths(self) -> NDArray[np.intp]:
        """(n_paths, L) int array of the components of every path (see :func:`path_table`)."""
        return path_table(self.n_components)

    def path_weights(self) -> Array:
        """Global path weights ``pi_g = prod_l pi^(l)_{g_l}`` (eq. 4), shape (n_paths,)."""
        return subpath_weights(self.pi)

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
        G1 = self.n_components[0]
        out = np.empty((X.shape[0], self.n_paths))
        for s in range(m1.shape[0]):
            for g in range(G1):
                lam, p = self.Lambda[0][g], g + G1 * s
                mean = self.eta[0][g] + lam @ m1[s]
                out[:, p] = lowrank_logpdf(X, mean, lam @ C1[s], self.psi[0][g])[0] + log_w[p]
        return out

    def score_samples(self, X: ArrayLike) -> Array:
        """Log density of each row of ``X`` under the DGMM, shape (N,); computed
        :data:`SCORE_CHUNK_ROWS` rows at a time, so memory beyond the result is flat in N."""
        Xa = check_data(X, n_features=self.n_features)
        out = np.empty(Xa.shape[0])
        scale = max(float(np.max(np.abs(a))) for a in self.Lambda + self.psi)
        advice = (
            f"(largest loading or variance {scale:.3g}); rescale the parameters (and X) to "
            "moderate values."
        )
        try:
            with np.errstate(invalid="ignore", over="ignore"):
                for start in range(0, Xa.shape[0], SCORE_CHUNK_ROWS):
                    rows = slice(start, start + SCORE_CHUNK_ROWS)
                    out[rows] = log_normalize(self._log_prob_paths(Xa[rows]))[0]
        except np.linalg.LinAlgError:
            raise ValueError(
                f"a covariance of the model is not positive definite in float64 {advice}"
            ) from None
        bad = np.flatnonzero(np.isnan(out))
        if bad.size:
            raise ValueError(
                f"the log density of X row {bad[0] + 1} (counted from 1; {bad.size} such rows) "
                f"is NaN: a covariance overflows float64 {advice}"
            )
        return out

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
        return self._proba(check_data(X, n_features=self.n_features), layer, 0)

    def _proba(self, X: Array, layer: int | None, offset: int) -> Array:
        """:meth:`predict_proba` of validated rows, the first being row ``offset``."""
        log_prob = self._log_prob_paths(X)
        bad = ~np.any(np.isfinite(log_prob), axis=1) | np.any(np.isnan(log_prob), axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"X row {offset + i + 1} (counted from 1; {int(bad.sum())} such rows) has no "
                "finite log density under any path (largest magnitude "
                f"{float(np.max(np.abs(X[i]))):.3g}): its values are too far from the model "
                "for float64; rescale X as the training data were, or drop the row."
            )
        proba = log_normalize(log_prob)[1]
        if layer is None:
            return proba
        return aggregate_paths(proba, self.n_components, layer)

    def predict(self, X: ArrayLike, layer: int | None = None) -> NDArray[np.intp]:
        """Bayes classifier: most probable path (or component of layer ``layer``), computed
        :data:`SCORE_CHUNK_ROWS` rows at a time."""
        Xa = check_data(X, n_features=self.n_features)
        out = np.empty(Xa.shape[0], dtype=np.intp)
        for start in range(0, Xa.shape[0], SCORE_CHUNK_ROWS):
            rows = slice(start, start + SCORE_CHUNK_ROWS)
            out[rows] = np.argmax(self._proba(Xa[rows], layer, start), axis=1)
        return out

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

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(
        cls,
        n_features: int,
        n_components: Sequence[int],
        n_factors: Sequence[int],
        random_state: RandomLike = None,
        *,
        separation: float = 3.0,
    ) -> DGMMParams:
        """Random well-conditioned parameters.

        Intercepts are drawn with scale ``separation`` (in units of the noise sd), loadings
        are standard normal scaled by ``1/sqrt(R_l)``, noise variances uniform in [0.3, 1]
        and weights from a Dirichlet(5) so no component is negligible.
        """
        comps, facts = validate_architecture(n_components, n_factors, n_features)
        rng = as_generator(random_state)
        dims = (n_features, *facts)
        pi, eta, lam, psi = [], [], [], []
        for l, g in enumerate(comps):
            r_in, r_out = dims[l], dims[l + 1]
            pi.append(rng.dirichlet(np.full(g, 5.0)))
            eta.append(rng.normal(0.0, separation, size=(g, r_in)))
            lam.append(rng.normal(0.0, 1.0, size=(g, r_in, r_out)) / np.sqrt(r_out))
            psi.append(rng.uniform(0.3, 1.0, size=(g, r_in)))
        return cls(pi=pi, eta=eta, Lambda=lam, psi=psi)

    def anchored(self) -> DGMMParams:
        """The same distribution with every latent layer's location and scale pinned.

        The likelihood is unchanged when the scores ``z^(l)`` of an intermediate layer
        (``1 <= l < L``) are moved to ``a * (z^(l) + b)`` (``a > 0`` per factor) and the
        layers on either side absorb it: ``eta_(l+1) -> a (eta_(l+1) + b)``,
        ``Lambda_(l+1) -> diag(a) Lambda_(l+1)``, ``psi_(l+1) -> a**2 psi_(l+1)``,
        ``eta_l -> eta_l - Lambda_l b``, ``Lambda_l -> Lambda_l diag(1 / a)``. This returns the
        member of that family whose layers ``l >= 2`` have intercepts summing to zero over the
        components and noise variances with geometric mean one over the components, per
        factor (the anchoring of :func:`bayes_dgmm.bayes.model.build_model`). Layers are
        processed from the top down, so anchoring a layer leaves the ones above anchored.
        """
        eta, lam, psi = list(self.eta), list(self.Lambda), list(self.psi)
        for l in range(self.n_layers - 1, 0, -1):  # 0-based index of layers L .. 2
            b = -eta[l].mean(axis=0)
            a = np.exp(-0.5 * np.log(psi[l]).mean(axis=0))
            eta[l] = a * (eta[l] + b)
            lam[l] = a[None, :, None] * lam[l]
            psi[l] = a**2 * psi[l]
            eta[l - 1] = eta[l - 1] - lam[l - 1] @ b
            lam[l - 1] = lam[l - 1] / a[None, None, :]
        return DGMMParams(pi=self.pi, eta=eta, Lambda=lam, psi=psi)

    def copy(self) -> DGMMParams:
        """Equal parameters with their own (read-only) arrays and an empty cache."""
        return DGMMParams(pi=self.pi, eta=self.eta, Lambda=self.Lambda, psi=self.psi)

    @classmethod
    def from_named(cls, values: Any, *, renormalise: bool = False) -> DGMMParams:
        """Parameters from per-layer names ``pi_l``, ``eta_l``, ``Lambda_l``, ``psi_l`` (l from 1).

        ``values`` is any mapping of arrays with those keys: a PyMC point, one posterior draw
        (an ``xarray.Dataset`` at one chain and draw). Values are taken as they are, so
        ``from_named(p.to_named()) == p`` exactly; ``renormalise=True`` divides each layer's
        weights by their sum (simplex transforms of samplers leave round-off).
        """
        n = n_named_layers(values)
        if n == 0:
            raise ValueError(
                f"values has no 'pi_1' (keys {sorted(map(str, values))[:8]}); pass a point or "
                "posterior draw with variables pi_l, eta_l, Lambda_l, psi_l."
            )

        def get(name: str, l: int) -> Array:
            return np.ascontiguousarray(values[f"{name}_{l}"], dtype=np.float64)

        layers = range(1, n + 1)
        pi = [get("pi", l) for l in layers]
        return cls(
            pi=[p / p.sum() for p in pi] if renormalise else pi,
            eta=[get("eta", l) for l in layers],
            Lambda=[get("Lambda", l) for l in layers],
            psi=[get("psi", l) for l in layers],
        )

    def to_named(self) -> dict[str, Array]:
        """The inverse of :meth:`from_named`: ``{"pi_1": ..., "eta_1": ..., ...}``."""
        return {
            f"{name}_{l}": arr.copy()
            for name in PARAM_NAMES
            for l, arr in enumerate(getattr(self, name), start=1)
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python representation (lists of floats), exact through JSON."""
        return {
            "format": PARAMS_FORMAT,
            "n_components": list(self.n_components),
            "n_factors": list(self.n_factors),
            "n_features": self.n_features,
            "pi": [a.tolist() for a in self.pi],
            "eta": [a.tolist() for a in self.eta],
            "Lambda": [a.tolist() for a in self.Lambda],
            "psi": [a.tolist() for a in self.psi],
        }

    @classmethod
    def from_dict(cls, data: Any) -> DGMMParams:
        """Parameters from :meth:`to_dict`'s mapping; its sizes must agree with its arrays."""
        if not isinstance(data, dict):
            kind = {type(None): "null", list: "array", str: "string", bool: "boolean"}.get(
                type(data), "number"
            )
            raise ValueError(
                f"the parameters are a JSON {kind} ({str(data)[:40]!r}), not an object; this is "
                "not a DGMMParams file written by bayes-dgmm."
            )
        if data.get("format") != PARAMS_FORMAT:
            raise ValueError(
                f"format={data.get('format')!r} is not {PARAMS_FORMAT!r}; this is not a "
                "DGMMParams file written by bayes-dgmm."
            )
        missing = [k for k in _FIELDS if k not in data]
        if missing:
            raise ValueError(
                f"the parameters lack {missing[0]!r}; a DGMMParams file holds "
                f"{', '.join(_FIELDS)}: the file is damaged, restore or rewrite it."
            )
        params = cls(pi=data["pi"], eta=data["eta"], Lambda=data["Lambda"], psi=data["psi"])
        stated = {
            "n_components": lambda v: tuple(v),
            "n_factors": lambda v: tuple(v),
            "n_features": lambda v: v,
        }
        for key, norm in stated.items():
            if key in data:
                actual = getattr(params, key)
                try:
                    given = norm(data[key])
                except TypeError:
                    given = data[key]
                if given != actual:
                    raise ValueError(
                        f"{key}={data[key]!r} contradicts the arrays, which have {key}="
                        f"{actual!r}; the file is inconsistent: fix or drop {key!r}."
                    )
        return params

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text (floats written with repr, so the round trip is exact); saved if ``path``."""
        text = json.dumps(self.to_dict())
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> DGMMParams:
        """Read parameters from JSON text or a file written by :meth:`to_json`."""
        path: Path | None = None
        if isinstance(text_or_path, Path):
            path = text_or_path
        elif not isinstance(text_or_path, str):
            raise TypeError(
                f"text_or_path={text_or_path!r} is neither JSON text nor a path; pass the "
                "text written by to_json or the path of its file."
            )
        elif text_or_path.lstrip("\ufeff \t\r\n").startswith("{"):
            pass  # JSON text
        elif Path(text_or_path).is_file():
            path = Path(text_or_path)
        else:
            try:
                json.loads(text_or_path)
            except json.JSONDecodeError:
                path = Path(text_or_path)  # not JSON: the path of a file
        text = _read_params_file(path) if path is not None else text_or_path.lstrip("\ufeff")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"text_or_path={str(path)!r} is " if path is not None else ""
            raise ValueError(f"{where}not valid JSON ({exc}); the file may be truncated.") from None
        return cls.from_dict(data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DGMMParams):
            return NotImplemented
        return self.n_components == other.n_components and all(
            np.array_equal(a, b)
            for name in ("pi", "eta", "Lambda", "psi")
            for a, b in zip(getattr(self, name), getattr(other, name), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"DGMMParams(n_features={self.n_features}, n_components={self.n_components}, "
            f"n_factors={self.n_factors})"
        )


_FIELDS = PARAM_NAMES


def _frozen(name: str, layer: int, value: ArrayLike) -> Array:
    """A read-only float64 copy of ``value``, or a clear error naming ``name[layer]``."""
    where = f"{name}[{layer}] (layer {layer + 1})"
    try:
        raw = np.asarray(value)
        if np.iscomplexobj(raw):
            raise ValueError(
                f"{where} is complex ({raw.dtype}); parameters are real: pass real arrays."
            )
        arr = np.array(raw, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        if "is complex" in str(exc):
            raise
        raise TypeError(
            f"{where} could not be read as a float array ({exc}); pass a numeric array."
        ) from None
    arr.setflags(write=False)
    return arr


def _read_params_file(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(
            f"text_or_path={str(path)!r}: no such file, and not JSON text; give the path of a "
            "file written by DGMMParams.to_json or its text."
        )
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"text_or_path={str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "give a file written by DGMMParams.to_json."
        ) from None


def _rebuild(pi: Any, eta: Any, Lambda: Any, psi: Any) -> DGMMParams:
    return DGMMParams(pi=pi, eta=eta, Lambda=Lambda, psi=psi)
