"""The inference routes on a PyMC model: MAP and Laplace (the unconstrained mode), Pathfinder,
ADVI (mean-field and full-rank), PyMC's NUTS, SMC."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pymc as pm
from numpy.typing import NDArray
from pymc.initial_point import make_initial_point_fn
from pymc.model.transform.optimization import freeze_dims_and_data
from sklearn.exceptions import ConvergenceWarning

from bayes_dgmm._validation import BudgetError, RandomLike
from bayes_dgmm.bayes.backends.flat import n_free_variables
from bayes_dgmm.bayes.backends.laplace import run_laplace
from bayes_dgmm.bayes.backends.mode import run_map
from bayes_dgmm.bayes.backends.pathfinder import run_pathfinder
from bayes_dgmm.bayes.backends.vi import run_vi
from bayes_dgmm.bayes.model import compile_mode, uses_minibatch

Array = NDArray[np.float64]


def run_pymc(
    method: str,
    model: Any,
    start: dict[str, Array] | None,
    kw: dict[str, Any],
    *,
    random_seed: RandomLike,
    progressbar: bool,
) -> Any:
    """Run ``method`` (``map``, ``advi``, ``fullrank_advi``, ``nuts`` or ``smc``) on ``model``.

    ``kw`` goes to the PyMC function; ADVI reads ``n`` (20000 iterations) and ``draws``
    (1000) from it. Returns the DataTree PyMC returns (for ADVI with a ``loss`` group).
    """
    seed, bar = random_seed, progressbar
    if "backend" not in kw:
        # PyTensor's default (Numba) compiles the study model ~20x slower than C. A minibatch
        # model runs in C: PyMC cannot freeze its data for JAX (freeze_dims_and_data fails
        # on MinibatchRandomVariable); the likelihood Op still calls the JAX density.
        mode = "CVM" if uses_minibatch(model) else compile_mode()
        kw.setdefault("compile_kwargs", {"mode": mode})
    if str(kw.get("compile_kwargs", {}).get("mode", "")).upper() == "JAX":
        # JAX compiles only shapes known at compile time: fix the model's dims and data (a
        # copy with the same variables and names)
        model = freeze_dims_and_data(model)
    if method == "map":
        if start is None:
            start = jittered_start(model, seed)
        mode = kw.pop("compile_kwargs", {}).get("mode")
        maxiter = int(kw.pop("maxiter", 1000))
        if kw:
            raise ValueError(
                f"method='map' takes maxiter only (and compile_kwargs); got {sorted(kw)}."
            )
        return run_map(model, start, maxiter=maxiter, mode=mode)
    if method in ("laplace", "pathfinder"):
        if start is None:
            start = jittered_start(model, seed)
        kw.pop("compile_kwargs", None)  # both compile through backends/flat.py
        run = run_laplace if method == "laplace" else run_pathfinder
        return run(
            model, start, draws=int(kw.pop("draws", 1000)), random_seed=seed, progressbar=bar, **kw
        )
    if method in ("advi", "fullrank_advi"):
        n = int(kw.pop("n", 20000))
        draws = int(kw.pop("draws", 1000))
        if start is None:
            start = jittered_start(model, seed)
        idata, check = run_vi(
            method, model, start, n=n, draws=draws, random_seed=seed, progressbar=bar, **kw
        )
        if not check.converged:
            warnings.warn(
                f"method={method!r} did not converge in n={n} iterations: over the last "
                f"{check.window} the mean loss still fell by {check.gain:.3g}, more than "
                "twice its standard error; raise n.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return idata
    if method == "nuts":
        return pm.sample(model=model, initvals=start, random_seed=seed, progressbar=bar, **kw)
    if method != "smc":
        raise ValueError(f"method={method!r} is not a PyMC route; use map, advi, nuts or smc.")
    n_free = n_free_variables(model)
    draws = int(kw.get("draws", 2000))
    if draws <= n_free:
        raise BudgetError(
            f"method='smc' with draws={draws} particles, but the model has {n_free} free "
            "parameters: PyMC's SMC kernels fit a proposal covariance to the particles, "
            f"which is singular with fewer particles than parameters; use draws > {n_free} "
            "(e.g. 2x) or a smaller architecture."
        )
    return pm.sample_smc(model=model, random_seed=seed, progressbar=bar, **kw)


def jittered_start(model: Any, random_seed: RandomLike) -> dict[str, Array]:
    """Constrained start: the model's default point with U(-1, 1) jitter (unconstrained)."""
    fn = make_initial_point_fn(
        model=model, jitter_rvs=set(model.free_RVs), return_transformed=False
    )
    seed = None if random_seed is None else np.random.default_rng(random_seed).integers(2**30)
    point = fn(seed)
    names = {rv.name for rv in model.free_RVs}
    return {k: v for k, v in point.items() if k in names}
