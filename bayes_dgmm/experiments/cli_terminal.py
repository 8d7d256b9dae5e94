"""How the command line behaves in a terminal: warnings on one line, libraries kept quiet,
Ctrl-C and SIGTERM, the message after an interruption, the Dask scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("bayes_dgmm")


_NOISY_LIBRARIES = ("pytensor", "pymc", "arviz", "nutpie", "h5netcdf", "xarray", "numba")


def quiet_libraries() -> None:
    """--quiet: no warnings or log lines from the libraries below the package."""
    for name in _NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")


def one_line_warnings(command: str) -> Any:
    """``warnings.showwarning`` for the terminal: ``COMMAND: Category: message``, one line.

    Python's default adds the file and source line that called ``warn``; for the package's
    warnings raised inside scikit-learn's ``fit`` wrapper that is ``sklearn/base.py``, which
    tells a user nothing.
    """

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:  # fmt: skip
        text = " ".join(str(message).split())
        print(f"{command}: {category.__name__}: {text}", file=sys.stderr if file is None else file)

    return show


#: Commands that keep every finished run on disk and resume from them.
RESUMABLE = ("reproduce", "compare", "benchmark")


def after_interrupt(command: str) -> str:
    """What an interrupted command leaves behind, in a few words."""
    if command.split()[-1] in RESUMABLE:
        return "its finished runs are saved; rerun the same command to resume."
    return "its results were not written (files already in --out are as they were)."


def unraisable_interrupt(previous: Any) -> Any:
    """``sys.unraisablehook`` that passes a Ctrl-C raised where Python cannot raise it (a
    garbage-collector callback, such as JAX's) on to the main thread, without the "Exception
    ignored" traceback; everything else goes to ``previous``."""
    import _thread
    import threading

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # raised here it would be ignored again: delivered once the hook has returned
            threading.Timer(0.05, _thread.interrupt_main).start()
            return
        previous(unraisable)

    return hook


def terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # run the clean-up of a Ctrl-C (temporary files, workers)


@contextlib.contextmanager
def scheduler(address: str | None) -> Iterator[None]:
    """joblib's Dask backend on the scheduler at ``address`` (nothing when None)."""
    if address is None:
        yield
        return
    try:
        from dask.distributed import Client
    except ImportError:
        raise ValueError(
            f"--scheduler {address} needs Dask: pip install 'bayes-dgmm[dask]'."
        ) from None
    from joblib import parallel_config

    try:
        client = Client(address, timeout=10)
    except OSError as exc:
        raise ValueError(
            f"--scheduler {address}: no Dask scheduler answers there ({exc}); start one "
            "(dask scheduler) or give its address as tcp://HOST:PORT."
        ) from None
    with client, parallel_config(backend="dask"):
        log.info("running on the Dask cluster at %s", address)
        yield
