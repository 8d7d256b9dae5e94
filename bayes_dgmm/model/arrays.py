"""The per-layer arrays of a DGMM, read-only and checked: the container under
:class:`~bayes_dgmm.model.params.DGMMParams`.

:class:`LayerArrays` holds ``pi``, ``eta``, ``Lambda`` and ``psi`` (one array per layer, layer 1
first) as read-only float64 copies, refuses reassignment, and answers the architecture
(``n_components``, ``n_factors``, ``n_features``, the paths). The checks are here too:
:func:`check_layers` (shapes, finiteness, probability vectors, positive variances).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bayes_dgmm._validation import RandomLike, as_generator
from bayes_dgmm.model.names import PARAM_NAMES
from bayes_dgmm.model.paths import path_table, subpath_weights
from bayes_dgmm.model.spec import validate_architecture

Array = NDArray[np.float64]


def check_n_samples(n_samples: int) -> int:
    """Return ``n_samples`` if it is a positive integer, else raise ValueError."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ValueError(f"n_samples={n_samples!r} must be a positive integer.")
    return n_samples


class LayerArrays:
    """The parameter arrays of every layer, read-only (see :class:`DGMMParams` for their
    meaning).

    Parameters
    ----------
    pi, eta, Lambda, psi : one array per layer, layer 1 first; checked by
        :func:`check_layers`

    The arrays are read-only copies taken at construction (held in tuples) and attributes
    cannot be reassigned, so a cache of derived quantities (``_cache``) always describes the
    parameters. Build changed parameters with :meth:`replace`.
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
        check_layers(self.pi, self.eta, self.Lambda, self.psi)

    @classmethod
    def unchecked(
        cls,
        *,
        pi: Sequence[Array],
        eta: Sequence[Array],
        Lambda: Sequence[Array],
        psi: Sequence[Array],
    ) -> Self:
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

    def replace(self, **changes: Sequence[ArrayLike]) -> Self:
        """New parameters with some of ``pi``, ``eta``, ``Lambda``, ``psi`` replaced (checked)."""
        bad = sorted(set(changes) - set(PARAM_NAMES))
        if bad:
            raise TypeError(
                f"replace() got {bad[0]!r}; the parameters are {', '.join(PARAM_NAMES)}."
            )
        kwargs: dict[str, Any] = {k: getattr(self, k) for k in PARAM_NAMES}
        kwargs.update(changes)
        return type(self)(**kwargs)

    def copy(self) -> Self:
        """Equal parameters with their own (read-only) arrays and an empty cache."""
        return type(self)(pi=self.pi, eta=self.eta, Lambda=self.Lambda, psi=self.psi)

    @classmethod
    def random(
        cls,
        n_features: int,
        n_components: Sequence[int],
        n_factors: Sequence[int],
        random_state: RandomLike = None,
        *,
        separation: float = 3.0,
    ) -> Self:
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

    # ------------------------------------------------------------------ structure
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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerArrays):
            return NotImplemented
        return self.n_components == other.n_components and all(
            np.array_equal(a, b)
            for name in PARAM_NAMES
            for a, b in zip(getattr(self, name), getattr(other, name), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_features={self.n_features}, "
            f"n_components={self.n_components}, n_factors={self.n_factors})"
        )


def check_layers(
    pi: Sequence[Array], eta: Sequence[Array], Lambda: Sequence[Array], psi: Sequence[Array]
) -> None:
    """Raise ValueError unless the arrays make a DGMM: shapes that chain from layer to layer
    (``Lambda[l]`` is ``(G_l, R_{l-1}, R_l)``), finite values, weights that are probability
    vectors and positive noise variances."""
    n_features = Lambda[0].shape[1] if Lambda[0].ndim == 3 else None
    for l, lam in enumerate(Lambda, start=1):
        if lam.ndim != 3:
            raise ValueError(
                f"Lambda[{l - 1}] (layer {l}) has shape {lam.shape}; expected "
                "(G_l, R_{l-1}, R_l)."
            )
    comps = tuple(lam.shape[0] for lam in Lambda)
    dims = (Lambda[0].shape[1], *(lam.shape[2] for lam in Lambda))
    for l in range(1, len(Lambda)):
        if Lambda[l].shape[1] != dims[l]:
            raise ValueError(
                f"Lambda[{l}] (layer {l + 1}) has shape {Lambda[l].shape} but layer "
                f"{l} has {dims[l]} factors; expected ({comps[l]}, {dims[l]}, R_{l + 1})."
            )
    validate_architecture(comps, dims[1:], n_features)
    arrays = {"pi": pi, "eta": eta, "Lambda": Lambda, "psi": psi}
    for l, (g, r_in) in enumerate(zip(comps, dims[:-1], strict=True)):
        expected = {"pi": (g,), "eta": (g, r_in), "psi": (g, r_in)}
        for name, shape in expected.items():
            arr = arrays[name][l]
            if arr.shape != shape:
                raise ValueError(
                    f"{name}[{l}] (layer {l + 1}) has shape {arr.shape}; expected {shape}."
                )
    for name, layers in arrays.items():
        for l, arr in enumerate(layers):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name}[{l}] (layer {l + 1}) contains NaN or inf values.")
    for l, (p, s) in enumerate(zip(pi, psi, strict=True)):
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
