"""DGMM parameters as plain data: the JSON file format and the named variables.

:class:`~bayes_dgmm.model.params.DGMMParams` reads and writes through these functions
(``to_dict``/``from_dict``, ``to_json``/``from_json``, ``to_named``/``from_named``). They
take and return the per-layer lists of arrays, so the format is one page to read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bayes_dgmm._io import atomic_write_text
from bayes_dgmm.model.names import PARAM_NAMES, n_named_layers

Array = NDArray[np.float64]

PARAMS_FORMAT = "bayes-dgmm-params/1"

#: The per-layer lists of a DGMM by name: ``{"pi": [...], "eta": [...], ...}``.
Fields = dict[str, list[Any]]


def fields_from_named(values: Any, *, renormalise: bool = False) -> Fields:
    """The lists of arrays named ``pi_l``, ``eta_l``, ``Lambda_l``, ``psi_l`` (l from 1) in
    ``values``, taken as they are; ``renormalise`` divides each layer's weights by their sum."""
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
    return {
        "pi": [p / p.sum() for p in pi] if renormalise else pi,
        "eta": [get("eta", l) for l in layers],
        "Lambda": [get("Lambda", l) for l in layers],
        "psi": [get("psi", l) for l in layers],
    }


def named_arrays(fields: Mapping[str, Sequence[Array]]) -> dict[str, Array]:
    """The inverse of :func:`fields_from_named`: ``{"pi_1": ..., "eta_1": ..., ...}`` (copies)."""
    return {
        f"{name}_{l}": arr.copy()
        for name in PARAM_NAMES
        for l, arr in enumerate(fields[name], start=1)
    }


def to_dict(fields: Mapping[str, Sequence[Array]]) -> dict[str, Any]:
    """Plain-Python representation (lists of floats), exact through JSON."""
    Lambda = fields["Lambda"]
    return {
        "format": PARAMS_FORMAT,
        "n_components": [int(lam.shape[0]) for lam in Lambda],
        "n_factors": [int(lam.shape[2]) for lam in Lambda],
        "n_features": int(Lambda[0].shape[1]),
        **{name: [a.tolist() for a in fields[name]] for name in PARAM_NAMES},
    }


def fields_from_dict(data: Any) -> Fields:
    """The lists of :func:`to_dict`'s mapping, after checking its format and keys."""
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
    missing = [k for k in PARAM_NAMES if k not in data]
    if missing:
        raise ValueError(
            f"the parameters lack {missing[0]!r}; a DGMMParams file holds "
            f"{', '.join(PARAM_NAMES)}: the file is damaged, restore or rewrite it."
        )
    return {name: data[name] for name in PARAM_NAMES}


def check_stated_sizes(data: dict[str, Any], actual: dict[str, Any]) -> None:
    """Raise ValueError where :func:`to_dict`'s stated ``n_components``, ``n_factors`` or
    ``n_features`` contradict ``actual`` (those of the arrays read)."""
    stated = {
        "n_components": lambda v: tuple(v),
        "n_factors": lambda v: tuple(v),
        "n_features": lambda v: v,
    }
    for key, norm in stated.items():
        if key in data:
            try:
                given = norm(data[key])
            except TypeError:
                given = data[key]
            if given != actual[key]:
                raise ValueError(
                    f"{key}={data[key]!r} contradicts the arrays, which have {key}="
                    f"{actual[key]!r}; the file is inconsistent: fix or drop {key!r}."
                )


def write_json(data: dict[str, Any], path: str | Path | None = None) -> str:
    """JSON text of :func:`to_dict`'s mapping (floats written with repr, so the round trip is
    exact); saved atomically if ``path``."""
    text = json.dumps(data)
    if path is not None:
        atomic_write_text(Path(path), text)
    return text


def read_json(text_or_path: str | Path) -> Any:
    """The decoded JSON of the text, or of the file, ``text_or_path``."""
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
    text = _read_params_file(path) if path is not None else str(text_or_path).lstrip("\ufeff")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"text_or_path={str(path)!r} is " if path is not None else ""
        raise ValueError(f"{where}not valid JSON ({exc}); the file may be truncated.") from None


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
