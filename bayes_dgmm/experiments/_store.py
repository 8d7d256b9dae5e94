"""Resumable experiments: every finished run is written to disk at once.

A run is identified by a key (e.g. ``"sec33-exact-seed7"``); its result is one JSON file
``<folder>/runs/<key>.json`` written atomically (temporary file + rename), so a run killed
mid-way leaves no partial file and a finished run is never lost. Rerunning an experiment
skips every key already on disk. Runs go in parallel with joblib; each worker writes its own
result as soon as it finishes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from joblib import Parallel, delayed

from bayes_dgmm._io import atomic_write_text

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_.=-]+$")


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


def _run_and_save(
    store: RunStore, key: str, fn: Callable[..., Mapping[str, Any]], kwargs: Mapping[str, Any]
) -> str:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        result = dict(fn(**kwargs))
    result.setdefault("key", key)
    store.save(key, result)
    return key


def run_all(
    store: RunStore,
    tasks: Iterable[tuple[str, Mapping[str, Any]]],
    fn: Callable[..., Mapping[str, Any]],
    *,
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``fn(**kwargs)`` for every ``(key, kwargs)`` not yet on disk; return all results.

    Parameters
    ----------
    store : where results go
    tasks : (key, kwargs) pairs; ``fn`` must be a module-level function (joblib pickles it
        to send it to worker processes; nothing is ever unpickled from disk)
    n_jobs : joblib workers
    progress : called with (finished, total) after each finished run
    """
    tasks = list(tasks)
    todo = [(k, kw) for k, kw in tasks if not store.done(k)]
    total, finished = len(tasks), len(tasks) - len(todo)
    if finished:
        log.info("resuming: %d of %d runs already on disk", finished, total)
    if progress is not None:
        progress(finished, total)
    if todo:
        jobs = (delayed(_run_and_save)(store, k, fn, kw) for k, kw in todo)
        for _ in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
            finished += 1
            if progress is not None:
                progress(finished, total)
    return {k: store.load(k) for k, _ in tasks}
