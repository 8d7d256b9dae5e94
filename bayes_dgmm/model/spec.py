"""Model specifications: architecture, priors and fit settings, read from TOML files.

A DGMM architecture is the number of components per layer, ``n_components = (G_1, ..., G_L)``,
and the latent dimension per layer, ``n_factors = (R_1, ..., R_L)``, with
``J = R_0 > R_1 > ... > R_L >= 1`` (layer 1 is next to the data). The study's architecture
ships as ``models/icbinb-sec3.toml``; ``load_spec("icbinb-sec3")`` reads it.
"""

from __future__ import annotations

import itertools
import math
import numbers
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayes_dgmm.model.priors import resolve_priors

SPEC_FORMAT = 1
#: The keys of a spec file, of its [architecture] table and of its [fit] table (the EM
#: start of the Bayesian fits).
SPEC_KEYS = ("format", "name", "description", "architecture", "priors", "fit")
ARCH_KEYS = ("n_components", "n_factors", "n_features")
FIT_KEYS = ("n_init", "max_iter")


def validate_architecture(
    n_components: Sequence[int] | int,
    n_factors: Sequence[int] | int,
    n_features: int | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Check an architecture and return it as two tuples of ints.

    Parameters
    ----------
    n_components : sequence of int, length L
        Components per layer, layer 1 first; each >= 1.
    n_factors : sequence of int, length L
        Latent dimension per layer; strictly decreasing, each >= 1.
    n_features : int, optional
        Number of observed features J; when given, ``n_factors[0] < J`` is required.

    Raises
    ------
    ValueError, TypeError
        Naming the parameter, its value and what to try.
    """
    comps = _int_tuple("n_components", n_components)
    facts = _int_tuple("n_factors", n_factors)
    if len(comps) == 0:
        raise ValueError("n_components=() has no layer; give at least one layer, e.g. (3,).")
    if len(comps) != len(facts):
        raise ValueError(
            f"n_components={comps} has {len(comps)} layers but n_factors={facts} has "
            f"{len(facts)}; give one latent dimension per layer."
        )
    for name, values in (("n_components", comps), ("n_factors", facts)):
        bad = [v for v in values if v < 1]
        if bad:
            raise ValueError(f"{name}={values} contains {bad[0]}; every entry must be >= 1.")
    for left, right in itertools.pairwise(facts):
        if right >= left:
            raise ValueError(
                f"n_factors={facts} is not strictly decreasing ({left} then {right}); each "
                "layer must have fewer latent dimensions than the one below it."
            )
    if n_features == 1:
        raise ValueError(
            "n_features=1: the data have a single feature; a DGMM needs two or more (its "
            "layer 1 has fewer factors than features, and at least one)."
        )
    if n_features is not None and facts[0] >= n_features:
        raise ValueError(
            f"n_factors={facts} starts at {facts[0]}, not below the number of features "
            f"n_features={n_features}; use at most {n_features - 1} factors in layer 1."
        )
    return comps, facts


def _int_tuple(name: str, value: Sequence[int] | int) -> tuple[int, ...]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value,)  # type: ignore[assignment]
    if isinstance(value, str | bytes):
        raise TypeError(f"{name}={value!r} is not a sequence of integers; give e.g. {name}=(3, 2).")
    if isinstance(value, set | frozenset | Mapping):
        raise TypeError(
            f"{name}={value!r} has no order; give the layers in order, e.g. {name}=(3, 2)."
        )
    try:
        items = list(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{name}={value!r} is not a sequence of integers; give e.g. {name}=(3, 2)."
        ) from None
    out: list[int] = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not float(v).is_integer():
            raise TypeError(
                f"{name}={tuple(items)} contains {v!r}; every entry must be an integer."
            )
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True)
class DGMMSpec:
    """A DGMM architecture with optional priors and fit settings.

    Parameters
    ----------
    n_components : tuple of int
        Components per layer ``(G_1, ..., G_L)``, layer 1 next to the data.
    n_factors : tuple of int
        Latent dimensions ``(R_1, ..., R_L)``, strictly decreasing.
    name : str
        Identifier stored with saved fits (a load under another spec is refused).
    n_features : int, optional
        Number of observed features J the spec is meant for.
    priors, fit : mapping
        Prior scales of the Bayesian model (keys of
        :data:`~bayes_dgmm.model.priors.PRIOR_DEFAULTS`) and ``n_init``/``max_iter`` of the
        EM that starts the Bayesian fits; unknown keys and bad values are refused at once.
    """

    n_components: tuple[int, ...]
    n_factors: tuple[int, ...]
    name: str = "custom"
    description: str = ""
    n_features: int | None = None
    priors: Mapping[str, Any] = field(default_factory=dict)
    fit: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        nf = self.n_features
        if nf is not None and (isinstance(nf, bool) or not isinstance(nf, numbers.Integral)):
            raise TypeError(
                f"n_features={nf!r} is not an integer; give the number of columns, e.g. "
                "n_features = 5 (no quotes in TOML)."
            )
        for name in ("priors", "fit"):
            if not isinstance(getattr(self, name), Mapping):
                raise TypeError(f"{name}={getattr(self, name)!r} is not a table of settings.")
        resolve_priors(self.priors)  # unknown keys and bad values: before any work
        unknown = sorted(set(self.fit) - set(FIT_KEYS))
        if unknown:
            raise ValueError(f"[fit] has unknown key {unknown[0]!r}; valid keys: {list(FIT_KEYS)}.")
        for key, value in self.fit.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"[fit] {key} = {value!r}; give a whole number >= 1.")
        comps, facts = validate_architecture(self.n_components, self.n_factors, self.n_features)
        object.__setattr__(self, "n_components", comps)
        object.__setattr__(self, "n_factors", facts)

    @property
    def n_layers(self) -> int:
        return len(self.n_components)

    @property
    def n_paths(self) -> int:
        """Number of global paths ``prod_l G_l``."""
        return math.prod(self.n_components)

    def check_n_features(self, n_features: int) -> None:
        """Raise a ValueError if data with ``n_features`` columns cannot be fitted."""
        if self.n_features is not None and n_features != self.n_features:
            raise ValueError(
                f"spec {self.name!r} is for n_features={self.n_features} but the data has "
                f"{n_features} columns; use a spec written for this data."
            )
        validate_architecture(self.n_components, self.n_factors, n_features)

    def to_dict(self) -> dict[str, Any]:
        arch: dict[str, Any] = {
            "n_components": list(self.n_components),
            "n_factors": list(self.n_factors),
        }
        if self.n_features is not None:
            arch["n_features"] = self.n_features
        return {
            "format": SPEC_FORMAT,
            "name": self.name,
            "description": self.description,
            "architecture": arch,
            "priors": dict(self.priors),
            "fit": dict(self.fit),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "spec") -> DGMMSpec:
        fmt = data.get("format", SPEC_FORMAT)
        if fmt != SPEC_FORMAT:
            raise ValueError(
                f"{source}: format={fmt!r} is not supported (this package reads format "
                f"{SPEC_FORMAT}); upgrade bayes-dgmm or rewrite the spec."
            )
        arch = data.get("architecture")
        if not isinstance(arch, Mapping) or "n_components" not in arch or "n_factors" not in arch:
            raise ValueError(
                f"{source}: needs an [architecture] table with n_components and n_factors, "
                f"got {arch!r}."
            )
        for table, keys, valid in (("", data, SPEC_KEYS), ("[architecture] ", arch, ARCH_KEYS)):
            unknown = sorted(set(keys) - set(valid))
            if unknown:
                raise ValueError(
                    f"{source}: {table}has unknown key {unknown[0]!r}; valid keys: {list(valid)}."
                )
        try:
            return cls(
                n_components=arch["n_components"],
                n_factors=arch["n_factors"],
                n_features=arch.get("n_features"),
                name=str(data.get("name", "custom")),
                description=str(data.get("description", "")),
                priors=data.get("priors", {}),
                fit=data.get("fit", {}),
            )
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{source}: {exc}") from None

    def to_toml(self) -> str:
        """The spec as TOML text, readable by :func:`load_spec`."""
        return _dump_toml(self.to_dict())


def _models_dirs() -> list[Path]:
    package = Path(__file__).resolve().parents[1]
    # Installed wheel: specs are copied into the package; editable or source checkout:
    # they sit in the repository's top-level models/ folder.
    return [d for d in (package / "models", package.parent / "models") if d.is_dir()]


def available_specs() -> list[str]:
    """Names of the specs shipped with the package (the TOML files of ``models/``)."""
    names = {p.stem for d in _models_dirs() for p in d.glob("*.toml")}
    return sorted(names)


def load_spec(name_or_path: str | Path) -> DGMMSpec:
    """Read a spec by shipped name (``"icbinb-sec3"``) or from a TOML file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml" or not path.is_file():
        found = [d / f"{name_or_path}.toml" for d in _models_dirs()]
        found = [p for p in found if p.is_file()]
        if not found:
            raise FileNotFoundError(
                f"name_or_path={str(name_or_path)!r} is neither a TOML file nor a shipped spec; "
                f"shipped specs: {available_specs()}."
            )
        path = found[0]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc}); fix the file.") from None
    return DGMMSpec.from_dict(data, source=str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} of type {type(value).__name__} to TOML")


def _dump_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping)]
    lines = [f"{k} = {_toml_value(v)}" for k, v in scalars]
    for key, table in tables:
        name = f"{prefix}{key}"
        lines.append(f"\n[{name}]")
        body = _dump_toml(table, prefix=f"{name}.")
        if body:
            lines.append(body)
    return "\n".join(lines).strip("\n") + "\n"
