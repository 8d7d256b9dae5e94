"""Helpers shared by the benchmark scripts: timing, and runs that resume from a JSONL log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def best_time(fn: Callable[[], object], repeat: int = 5) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn`` (seconds)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def resumed_runs(log: Path, seeds: int, run_one: Callable[[int], dict[str, Any]]) -> list[dict]:
    """Rows for seeds ``0..seeds-1``: those already in the JSONL file ``log``, and the others
    run now, each appended as one line as soon as it finishes (an interruption loses none)."""
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    have = {r["seed"] for r in rows}
    for seed in range(seeds):
        if seed not in have:
            row = run_one(seed)
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            rows.append(row)
    return sorted(rows, key=lambda r: r["seed"])
