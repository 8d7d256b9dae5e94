"""The posterior mode on the unconstrained scale: the MAP route and the Laplace centre.

PyMC's ``find_MAP`` maximises the density of the constrained parameters (no Jacobian).
Under the model's log-normal priors on the noise variances (sd 5 on the log scale) that
density keeps rising as a variance falls to ``exp(mu - 25)``, so ``find_MAP`` drives some of
them to ~1e-11 of their scale, where the log density is noisy at 0.01 nats and its line
searches fail. The density of the unconstrained parameters (Jacobian included) is smooth
there and is the one the Laplace approximation and the samplers see; its mode is found here
by scipy's BFGS on the compiled flat log density and gradient (the dense inverse-Hessian
update costs far less than one gradient at the sizes of these models).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import xarray as xr
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning

from bayes_dgmm.bayes.backends.curvature import DECREMENT_TOL, second_order
from bayes_dgmm.bayes.backends.flat import (
    compile_flat_logp_grad,
    draws_dataset,
    flatten_point,
    observed_dataset,
)
from bayes_dgmm.bayes.model import transformed_point

Array = NDArray[np.float64]

#: Largest gradient entry of the log density (unconstrained scale) at a converged mode.
MODE_GTOL = 1e-3


@dataclass
class ModeResult:
    """Where the optimiser ended and the figures that say whether it is a mode.

    ``converged`` holds when the largest gradient entry is at most :data:`MODE_GTOL`: an
    optimiser that stalls (scipy's relative-reduction and precision-loss stops) cannot meet it.
    """

    x: Array
    logp: float
    max_abs_gradient: float
    nit: int
    nfev: int
    message: str

    @property
    def converged(self) -> bool:
        return bool(self.max_abs_gradient <= MODE_GTOL)


def posterior_mode(
    model: Any, start: Mapping[str, Any], *, maxiter: int = 1000, mode: str | None = None
) -> ModeResult:
    """Maximise ``model``'s log density (unconstrained scale) from ``start`` (constrained
    values by name) with BFGS, at most ``maxiter`` iterations."""
    fn, _ = compile_flat_logp_grad(model, mode)
    x0 = flatten_point(model, transformed_point(model, start))

    # The best point evaluated: when a line search fails, scipy's BFGS can end at a point
    # worse than where it started (measured on the study data with a wide loadings prior:
    # noise variances of 1e24 after 21 iterations), and a mode search must never lose ground.
    best: list[Any] = [np.inf, x0]

    def objective(x: Array) -> tuple[float, Array]:
        logp, grad = fn(x)
        value, grad = -float(logp), -np.asarray(grad, dtype=float)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            # outside the density's support numerically: a wall for the line search
            return np.inf, np.zeros_like(x)
        if value < best[0]:
            best[:] = [value, np.array(x, dtype=float)]
        return value, grad

    with np.errstate(all="ignore"):
        res = scipy.optimize.minimize(
            objective,
            x0,
            jac=True,
            method="BFGS",
            options={"maxiter": int(maxiter), "gtol": MODE_GTOL / 10},
        )
    x = np.asarray(res.x, dtype=float)
    logp, grad = fn(x)
    if not float(-logp) <= best[0]:  # also when logp is not finite
        x = best[1]
        logp, grad = fn(x)
    return ModeResult(
        x=x,
        logp=float(logp),
        max_abs_gradient=float(np.max(np.abs(grad))),
        nit=int(res.nit),
        nfev=int(res.nfev),
        message=str(res.message),
    )


def run_map(
    model: Any, start: Mapping[str, Any], *, maxiter: int = 1000, mode: str | None = None
) -> Any:
    """The MAP fit: a DataTree whose ``posterior`` is the mode (one chain, one draw, every
    variable on its own scale), with ``observed_data`` and the optimiser's figures as
    posterior attributes (``optimizer_max_abs_gradient``, ``optimizer_nit``, ...).

    BFGS for at most ``maxiter`` iterations, then, unless its gradient already meets
    :data:`MODE_GTOL`, Newton steps on the finite-difference Hessian
    (:func:`~bayes_dgmm.bayes.backends.curvature.second_order`). Converged: the largest
    gradient entry is at most :data:`MODE_GTOL`, or the Hessian off the top layer's exact
    rotations is positive definite and the Newton decrement is below ``DECREMENT_TOL``
    (``optimizer_newton_decrement``, ``optimizer_nonpositive_eigenvalues``).
    """
    res = posterior_mode(model, start, maxiter=maxiter, mode=mode)
    x, logp, gmax, decrement, bad = res.x, res.logp, res.max_abs_gradient, float("nan"), -1
    if not res.converged:
        check = second_order(model, res.x)
        x, decrement, bad = check.x, check.decrement, check.bad
        value, grad = compile_flat_logp_grad(model, mode)[0](x)
        logp, gmax = float(value), float(np.max(np.abs(np.asarray(grad))))
    converged = gmax <= MODE_GTOL or (bad == 0 and decrement < DECREMENT_TOL)
    if not converged:
        warnings.warn(
            f"method='map' did not converge in maxiter={maxiter} iterations: the largest "
            f"gradient entry is {gmax:.3g} (criterion: <= {MODE_GTOL}), the Newton decrement "
            f"{decrement:.3g} nats with {bad} negative Hessian eigenvalues (criterion: < "
            f"{DECREMENT_TOL} and none); raise maxiter, or start from a converged EM fit.",
            ConvergenceWarning,
            stacklevel=3,
        )
    posterior = draws_dataset(model, x[None])
    posterior.attrs.update(
        optimizer_success=int(converged),
        optimizer_message=res.message,
        optimizer_nit=res.nit,
        optimizer_nfev=res.nfev,
        optimizer_fun=-logp,
        optimizer_max_abs_gradient=gmax,
        optimizer_newton_decrement=decrement,
        optimizer_nonpositive_eigenvalues=bad,
    )
    return xr.DataTree.from_dict({"posterior": posterior, "observed_data": observed_dataset(model)})
