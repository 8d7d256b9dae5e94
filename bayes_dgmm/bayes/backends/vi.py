"""ADVI (mean-field and full-rank) started at the right scale and run until the ELBO stops.

The scale comes from a diagonal Laplace approximation at the start; the optimiser's steps are
scaled by it too; the run stops when the ELBO has stopped improving, measured against its
own noise (:class:`ELBOConvergence`). Why each piece: ``docs/bayesian-model.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from numpy.typing import NDArray
from pymc.model.transform.optimization import freeze_dims_and_data
from pymc.variational.callbacks import Callback
from pytensor.compile.sharedvalue import SharedVariable

from bayes_dgmm._validation import FitError, RandomLike
from bayes_dgmm.bayes.backends.flat import compile_flat_logp_grad, flatten_point
from bayes_dgmm.bayes.backends.laplace import negative_hessian
from bayes_dgmm.bayes.model import compile_mode, transformed_point, uses_minibatch

Array = NDArray[np.float64]

logger = logging.getLogger(__name__)

#: Steps of the means, in units of each coordinate's Laplace standard deviation, and of the
#: log-scale parameters (softplus-inverse of the sds), before adagrad's normalisation.
MEAN_STEP = 0.1
SCALE_STEP = 0.02
#: Standard deviation given to a coordinate whose curvature at the start is not positive.
FALLBACK_SD = 0.1


class ELBOConvergence(Callback):
    """Stop when the mean loss of the last ``window`` iterations is no lower than that of the
    ``window`` before it, within ``z`` standard errors of the difference.

    A run that still gains (the loss falls by more than its noise over a window) cannot meet
    it, however slowly it moves; ``converged`` and ``iteration`` say whether and where it held.
    """

    def __init__(self, window: int = 500, z: float = 2.0) -> None:
        self.window = int(window)
        self.z = float(z)
        self.converged = False
        self.iteration: int | None = None
        self.gain = math.nan

    def __call__(self, approx: Any, losses: Any, i: int) -> None:
        w = self.window
        if i % w or len(losses) < 2 * w:
            return
        last = np.asarray(losses[-w:], dtype=float)
        prev = np.asarray(losses[-2 * w : -w], dtype=float)
        if not (np.all(np.isfinite(last)) and np.all(np.isfinite(prev))):
            return
        self.gain = float(prev.mean() - last.mean())
        se = math.sqrt(last.var(ddof=1) / w + prev.var(ddof=1) / w)
        if self.gain < self.z * se:
            self.converged, self.iteration = True, int(i)
            raise StopIteration(f"ELBO stopped improving at iteration {i}")


def laplace_sd(model: Any, start: Mapping[str, Any]) -> Array:
    """Diagonal Laplace standard deviations at ``start`` on the unconstrained scale (flat,
    in ``model.free_RVs`` order): ``1 / sqrt(-d2 logp / d theta_i^2)``, the second
    derivatives by forward differences of the compiled gradient (one gradient per
    coordinate, :func:`~bayes_dgmm.bayes.backends.laplace.negative_hessian`). For a
    Gaussian posterior these are exactly mean-field VI's optimal sds.
    """
    fn, _ = compile_flat_logp_grad(model)
    x0 = flatten_point(model, transformed_point(model, start))
    curv = np.diag(negative_hessian(fn, x0)).copy()
    good = np.isfinite(curv) & (curv > 0)
    if not good.all():
        logger.warning(
            "laplace_sd: %d of %d coordinates have no positive curvature at the start; "
            "they start at sd %g",
            int((~good).sum()),
            x0.size,
            FALLBACK_SD,
        )
    return np.where(good, 1.0 / np.sqrt(np.where(good, curv, 1.0)), FALLBACK_SD)


def _softplus_inv(sd: Array) -> Array:
    return np.log(np.expm1(sd))


def _scaled_adagrad(step: dict[str, Array]) -> Any:
    """adagrad_window with a learning rate per coordinate of each VI parameter (by name)."""

    def optimizer(loss_or_grads: Any, params: Any) -> Any:
        grads: Any = loss_or_grads
        if not isinstance(loss_or_grads, list):
            grads = pt.grad(loss_or_grads, params)
        updates: dict[Any, Any] = {}
        for param, grad in zip(params, grads, strict=True):
            updates.update(pm.adagrad_window([grad], [param], learning_rate=step[param.name]))
        return updates

    return optimizer


def _start_scales(method: str, inference: Any, sd: Array) -> dict[str, Array]:
    """Set q's starting scales to ``sd`` (full-rank: ``L`` diagonal) and return the steps of
    :func:`_scaled_adagrad`, scaled by ``sd``, for each of q's parameters."""
    group = inference.approx.groups[0]
    d = sd.size
    if method == "advi":
        group.params_dict["rho"].set_value(_softplus_inv(sd))
        return {"mu": MEAN_STEP * sd, "rho": np.full(d, SCALE_STEP)}
    rows, cols = np.tril_indices(d)
    diag = rows == cols
    tril = np.where(diag, _softplus_inv(sd[rows]), 0.0)
    group.params_dict["L_tril"].set_value(tril)
    # Each of the d(d-1)/2 off-diagonal entries adds to its row's variance: steps of
    # MEAN_STEP sd / d keep one iteration's random-walk growth of a row below sd^2 / d.
    off = MEAN_STEP * sd[rows] / d
    return {"mu": MEAN_STEP * sd, "L_tril": np.where(diag, SCALE_STEP, off)}


def _fit(inference: Any, method: str, n: int, progressbar: bool, kw: dict[str, Any]) -> Any:
    """``inference.fit(n=n, progressbar=progressbar, **kw)``, PyMC's line per NaN parameter
    silenced; a divergence is a :class:`FitError` that says what to try."""
    vi_log = logging.getLogger("pymc.variational.inference")
    level = vi_log.level
    vi_log.setLevel(logging.CRITICAL)  # its one line per NaN parameter; ours says it below
    try:
        return inference.fit(n=n, progressbar=progressbar, **kw)
    except FloatingPointError:
        done = int(np.size(getattr(inference, "hist", ())))
        raise FitError(
            f"method={method!r} diverged: its step gave NaN parameters after {done} of "
            f"n={n} iterations. The start's posterior sds (diagonal Laplace) are too small "
            "or too large somewhere; start from a converged fit (init=...), or use "
            "method='laplace' or 'map'."
        ) from None
    finally:
        vi_log.setLevel(level)


def _loss_group(hist: Array, check: ELBOConvergence, n: int, window: int) -> xr.Dataset:
    """The ``loss`` group: the loss of each iteration, and whether the ELBO converged."""
    loss = xr.Dataset({"loss": ("iteration", hist)})
    loss.attrs.update(
        converged=int(check.converged),
        iterations=int(hist.size),
        max_iterations=int(n),
        criterion=(
            f"mean loss of the last {window} iterations within {check.z:g} standard errors "
            f"of the {window} before"
        ),
        last_window_gain=float(check.gain),
    )
    return loss


def run_vi(
    method: str,
    model: Any,
    start: dict[str, Array],
    *,
    n: int,
    draws: int,
    random_seed: RandomLike,
    progressbar: bool,
    window: int = 500,
    sd: Array | None = None,
    **kw: Any,
) -> tuple[Any, ELBOConvergence]:
    """Mean-field (``"advi"``) or full-rank (``"fullrank_advi"``) ADVI from ``start``.

    Both start at ``start`` with the diagonal Laplace sds (full-rank: ``L`` diagonal), take
    steps scaled by those sds, and stop at :class:`ELBOConvergence` or after ``n``
    iterations. Returns the DataTree of ``draws`` draws of q (with a ``loss`` group whose
    attributes say whether the ELBO converged) and the convergence callback. ``sd``: the
    starting sds (flat, ``model.free_RVs`` order) when ``model``'s density cannot give them,
    as a minibatch model's random one cannot (take them from the full-data model).
    """
    if (
        compile_mode().upper() == "JAX"
        and not uses_minibatch(model)
        and any(isinstance(v, SharedVariable) for v in model.data_vars)
    ):
        # JAX draws random numbers only for sizes known at compile time: fix the dims and
        # data of the model (a copy; the same variables and names)
        model = freeze_dims_and_data(model)
    sd = laplace_sd(model, start) if sd is None else np.asarray(sd, dtype=float)
    cls = pm.ADVI if method == "advi" else pm.FullRankADVI
    inference = cls(model=model, start=start, random_seed=random_seed)
    step = _start_scales(method, inference, sd)
    check = ELBOConvergence(window=window)
    callbacks = [*kw.pop("callbacks", []), check]
    kw.setdefault("obj_optimizer", _scaled_adagrad(step))
    approx = _fit(inference, method, n, progressbar, {**kw, "callbacks": callbacks})
    # q's draws come from a function with a symbolic size, which JAX cannot compile; it runs
    # once, so the C backend is cheap here.
    with pytensor.config.change_flags(mode="FAST_RUN"):
        idata = approx.sample(draws=draws, random_seed=random_seed, return_inferencedata=True)
    idata["loss"] = _loss_group(np.asarray(approx.hist), check, n, window)
    return idata, check
