"""The command line's inputs and outputs: CSV data and labels, the study data by default,
the output folder, progress bars. Errors name the option (``--data``, ``--labels``,
``--out``) and count rows and columns from 1, as in the file.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bayes_dgmm._validation import check_data, check_not_constant
from bayes_dgmm.experiments.datasets import load_icbinb
from bayes_dgmm.model.spec import load_spec

#: Cells read as missing values (compared without case and surrounding spaces).
MISSING = frozenset({"", "na", "n/a", "#n/a", "nan", "null", "none", "?", "-", "--", "."})

#: The ``--header`` choices: auto (decide from the first line), yes, no.
HEADER_CHOICES = ("auto", "yes", "no")

_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _kind(cell: str) -> str:
    """'missing', 'number' or 'text' ("nan" is missing, though float() reads it)."""
    if cell.strip().lower() in MISSING:
        return "missing"
    return "number" if _number(cell) else "text"


def _counts_up(cells: Sequence[str]) -> bool:
    """Whether ``cells`` are two or more integers that count up by one (0..J-1, 1990..)."""
    if len(cells) < 2 or not all(_INTEGER.fullmatch(c) for c in cells):
        return False
    values = [int(c) for c in cells]
    return all(b - a == 1 for a, b in itertools.pairwise(values))


@dataclass(frozen=True)
class Table:
    """A CSV read by :func:`read_table`: its values and how its first line was taken."""

    values: np.ndarray
    header: list[str] | None
    delimiter: str


def _delimiter(line: str) -> str:
    """The delimiter of a file whose first line is ``line``: tab, semicolon or comma."""
    for sep in ("\t", ";"):
        if sep in line:
            return sep
    return ","


def _lines(path: Path, where: str) -> tuple[list[tuple[int, list[str]]], str]:
    """The file's non-blank lines as (line number, cells), and its delimiter."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV."
        ) from None
    first = next((s for s in text.splitlines() if s.strip()), "")
    sep = _delimiter(first)
    try:
        rows = list(enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=sep), 1))
    except csv.Error as exc:
        raise ValueError(f"{where} is not a readable CSV ({exc}).") from None
    lines = [(i, r) for i, r in rows if r]
    if not lines:
        raise ValueError(f"{where} is empty; give a CSV with one row per observation.")
    blank = [i for i, r in rows if not r and lines[0][0] < i < lines[-1][0]]
    if blank and len(lines[0][1]) == 1:
        raise ValueError(
            f"{where}: line {blank[0]} is blank, a missing value in this one-column file; "
            "drop or impute missing values first."
        )
    return lines, sep


def _takes_header(
    lines: list[tuple[int, list[str]]], header: str, where: str, *, sequences: bool
) -> bool:
    """Whether the first line is a header under ``--header`` = ``header``.

    With "auto", a line of numbers counting up by one is a header when it has three
    cells or more, or when the rows below hold a number that is not an integer: "1,2"
    above rows of integers is as likely a row of data.
    """
    first = lines[0][1]
    if header not in HEADER_CHOICES:
        raise ValueError(f"--header={header!r}: use one of {', '.join(HEADER_CHOICES)}.")
    if header != "auto":
        return header == "yes"
    kinds = {_kind(c) for c in first}
    if "number" not in kinds:
        return "text" in kinds
    if kinds != {"number"} or not sequences or not _counts_up(first):
        return False
    below = (c for _, cells in lines[1:] for c in cells)
    if len(first) >= 3 or not all(_INTEGER.fullmatch(c) for c in below):
        warnings.warn(
            f"{where}: line 1 ({','.join(c.strip() for c in first)}) is taken as a header, "
            "since its integers count up by one like column numbers or years; pass "
            "--header no if it is data, or --header yes to silence this warning.",
            UserWarning,
            stacklevel=3,
        )
        return True
    return False


def _drop_trailing_empty(lines: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
    """Lines that all end in an empty cell (a comma at the end of every line) lose it."""
    if len(lines) > 1 and all(len(c) > 1 and not c[-1].strip() for _, c in lines):
        return [(i, c[:-1]) for i, c in lines]
    return lines


def _check_header(head: list[str], width: int, where: str) -> None:
    if head and not head[0].strip() and len(head) > 1 and width == len(head):
        raise ValueError(
            f"{where}: column 1 has no name on line 1, as pandas writes its index "
            "(DataFrame.to_csv()); write the file with index=False or delete that column."
        )
    if len(head) == width + 1 and not head[-1].strip():
        raise ValueError(
            f"{where}: line 1 (the header) ends with a comma but the rows do not; remove "
            "the comma at the end of line 1."
        )
    if len(head) != width:
        raise ValueError(
            f"{where}: the header (line 1) has {len(head)} names but row 1 has {width} "
            "cells; give one name per column."
        )


def _check_cells(rows: list[tuple[int, list[str]]], where: str, hint: str) -> None:
    """Every row as wide as row 1, every cell a number; ``hint`` is added for row 1."""
    width = len(rows[0][1])
    for r, (line, cells) in enumerate(rows, start=1):
        more = hint if r == 1 else ""
        if len(cells) != width:
            raise ValueError(
                f"{where}: row {r} (line {line} of the file) has {len(cells)} cells but row 1 "
                f"has {width}; every row needs the same number of cells."
            )
        for j, cell in enumerate(cells, start=1):
            kind = _kind(cell)
            if kind == "missing":
                raise ValueError(
                    f"{where}: row {r} (line {line} of the file), column {j} is missing "
                    f"({cell!r}); drop or impute missing values first{more}."
                )
            if kind == "text":
                comma = "; write decimals with a point" if "," in cell else ""
                if len(cell.split()) > 1 and all(_number(c) for c in cell.split()):
                    comma = "; separate cells by commas, tabs or semicolons, not spaces"
                raise ValueError(
                    f"{where}: cell {cell!r} at row {r} (line {line} of the file), column {j} "
                    f"is not a number; clean the file (only numbers, one header row at "
                    f"most){comma}{more}."
                )


def read_table(
    path: Path, *, name: str = "--data", header: str = "auto", sequences: bool = True
) -> Table:
    """Read a numeric CSV with clear errors naming ``name``, rows and columns counted from 1.

    ``header``: "yes" or "no" says whether line 1 is a header; "auto" takes it for one when
    it holds text and no number, or (``sequences``) integers counting up by one, as pandas'
    column numbers or years (with a warning). The delimiter is a tab or a semicolon when
    line 1 holds one, else a comma. A UTF-8 byte-order mark, blank lines and a comma ending
    every line are ignored. Missing cells (empty, NA, ...) and text cells are refused.
    """
    path = Path(path)
    where = f"{name}={str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no such file; give the path of a CSV file.")
    lines, sep = _lines(path, where)
    lines = _drop_trailing_empty(lines)
    first = lines[0][1]
    has_header = _takes_header(lines, header, where, sequences=sequences)
    rows = lines[1:] if has_header else lines
    if not rows:
        raise ValueError(f"{where} has a header row but no data rows.")
    if has_header:
        _check_header(first, len(rows[0][1]), where)
    hint = "" if header != "auto" or has_header else " (if line 1 is a header, pass --header yes)"
    _check_cells(rows, where, hint)
    values = np.array([cells for _, cells in rows], dtype=float)
    values = check_data(values, name=where)
    return Table(values, first if has_header else None, sep)


def load_csv(path: Path, *, name: str = "--data", header: str = "auto") -> np.ndarray:
    """The values of :func:`read_table`."""
    return read_table(path, name=name, header=header).values


_LAYER = re.compile(r"\s*layer[\s_-]*(\d+)\s*", re.IGNORECASE)


def _layer_columns(labels: np.ndarray, header: list[str] | None, n_layers: int, where: str):
    """The (N, L) layer columns of a labels table: by their header names (layer1 or
    layer_1, any order, as `simulate` and `fit` write them; other columns such as path
    ignored), else the first L columns of L or L + 1."""
    named = {}
    for j, name in enumerate(header or []):
        if m := _LAYER.fullmatch(name):
            named[int(m.group(1))] = j
    if named:
        wanted = list(range(1, n_layers + 1))
        if sorted(named) != wanted:
            raise ValueError(
                f"{where} names the layer columns {sorted(named)}; the spec has layers "
                f"{wanted}: give one column per layer."
            )
        return labels[:, [named[l] for l in wanted]]
    if labels.shape[1] == n_layers + 1:  # layer columns, then the path
        labels = labels[:, :n_layers]
    if labels.shape[1] != n_layers:
        raise ValueError(
            f"{where} has {labels.shape[1]} columns; expected one per layer ({n_layers})."
        )
    return labels


def read_labels(path: Path, X: np.ndarray, spec: Any) -> np.ndarray:
    """--labels as 0-based (N, L) ints, checked against --data and the spec."""
    where = f"--labels={str(path)!r}"
    table = read_table(path, name="--labels", sequences=False)
    lab = table.values
    if table.header is None and lab.shape[0] == X.shape[0] + 1:
        # label rows may count up by one (0,1), so only the row count tells such a header
        warnings.warn(
            f"{where} has one row more than --data: its line 1 is taken as a header.",
            UserWarning,
            stacklevel=2,
        )
        lab = lab[1:]
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
    labels = _layer_columns(lab.astype(np.intp), table.header, spec.n_layers, where)
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
    table = read_table(args.data, header=getattr(args, "header", "auto"))
    X = table.values
    if not getattr(args, "quiet", False):
        kept = "line 1 a header" if table.header is not None else "no header"
        sep = {",": "comma", ";": "semicolon", "\t": "tab"}[table.delimiter]
        print(
            f"read {X.shape[0]} rows and {X.shape[1]} columns from {args.data} "
            f"({kept}, {sep}-separated)"
        )
    if X.shape[1] == 1:
        raise ValueError(
            f"--data={str(args.data)!r} has a single column; a DGMM needs two features or "
            "more (if the file has more, separate its cells by commas, tabs or semicolons)."
        )
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


def fit_data(args: argparse.Namespace, est: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(X, labels or None) for a saved fit: its own data, which --data, when given, must
    equal; --labels checked against them and the fit's spec."""
    X = np.asarray(est.idata_["observed_data"]["x"].values, dtype=float)
    if getattr(args, "data", None) is not None:
        given = read_table(args.data, header=getattr(args, "header", "auto")).values
        if given.shape != X.shape or not np.allclose(given, X, rtol=1e-9, atol=0.0):
            raise ValueError(
                f"--data={str(args.data)!r} ({given.shape[0]} x {given.shape[1]}) is not the "
                f"data the fit was fitted to ({X.shape[0]} x {X.shape[1]}); drop --data to "
                "use the fit's own data."
            )
    labels = None
    if getattr(args, "labels", None) is not None:
        labels = read_labels(args.labels, X, est.spec_)
    return X, labels


def check_memory(n_rows: int, n_cols: int, option: str) -> None:
    """Refuse, before any work, a table of ``n_rows`` x ``n_cols`` float64 cells (times 4,
    for the copies a simulation makes) that needs more than this machine's memory."""
    need = 4 * 8 * n_rows * n_cols
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > have:
        raise ValueError(
            f"{option}: {n_rows} rows of {n_cols} values need about {need / 2**30:.0f} GiB, "
            f"more than this machine's {have / 2**30:.0f} GiB; ask for fewer rows."
        )


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
