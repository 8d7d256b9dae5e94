"""Time spent compiling PyTensor functions, to split a fit's wall time into compile and run.

PyMC compiles inside ``find_MAP``, ``pm.fit`` and ``pm.sample`` and does not report how long
it took; PyTensor's own profiler (``config.profile``) would, but it also slows every call of
the compiled function. So :func:`compile_timer` times the two methods every compiled
function goes through, ``FunctionMaker.__init__`` (graph rewrites) and
``FunctionMaker.create`` (linking, C compilation or loading from the disk cache). Under JAX
the XLA compile happens at the first call and counts as run time.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pytensor.compile.maker import FunctionMaker

_LOCK = threading.Lock()


@dataclass
class CompileTime:
    """Seconds spent in PyTensor's function compilation inside a :func:`compile_timer`."""

    seconds: float = 0.0


@contextmanager
def compile_timer() -> Iterator[CompileTime]:
    """Accumulate the wall time of PyTensor compilations made in this block.

    Nested compilations (inner graphs compiled while an outer one is) count once. The
    patch is process-wide while the block runs, so blocks must not overlap; they are
    serialised by a lock.
    """
    box = CompileTime()
    depth = 0
    originals: dict[str, Callable[..., Any]] = {
        "__init__": FunctionMaker.__init__,
        "create": FunctionMaker.create,
    }

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal depth
            if depth:
                return fn(*args, **kwargs)
            depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                box.seconds += time.perf_counter() - t0
                depth -= 1

        return wrapper

    with _LOCK:
        for name, fn in originals.items():
            setattr(FunctionMaker, name, timed(fn))
        try:
            yield box
        finally:
            for name, fn in originals.items():
                setattr(FunctionMaker, name, fn)
