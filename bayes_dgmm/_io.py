"""Safe file writing: every file is written to a temporary name and renamed into place,
so an interrupted write never leaves a truncated file behind."""

from __future__ import annotations

import glob
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{socket.gethostname()}-"


def _remove_stale_tmp(path: Path) -> None:
    """Delete temporary files left for ``path`` by writers on this host that were killed."""
    prefix = _tmp_prefix(path)
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid_text = tmp.name[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # alive under another user


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then atomically rename ``tmp_path`` to ``path``.

    The file gets the mode a plain ``open`` would give it: that of the file it replaces, or
    ``0o666`` less the umask. Temporary files that killed writers left for ``path`` on this
    host are removed.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{str(path)!r} is a folder; give the path of a file to write (in that folder)."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f"{_tmp_prefix(path)}{os.getpid()}.", suffix=".tmp"
    )
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    return atomic_write(path, write)
