"""The command line's output folder: checked before any work, never written over an input
file, a file bayes-dgmm did not write, or (``fit``, ``simulate``) the files of another run
unless ``--overwrite``. A hidden ledger in the folder names the run that wrote each file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bayes_dgmm._io import atomic_write_text

#: The ledger: file name -> {"command": ..., "run": digest of the run's inputs}.
LEDGER = ".bayes-dgmm-files.json"

#: Commands whose files belong to one run: another run's are not written over.
ONE_RUN = frozenset({"fit", "simulate"})

#: Options that do not change what a command writes.
_NEUTRAL = frozenset({"quiet", "n_jobs", "scheduler", "out", "overwrite", "func"})


def out_folder(text: str) -> Path:
    """An argparse type for --out: a path, not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "empty; give a folder for the results (write . for the current folder)"
        )
    return Path(text)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_key(args: argparse.Namespace) -> str:
    """A digest of what determines the command's files: options and input files' bytes."""
    parts: dict[str, Any] = {}
    for key, value in sorted(vars(args).items()):
        if key in _NEUTRAL:
            continue
        if isinstance(value, Path) and value.is_file():
            value = {"sha256": _digest(value)}
        parts[key] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _inputs(args: argparse.Namespace) -> dict[str, Path]:
    """The input files the command reads, by option."""
    found = {}
    for option in ("data", "labels", "spec", "fit"):
        value = getattr(args, option, None)
        if value is not None and Path(value).is_file():
            found[f"--{option}" if option != "fit" else "FIT"] = Path(value)
    return found


def _read_ledger(out: Path) -> dict[str, Any]:
    try:
        ledger = json.loads((out / LEDGER).read_text())
    except (OSError, ValueError):
        return {}
    return ledger if isinstance(ledger, dict) else {}


def _owner(args: argparse.Namespace, out: Path, name: str, ledger: dict, key: str) -> str:
    """Who wrote ``out/name`` if this command may not write over it, else ''."""
    target = out / name
    if target.is_dir():
        raise ValueError(
            f"--out={str(out)!r}: {name} there is a folder, but this command writes a file of "
            "that name; remove it or choose another --out."
        )
    if not target.exists() or getattr(args, "overwrite", False):
        return ""
    entry = ledger.get(name)
    if not isinstance(entry, dict):
        return "not bayes-dgmm"
    if args.command in ONE_RUN and entry != {"command": args.command, "run": key}:
        other = entry.get("command")
        return f"`bayes-dgmm {other}`" + (" with other inputs" if other == args.command else "")
    return ""


def _check_owners(args: argparse.Namespace, out: Path, files: Sequence[str], ledger: dict) -> None:
    key = run_key(args)
    owners: dict[str, list[str]] = {}
    for name in files:
        if who := _owner(args, out, name, ledger, key):
            owners.setdefault(who, []).append(name)
    for who, names in owners.items():
        what = ", ".join(names)
        if who == "not bayes-dgmm":
            raise ValueError(
                f"--out={str(out)!r} holds {what}, which bayes-dgmm did not write; choose "
                "another --out, move those files, or pass --overwrite."
            )
        raise ValueError(
            f"--out={str(out)!r} holds {what} of another run ({who}); choose another --out, "
            "or pass --overwrite to replace that run's files."
        )


def _check_inputs(args: argparse.Namespace, out: Path, files: Sequence[str]) -> None:
    """No file the command writes is one of its inputs."""
    for name in files:
        target = out / name
        for option, path in _inputs(args).items():
            if target.is_file() and os.path.samefile(path, target):
                raise ValueError(
                    f"--out={str(out)!r}: this command writes {name}, which is its input "
                    f"{option}={str(path)!r}; choose another --out."
                )


def check_out(args: argparse.Namespace, files: Sequence[str]) -> Path | None:
    """Check before any work that --out is (or can be made) a writable folder for ``files``,
    that none of them is an input or a file of another run; then enter them in the ledger.
    """
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
    _check_inputs(args, out, files)
    ledger = _read_ledger(out)
    _check_owners(args, out, files, ledger)
    stale = [
        n
        for n, e in ledger.items()
        if args.command in ONE_RUN
        and n not in files
        and isinstance(e, dict)
        and e.get("command") == args.command
    ]
    for name in stale:  # the files of the run this one replaces, that it does not write
        (out / name).unlink(missing_ok=True)
        del ledger[name]
    ledger.update({n: {"command": args.command, "run": run_key(args)} for n in files})
    atomic_write_text(out / LEDGER, json.dumps(ledger, indent=1, sort_keys=True))
    return out
