"""Save and load Bayesian fits: netCDF DataTrees whose root attributes carry the settings.

The root attributes hold the spec (TOML text), the constraint, the priors, the package
version and a digest of every group's values; :func:`read_fit` refuses a file written by
another package version, for another spec, or changed after it was saved.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bayes_dgmm._io import atomic_write
from bayes_dgmm._version import __version__
from bayes_dgmm.model.gauge import check_gauge
from bayes_dgmm.model.spec import DGMMSpec, load_spec

logger = logging.getLogger(__name__)

SAVE_FORMAT = "bayes-dgmm-bayesian/2"

SAVED_ATTRS = (
    "bayes_dgmm_format",
    "bayes_dgmm_version",
    "spec_name",
    "spec_toml",
    "constraint",
    "gauge",
    "priors",
    "method",
    "random_seed",
    "n_features_in",
    "groups_sha256",
)


def _version() -> str:
    return __version__


@dataclass(frozen=True)
class SavedFit:
    """What :func:`read_fit` read: the tree (without the saved attributes) and the settings."""

    tree: Any
    spec: DGMMSpec
    method: str
    n_features_in: int
    random_seed: Any
    priors: Mapping[str, Any] | None
    constraint: str | None
    gauge: str


def write_fit(
    path: str | Path,
    idata: Any,
    *,
    spec: DGMMSpec,
    method: str,
    n_features_in: int,
    random_seed: Any,
    priors: Mapping[str, Any] | None,
    constraint: str | None,
    gauge: str,
) -> Path:
    """Write a copy of ``idata`` with the settings as root attributes (atomically; no pickle)."""
    tree = idata.copy()
    attrs = {
        "bayes_dgmm_format": SAVE_FORMAT,
        "bayes_dgmm_version": _version(),
        "spec_name": spec.name,
        "spec_toml": spec.to_toml(),
        "constraint": json.dumps(constraint),
        "gauge": json.dumps(gauge),
        "priors": json.dumps(dict(priors or {}), sort_keys=True),
        "method": method,
        "random_seed": json.dumps(random_seed),
        "n_features_in": int(n_features_in),
    }
    _drop_object_variables(tree)
    attrs["groups_sha256"] = json.dumps(_group_digests(tree), sort_keys=True)
    if set(attrs) != set(SAVED_ATTRS):
        raise RuntimeError(f"save writes {sorted(attrs)}, load expects {sorted(SAVED_ATTRS)}")
    tree.attrs.update(attrs)

    def write(tmp: Path) -> None:
        tree.to_netcdf(tmp, engine="h5netcdf")

    return atomic_write(Path(path), write)


def read_fit(path: str | Path, spec: DGMMSpec | str | None = None) -> SavedFit:
    """Read a fit written by :func:`write_fit`; ``spec``, when given, must be the saved one.

    Raises
    ------
    ValueError
        The file is not a bayes-dgmm fit, was written by another package version, or is
        for another spec than ``spec``.
    """
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
    _check_digests(path, tree, attrs.get("groups_sha256"))
    missing = [key for key in SAVED_ATTRS if key not in attrs]
    if missing:
        raise ValueError(
            f"{path} lacks the attribute {missing[0]!r} that save writes; the file was "
            "damaged or edited after it was saved: restore it or refit."
        )
    try:
        saved_spec = DGMMSpec.from_dict(tomllib.loads(attrs["spec_toml"]), source=str(path))
        saved = {k: json.loads(attrs[k]) for k in ("priors", "random_seed", "constraint", "gauge")}
        n_features_in = int(attrs["n_features_in"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(
            f"{path}: the attributes written by save cannot be read ({exc}); the file was "
            "damaged or edited after it was saved: restore it or refit."
        ) from None
    if spec is not None:
        if isinstance(spec, str):
            spec = load_spec(spec)
        if spec.to_dict() != saved_spec.to_dict():
            raise ValueError(
                f"{path} was fitted with spec {saved_spec.name!r} "
                f"({saved_spec.n_components}, {saved_spec.n_factors}, priors "
                f"{dict(saved_spec.priors)}), not the spec {spec.name!r} asked for; load "
                "without spec= or with the spec it was fitted with."
            )
    for key in SAVED_ATTRS:
        tree.attrs.pop(key, None)
    return SavedFit(
        tree=tree,
        spec=saved_spec,
        method=str(attrs["method"]),
        n_features_in=n_features_in,
        random_seed=saved["random_seed"],
        priors=saved["priors"] or None,
        constraint=saved["constraint"],
        gauge=check_gauge(saved["gauge"]),
    )


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


def _dataset_digest(ds: xr.Dataset) -> str:
    """SHA-256 of a group's variables and coordinates: names, dimensions and values (numbers
    as float64, anything else as text), as they read back from netCDF."""
    h = hashlib.sha256()
    for name in sorted(map(str, ds.variables)):
        var = ds.variables[name]
        values = np.asarray(var.values)
        h.update(f"{name}{var.dims}{values.shape}".encode())
        if values.dtype.kind in "biuf":
            h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        else:
            h.update("\x00".join(map(str, values.ravel())).encode())
    return h.hexdigest()


def _group_digests(tree: Any) -> dict[str, str]:
    """{group path: digest} for every group of the tree but the root."""
    return {
        node.path: _dataset_digest(node.to_dataset(inherit=False))
        for node in tree.subtree
        if node.path != "/"
    }


def _check_digests(path: Path, tree: Any, saved: Any) -> None:
    """Refuse a tree whose groups are not those, with those values, that save wrote."""
    try:
        expected = json.loads(saved)
    except (TypeError, ValueError):
        expected = None
    if not isinstance(expected, dict) or "/posterior" not in expected:
        raise ValueError(
            f"{path}: the checksums of its groups are missing or damaged; the file was "
            "modified after it was saved: restore it or refit."
        )
    found = _group_digests(tree)
    for group in sorted(set(expected) | set(found)):
        if expected.get(group) != found.get(group):
            what = (
                "is missing" if group not in found else "was added" if group not in expected else ""
            )
            raise ValueError(
                f"{path}: the values of group {group.lstrip('/')!r} do not match the checksum "
                f"written with them{' (the group ' + what + ')' if what else ''}; the file was "
                "modified after it was saved: restore it or refit."
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
