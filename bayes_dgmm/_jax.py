"""JAX set-up shared by the package's compiled functions: the persistent compilation cache."""

from __future__ import annotations

import os
from pathlib import Path


def use_compilation_cache() -> None:
    """Keep JAX's compiled functions on disk (``$XDG_CACHE_HOME/bayes-dgmm/jax``, or
    ``BAYES_DGMM_JAX_CACHE``), so that a function is compiled once per machine, not once per
    process (joblib workers, CLI calls). A cache the user configured is kept."""
    import jax

    if jax.config.jax_compilation_cache_dir is not None:
        return
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bayes-dgmm/jax"
    path = Path(os.environ.get("BAYES_DGMM_JAX_CACHE", default))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only home: compile in memory, as without the cache
    jax.config.update("jax_compilation_cache_dir", str(path))
