"""Resumable experiments: every finished run is written to disk at once.

A run has a name (e.g. ``"sec33-exact-run7"``) and a digest of everything that determines
it (:func:`inputs_digest`: the data bytes, settings, seed, function and package version);
its result is one JSON file ``<folder>/runs/<name>-<digest>.json`` written atomically
(temporary file + rename), so a run killed mid-way leaves no partial file and a finished run
is never lost. Rerunning an experiment skips every run already on disk with the same inputs;
runs of other inputs in the same folder are kept apart, never reused. Runs go in parallel
with joblib; each worker writes its own result as soon as it finishes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed

from bayes_dgmm._io import atomic_write_text
from bayes_dgmm._version import __version__

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_.=-]+$")

#: Bumped when the meaning of a stored run changes, so older runs are recomputed (3: the GMM
#: baseline is fitted to standardised data).
STORE_FORMAT = 3


def _canonical(obj: Any) -> Any:
    """A JSON-able stand-in for ``obj``: arrays by dtype, shape and SHA-256 of their bytes."""
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return {
            "__array__": arr.dtype.str,
            "shape": list(arr.shape),
            "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
        }
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot digest {type(obj).__name__}; give arrays, numbers or strings.")


def inputs_digest(**parts: Any) -> str:
    """SHA-256 (hex) of everything that determines a run, with the package version.

    Arrays count by their exact bytes, so a run on other data (or labels) has another digest.
    """
    record = {"format": STORE_FORMAT, "version": __version__, "parts": _canonical(parts)}
    text = json.dumps(record, sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def run_key(name: str, fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> str:
    """The stored key of run ``name`` computing ``fn(**kwargs)``: name and input digest."""
    digest = inputs_digest(fn=f"{fn.__module__}.{fn.__qualname__}", kwargs=kwargs)
    return f"{name}-{digest[:20]}"


class RunStore:
    """A folder of finished runs, one JSON file each.

    Parameters
    ----------
    folder : path; runs live in ``folder/runs``
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.runs = self.folder / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"run key {key!r} may only hold letters, digits and . _ = -")
        return self.runs / f"{key}.json"

    def done(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, key: str, result: Mapping[str, Any]) -> None:
        atomic_write_text(self.path(key), json.dumps(dict(result)))

    def load(self, key: str) -> dict[str, Any]:
        path = self.path(key)
        try:
            return dict(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path} is not valid JSON ({exc}); delete it and rerun to recompute that run."
            ) from None

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.runs.glob("*.json"))


def _run_one(
    key: str, fn: Callable[..., Mapping[str, Any]], kwargs: Mapping[str, Any], filters: list
) -> tuple[str, dict[str, Any], list[Any]]:
    """One run in a worker. It returns its result and the parent writes it, so a worker
    left behind by a killed parent never writes into the store; its warnings, under the
    parent's filters, are returned for the parent to show as its own would be (a worker's
    own display adds the source line of the code that warned)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), warnings.catch_warnings(record=True) as caught:
        # typeshed declares warnings.filters a Sequence; it is the module's list
        warnings.filters[:] = filters  # type: ignore[index]
        result = dict(fn(**kwargs))
    result.setdefault("key", key)
    return key, result, list(caught)


def run_all(
    store: RunStore,
    tasks: Iterable[tuple[str, Mapping[str, Any]]],
    fn: Callable[..., Mapping[str, Any]],
    *,
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``fn(**kwargs)`` for every ``(name, kwargs)`` not yet on disk; return all results.

    A run is on disk when a run of the same name *and the same inputs* (:func:`run_key`) was
    stored; the results are returned by name.

    Parameters
    ----------
    store : where results go
    tasks : (name, kwargs) pairs; ``fn`` must be a module-level function (joblib pickles it
        to send it to worker processes; nothing is ever unpickled from disk)
    n_jobs : joblib workers
    progress : called with (finished, total) after each finished run
    """
    named = list(tasks)
    keys = {name: run_key(name, fn, kw) for name, kw in named}
    if len(keys) != len(named):
        raise ValueError("tasks hold the same run name twice; give every run its own name.")
    tasks = [(keys[name], kw) for name, kw in named]
    todo = [(k, kw) for k, kw in tasks if not store.done(k)]
    total, finished = len(tasks), len(tasks) - len(todo)
    if finished:
        log.info("resuming: %d of %d runs already on disk", finished, total)
    if progress is not None:
        progress(finished, total)
    if todo:
        filters = list(warnings.filters)
        jobs = (delayed(_run_one)(k, fn, kw, filters) for k, kw in todo)
        for key, result, caught in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
            store.save(key, result)  # each finished run on disk at once
            for w in caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            finished += 1
            if progress is not None:
                progress(finished, total)
    return {name: store.load(keys[name]) for name, _ in named}
