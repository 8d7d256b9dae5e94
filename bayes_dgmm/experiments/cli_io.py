"""The command line's inputs and outputs: CSV data and labels, the study data by default,
the output folder, progress bars. Errors name the option (``--data``, ``--labels``,
``--out``) and count rows and columns from 1, as in the file.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bayes_dgmm._validation import check_data, check_not_constant
from bayes_dgmm.experiments.datasets import load_icbinb
from bayes_dgmm.model.spec import load_spec

#: Cells read as missing values (compared without case and surrounding spaces).
MISSING = frozenset({"", "na", "n/a", "#n/a", "nan", "null", "none", "?", "-", "--", "."})


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def load_csv(path: Path, *, name: str = "--data") -> np.ndarray:
    """Read a numeric CSV with clear errors naming ``name``, rows and columns counted from 1.

    The first row is a header when every one of its cells is text (not a number and not a
    missing-value marker); otherwise it is data. A UTF-8 byte-order mark is ignored. Missing
    cells (empty, NA, ...) and cells that are not numbers are refused wherever they are.
    """
    path = Path(path)
    where = f"{name}={str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no such file; give the path of a CSV file.")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            lines = [(i, r) for i, r in enumerate(csv.reader(fh), start=1) if r]
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV."
        ) from None
    except csv.Error as exc:
        raise ValueError(f"{where} is not a readable CSV ({exc}).") from None
    if not lines:
        raise ValueError(f"{where} is empty; give a CSV with one row per observation.")
    first = lines[0][1]
    header = all(not _number(c) and c.strip().lower() not in MISSING for c in first)
    rows = lines[1:] if header else lines
    if not rows:
        raise ValueError(f"{where} has a header row but no data rows.")
    width = len(rows[0][1])
    for r, (line, cells) in enumerate(rows, start=1):
        if len(cells) != width:
            raise ValueError(
                f"{where}: row {r} (line {line} of the file) has {len(cells)} cells but row 1 "
                f"has {width}; every row needs the same number of cells."
            )
        for j, cell in enumerate(cells, start=1):
            if _number(cell):
                continue
            if cell.strip().lower() in MISSING:
                raise ValueError(
                    f"{where}: row {r} (line {line} of the file), column {j} is missing "
                    f"({cell!r}); drop or impute missing values first."
                )
            raise ValueError(
                f"{where}: cell {cell!r} at row {r} (line {line} of the file), column {j} is "
                "not a number; clean the file (only numbers, one header row at most)."
            )
    values = np.array([cells for _, cells in rows], dtype=float)
    return check_data(values, name=where)


def read_labels(path: Path, X: np.ndarray, spec: Any) -> np.ndarray:
    """--labels as 0-based (N, L) ints, checked against --data and the spec."""
    lab = load_csv(path, name="--labels")
    where = f"--labels={str(path)!r}"
    frac = np.flatnonzero((lab != np.round(lab)).ravel())
    if frac.size:
        r, c = divmod(int(frac[0]), lab.shape[1])
        raise ValueError(
            f"{where}: row {r + 1}, column {c + 1} holds {float(lab[r, c])!r}, not a whole number; "
            "labels are component numbers."
        )
    if lab.shape[0] != X.shape[0]:
        raise ValueError(
            f"{where} has {lab.shape[0]} rows but --data has {X.shape[0]}; give one label "
            "row per observation."
        )
    labels = lab.astype(np.intp)
    # a labels.csv written by `bayes-dgmm simulate` has 1-based layer columns and a path
    if labels.shape[1] == spec.n_layers + 1:
        labels = labels[:, : spec.n_layers]
    if labels.shape[1] != spec.n_layers:
        raise ValueError(
            f"{where} has {labels.shape[1]} columns; expected one per layer ({spec.n_layers})."
        )
    base = 1 if labels.min() == 1 else 0
    labels = labels - base
    for l, G in enumerate(spec.n_components):
        bad = np.flatnonzero((labels[:, l] < 0) | (labels[:, l] >= G))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{where}: row {i + 1}, column {l + 1} holds {int(labels[i, l]) + base}, out of "
                f"range for layer {l + 1} of spec {spec.name!r}, which has {G} components: use "
                f"0..{G - 1} (or 1..{G} in every column)."
            )
    return labels


def read_data(args: argparse.Namespace, *, fitting: bool = True) -> tuple[Any, Any, Any]:
    """(X, labels or None, spec) from --data/--labels/--spec, default the study data set.

    ``fitting``: also refuse data that cannot be fitted (constant columns, extreme scales).
    """
    if getattr(args, "data", None) is None:
        if getattr(args, "labels", None) is not None:
            raise ValueError(
                "--labels needs --data: labels belong to a data set; give --data with them, "
                "or drop --labels to use the study data set and its labels."
            )
        d = load_icbinb()
        spec = load_spec(args.spec) if args.spec else d.spec
        return d.X, d.labels, spec
    if not args.spec:
        raise ValueError("--spec is required with --data: name a spec of models/ or a TOML file.")
    X = load_csv(args.data)
    if fitting:
        check_not_constant(X, name=f"--data={str(args.data)!r}")
    spec = load_spec(args.spec)
    spec.check_n_features(X.shape[1])
    labels = None
    if getattr(args, "labels", None) is not None:
        labels = read_labels(args.labels, X, spec)
    min_rows = 2 * spec.n_paths
    if X.shape[0] < min_rows:
        raise ValueError(
            f"--data has {X.shape[0]} rows, too few for {spec.n_paths} paths; give at least "
            f"{min_rows} rows or a smaller architecture."
        )
    return X, labels, spec


def check_out(args: argparse.Namespace, files: Sequence[str]) -> Path | None:
    """Check before any work that --out is (or can be made) a writable folder for ``files``."""
    if getattr(args, "out", None) is None:
        return None
    out = Path(args.out)
    where = f"--out={str(out)!r}"
    if out.exists() and not out.is_dir():
        raise ValueError(f"{where} is a file, not a folder; give a folder for the results.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"{where} cannot be created ({exc.strerror}); give a folder you can write to."
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"{where} is not writable; give a folder you can write to.")
    for name in files:
        target = out / name
        if target.is_dir():
            raise ValueError(
                f"{where}: {name} there is a folder, but this command writes a file of that "
                "name; remove it or choose another --out."
            )
    return out


class Progress:
    """A rich progress bar fed by (finished, total) callbacks; silent with --quiet."""

    def __init__(self, description: str, quiet: bool) -> None:
        self.quiet, self.description = quiet, description
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, finished: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from rich.progress import Progress  # on first use: the start-up stays light

            self.bar = Progress(transient=False)
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=total)
        self.bar.update(self.task, completed=finished, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
