"""Tables, figures and a Markdown report for the experiments."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bayes_dgmm._io import atomic_write, atomic_write_text

#: Decimals of the columns that are not shown to 3 (times, log densities, Pareto k).
DECIMALS = {
    "seconds": 1,
    "seconds_median": 1,
    "compile_s": 1,
    "elpd_loo_mean": 1,
    "log_likelihood": 1,
    "bic": 1,
    "elpd_loo": 1,
    "pareto_k_max": 2,
    # the columns of the PSIS-LOO comparison (arviz_stats.compare), in nats
    "elpd": 1,
    "se": 1,
    "p_loo": 1,
    "elpd_diff": 1,
    "dse": 1,
}


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of dict rows (floats to 3 decimals, the columns
    of :data:`DECIMALS` to theirs)."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns or dict.fromkeys(k for r in rows for k in r))

    def fmt(v: Any, col: str = "") -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "nan"
            digits = DECIMALS.get(col, 3 if abs(v) < 1e5 else 1)
            return f"{v:.{digits}f}"
        if isinstance(v, list):
            return " ".join(str(x) for x in v)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, ""), c) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write dict rows as CSV atomically (lists joined by spaces)."""
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()}
        )
    return atomic_write_text(path, buf.getvalue())


def write_json(path: Path, data: Any) -> Path:
    """Write strict JSON atomically: NaN and infinities become null (JSON has neither)."""
    text = json.dumps(_jsonable(data), indent=2, allow_nan=False)
    return atomic_write_text(path, text)


def _jsonable(obj: Any) -> Any:
    """``obj`` with arrays as lists, numpy scalars as Python ones, non-finite floats None."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (str, int)):
        return obj
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def save_figure(path: Path, fig: Figure) -> Path:
    """Save a figure as PNG atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


class Report:
    """Accumulates Markdown sections, tables and figure links; written as ``report.md``."""

    def __init__(self, title: str) -> None:
        self.parts = [f"# {title}\n"]

    def section(self, title: str, text: str = "") -> None:
        self.parts.append(f"\n## {title}\n")
        if text:
            self.parts.append(text.rstrip() + "\n")

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        caption: str = "",
    ) -> None:
        if caption:
            self.parts.append(f"\n{caption}\n")
        self.parts.append("\n" + markdown_table(rows, columns))

    def figure(self, filename: str, caption: str) -> None:
        self.parts.append(f"\n![{caption}]({filename})\n\n*{caption}*\n")

    def text(self) -> str:
        return "".join(self.parts)

    def write(self, folder: Path) -> Path:
        return atomic_write_text(Path(folder) / "report.md", self.text())
