"""The one EM loop: a step function, a stopping rule, acceleration and a convergence measure.

Every EM variant of the package (the exact EM with or without parameter expansion, the
stochastic EM, the short inner fits of the aligned start) is a *step*: ``params -> (new
params, log-likelihood of params, empty components)``. :func:`run_em` iterates it, optionally
with Anderson acceleration under a monotonicity safeguard, and measures convergence with
Aitken's estimate of the limiting log-likelihood (:func:`aitken_remaining`). The criteria and
their measurements are in ``docs/recover.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import LinAlgError

from bayes_dgmm.em.anderson import Anderson
from bayes_dgmm.model.params import DGMMParams

Array = NDArray[np.float64]

logger = logging.getLogger(__name__)

#: Stopping rules of :func:`run_em`.
STOPPING_RULES = ("aitken", "tol", "fixed", "deepgmm", "stationary")

#: Plain steps per block of the Aitken estimate, and blocks per estimate.
AITKEN_BLOCK = 5
AITKEN_BLOCKS = 4
#: A probe after accelerated steps first runs this many plain steps: the extrapolation
#: excites fast modes whose decay would otherwise pass for the rate of the slow one.
PROBE_SETTLE = 10

#: With acceleration, an Aitken probe runs once the last ``PROBE_WINDOW`` iterations gained
#: less than ``tol * N`` in all.
PROBE_WINDOW = 20


@dataclass(frozen=True)
class StepOutput:
    """What one EM step returns: the new parameters, the log-likelihood of the *input*
    parameters (a by-product of the E-step), the components left empty and those whose
    update could not be computed (singular); both kept their previous parameters."""

    params: DGMMParams
    log_likelihood: float
    empty: tuple[tuple[int, int], ...] = ()
    singular: tuple[tuple[int, int], ...] = ()


Step = Callable[[DGMMParams], StepOutput]


@dataclass
class EMResult:
    """Outcome of :func:`run_em`.

    Attributes
    ----------
    params : the final parameters
    log_likelihood : the log-likelihood at the start and after every iteration
    n_iter : iterations done (``len(log_likelihood) - 1``)
    converged : whether the convergence criterion holds at the end (module docstring)
    remaining : Aitken's estimate of the log-likelihood still to gain, in nats (``inf`` when
        the gains do not shrink; ``nan`` when not measured)
    empty : (layer, component) pairs left empty by the last step
    singular : (layer, component) pairs whose update the last step could not compute
    failure : why the run stopped early, or None
    criterion : what ``remaining`` measures: ``"aitken"`` (:func:`aitken_remaining`) or
        ``"newton"`` (the Newton decrement of :func:`bayes_dgmm.em.newton.newton_finish`)
    """

    params: DGMMParams
    log_likelihood: list[float]
    n_iter: int
    converged: bool
    remaining: float = math.nan
    empty: list[tuple[int, int]] = field(default_factory=list)
    singular: list[tuple[int, int]] = field(default_factory=list)
    failure: str | None = None
    criterion: str = "aitken"


def aitken_remaining(history: Sequence[float], block: int = AITKEN_BLOCK) -> float:
    """Aitken's estimate of the log-likelihood still to gain from the end of ``history``.

    The last ``AITKEN_BLOCKS`` blocks of ``block`` iterations give gains ``d_1..d_4``; the
    rate per block is ``a = ((d_3 + d_4) / (d_1 + d_2))^(1/2)`` (two blocks pooled, which
    steadies it against rounding in the gains), and a linearly converging sequence still
    gains ``d_4 a / (1 - a)`` (Aitken's delta-squared limit; Boehning et al. 1994,
    McNicholas et al. 2010). Gains below the rounding level of the log-likelihood count as
    zero; gains that do not shrink (``a >= 1``) give ``inf``: a crawl is never converged.

    Parameters
    ----------
    history : log-likelihoods of consecutive iterations of one monotone map (at least
        ``AITKEN_BLOCKS * block + 1`` of them)
    block : iterations per block

    Returns
    -------
    float, nats (``nan`` when the history is too short)
    """
    n = AITKEN_BLOCKS * block + 1
    if len(history) < n:
        return math.nan
    h = np.asarray(history[-n:], dtype=np.float64)[::block]
    d = np.diff(h)
    noise = 1e-12 * block * max(1.0, float(np.max(np.abs(h))))
    if d[-1] <= noise:
        return 0.0
    early, late = d[0] + d[1], d[2] + d[3]
    if early <= 0.0:
        return math.inf
    a = math.sqrt(max(late, 0.0) / early)
    if a >= 1.0:
        return math.inf
    return float(d[-1] * a / (1.0 - a))


#: deepgmm's moving-average window and the iterations before its rule may stop.
DEEPGMM_MA_WINDOW = 5
DEEPGMM_MIN_ITER = 6


def deepgmm_should_stop(logliks: Sequence[float], eps: float) -> bool:
    """deepgmm's moving-average stopping rule on the log-likelihood history.

    ``logliks[0]`` is the log-likelihood at the initial parameters and ``logliks[k]`` the
    one after iteration ``k`` (deepgmm's ``likelihood`` vector). With ``hh = len - 1``
    iterations done, the rule stops when ``hh > 5`` and

        (mean(logliks[-5:]) - mean(logliks[-6:-1])) / |mean(logliks[-6:-1])| <= eps,

    i.e. when the 5-point trailing moving average rises by at most ``eps`` relatively, or
    falls (``deep.sem.alg.3``: ``ratio <- (ma(likelihood, 5)[hh + 1] -
    ma(likelihood, 5)[hh]) / abs(ma(likelihood, 5)[hh])``, loop ``while ratio > eps``).
    A non-finite ratio also stops. For ``hh <= 5`` it never stops (deepgmm sets
    ``ratio = 2 eps``, which exceeds ``eps`` for ``eps > 0``).
    """
    hist = np.asarray(logliks, dtype=np.float64)
    if hist.ndim != 1:
        raise ValueError(f"logliks has shape {hist.shape}; pass a 1-D history of floats.")
    if hist.size - 1 < DEEPGMM_MIN_ITER:
        return False
    w = DEEPGMM_MA_WINDOW
    ma_new = hist[-w:].mean()
    ma_old = hist[-w - 1 : -1].mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (ma_new - ma_old) / abs(ma_old)
    return not bool(ratio > eps)


#: The stationarity rule compares the means of two halves of this many iterations each, and
#: is checked every this many iterations (few checks: a drifting run rarely passes by chance).
STATIONARY_WINDOW = 25
#: Largest ``|z|`` of the drift between the halves that counts as none.
STATIONARY_Z = 2.0


def stationary_drift(
    logliks: Sequence[float], window: int = STATIONARY_WINDOW
) -> tuple[float, float]:
    """Drift of a stochastic EM's log-likelihood over its last ``2 * window`` iterations.

    Geweke's (1992) comparison of two means: the last ``window`` log-likelihoods against
    the ``window`` before them. The standard error of the difference is that of two means of
    the *last* half's noise (the variance about its least-squares line, inflated for its
    lag-1 autocorrelation by an AR(1) effective sample size ``n (1 - r) / (1 + r)``): under
    stationarity both halves share it, and a transient in the earlier half then raises the
    drift, not the noise it is judged against. A stochastic EM is a Markov chain; it has
    converged (in distribution) when this drift is within its noise, which a run still
    climbing faster than its noise cannot meet.

    Returns
    -------
    (drift, z): the difference of the means (nats) and its z-score; ``(nan, nan)`` when
    fewer than ``2 * window`` iterations were run.
    """
    hist = np.asarray(logliks, dtype=np.float64)
    if hist.size - 1 < 2 * window:
        return math.nan, math.nan
    earlier, last = hist[-2 * window :].reshape(2, window)
    drift = float(last.mean() - earlier.mean())
    # the noise about the last half's straight line: a climb inside the half is drift, not
    # (autocorrelated) noise
    t = np.arange(window) - (window - 1) / 2
    dev = last - last.mean() - t * float(t @ last) / float(t @ t)
    ss = float(dev @ dev)
    r = float(dev[:-1] @ dev[1:]) / ss if ss > 0 else 0.0
    r = min(max(r, 0.0), 0.95)
    var = 2.0 * ss / (window - 2) / window * (1 + r) / (1 - r)
    if var == 0.0:
        return drift, 0.0 if drift == 0.0 else math.copysign(math.inf, drift)
    return drift, drift / math.sqrt(var)


def _stationary(history: Sequence[float]) -> bool:
    return bool(abs(stationary_drift(history)[1]) <= STATIONARY_Z)


# ---------------------------------------------------------------------- the loop
@dataclass
class _State:
    params: DGMMParams
    out: StepOutput  # the step evaluated at params
    history: list[float]


def _advance(step: Step, candidate: DGMMParams) -> StepOutput | None:
    """Evaluate the step at ``candidate``; None when its log-likelihood is not finite or
    the linear algebra fails (the candidate is then refused)."""
    try:
        out = step(candidate)
    except (LinAlgError, FloatingPointError, ValueError):
        return None
    return out if math.isfinite(out.log_likelihood) else None


def _should_stop_plain(history: list[float], stopping: str, tol: float, n_samples: int) -> bool:
    if stopping == "fixed" or len(history) < 2:
        return False
    if stopping == "deepgmm":
        return bool(deepgmm_should_stop(history, tol))
    if stopping == "stationary":
        n_iter = len(history) - 1
        return n_iter % STATIONARY_WINDOW == 0 and _stationary(history)
    if stopping == "tol":
        return abs(history[-1] - history[-2]) / n_samples < tol
    return aitken_remaining(history) <= tol * n_samples


def run_em(
    step: Step,
    params: DGMMParams,
    *,
    n_samples: int,
    max_iter: int,
    stopping: str = "aitken",
    tol: float = 1e-3,
    accelerate: bool = False,
    certify: bool = True,
    handover: bool = False,
    label: str = "",
    verbose: int = 0,
) -> EMResult:
    """Iterate ``step`` from ``params`` until the stopping rule holds or ``max_iter``.

    Parameters
    ----------
    step : one EM iteration (:class:`StepOutput`)
    params : starting values
    n_samples : N (tolerances are per observation)
    max_iter : most iterations (an accelerated iteration counts once)
    stopping : ``"aitken"``: Aitken's estimated remaining gain below ``tol * N``;
        ``"tol"``: one iteration's gain below ``tol * N`` (scikit-learn's rule);
        ``"fixed"``: ``max_iter`` iterations; ``"deepgmm"``: deepgmm's moving average (for
        the stochastic EM, whose log-likelihood is not monotone); ``"stationary"``: no drift
        of the log-likelihood beyond its noise (:func:`stationary_drift`, checked every
        :data:`STATIONARY_WINDOW` iterations and at the end; for the stochastic EM)
    tol : per observation
    accelerate : Anderson acceleration (:mod:`bayes_dgmm.em.anderson`) of a monotone step:
        a proposal whose log-likelihood is lower than the current one is replaced by the
        plain step, so the log-likelihood never decreases
    certify : after the loop, measure convergence with ``AITKEN_BLOCKS * AITKEN_BLOCK`` plain
        steps when the last iterations cannot (accelerated or too few); with
        ``stopping="fixed"`` these steps are not kept, so the run has exactly ``max_iter``
        iterations
    handover : with acceleration and ``stopping="aitken"``, end the run at the first Aitken
        probe that finds the EM crawling (an estimated remaining gain above ``tol * N``),
        unconverged, for a faster method to finish (:mod:`bayes_dgmm.em.newton`)
    label, verbose : logging (``verbose >= 2``: one line per iteration)

    Returns
    -------
    EMResult ; ``converged`` is Aitken's criterion for the monotone rules, deepgmm's rule
    for ``stopping="deepgmm"`` and the stationarity rule for ``stopping="stationary"``
    (``remaining`` is then the drift, :func:`stationary_drift`)
    """
    if stopping not in STOPPING_RULES:
        raise ValueError(f"stopping={stopping!r} is not one of {STOPPING_RULES}.")
    first = _advance(step, params)
    if first is None:
        raise FloatingPointError(
            "the log-likelihood of the starting values is not finite; check the data for "
            "extreme values or give other starting values."
        )
    anderson = Anderson(params, first.params) if accelerate else None
    state = _State(params, first, [first.log_likelihood])
    rule = (stopping, tol, n_samples)
    run = _loop(
        step, state, anderson, max_iter, rule, handover=handover, label=label, verbose=verbose
    )
    converged, remaining = _verdict(run, step, rule, certify=certify, handover=handover)
    return EMResult(
        params=run.state.params,
        log_likelihood=run.state.history,
        n_iter=len(run.state.history) - 1,
        converged=converged,
        remaining=remaining,
        empty=list(run.state.out.empty),
        singular=list(run.state.out.singular),
        failure=run.failure,
    )


@dataclass
class _Run:
    """Where the loop of :func:`run_em` ended, before the final verdict."""

    state: _State
    failure: str | None = None
    converged: bool = False
    remaining: float = math.nan
    plain_since: int = 0  # plain iterations since the last accelerated one
    last_probe: int = 0  # history length after the last Aitken probe


def _loop(
    step: Step,
    state: _State,
    anderson: Anderson | None,
    max_iter: int,
    rule: tuple[str, float, int],
    *,
    handover: bool,
    label: str,
    verbose: int,
) -> _Run:
    """The iterations of :func:`run_em` (its parameters; ``rule`` is ``(stopping, tol, N)``),
    up to its stopping rule."""
    stopping, tol, n_samples = rule
    run = _Run(state)
    while len(run.state.history) - 1 < max_iter:
        it = len(run.state.history)
        candidate, out, accelerated = _iterate(step, run.state, anderson)
        if out is None:
            run.failure = f"the log-likelihood became non-finite at iteration {it}"
            break
        run.state = _State(candidate, out, [*run.state.history, out.log_likelihood])
        run.plain_since = 0 if accelerated else run.plain_since + 1
        if verbose >= 2:
            logger.info("%s iteration %d: log-likelihood %.6f", label, it, out.log_likelihood)
        if anderson is not None:
            anderson.record(candidate, out.params)
        if stopping == "aitken" and anderson is not None:
            if _probe_due(run.state.history, run.last_probe, max_iter, tol * n_samples):
                run.state, run.remaining, run.failure = _probe(run.state, step, keep=True)
                run.last_probe = len(run.state.history)
                anderson.restart(run.state.params, run.state.out.params)
                if run.failure is not None:
                    break
                if run.remaining <= tol * n_samples:
                    run.converged = True
                    break
                if handover:
                    break
        elif _should_stop_plain(run.state.history, stopping, tol, n_samples):
            run.converged = True
            if stopping == "aitken":
                run.remaining = aitken_remaining(run.state.history)
            break
    return run


def _iterate(
    step: Step, state: _State, anderson: Anderson | None
) -> tuple[DGMMParams, StepOutput | None, bool]:
    """One iteration: the parameters taken, the step at them and whether they were the
    Anderson proposal. The proposal is taken only where its log-likelihood is not below the
    current one; else the plain step (the safeguard: a plain step never decreases it)."""
    proposal = anderson.propose() if anderson is not None else None
    if anderson is not None and proposal is not None:
        out = _advance(step, proposal)
        if out is not None and out.log_likelihood >= state.history[-1]:
            return proposal, out, True
        anderson.clear()
    return state.out.params, _advance(step, state.out.params), False


def _probe_due(history: list[float], last_probe: int, max_iter: int, threshold: float) -> bool:
    """Whether an accelerated run probes now: the last :data:`PROBE_WINDOW` iterations
    gained at most ``threshold`` nats, none was probed in them, and the budget has room."""
    window = history[-PROBE_WINDOW - 1 :]
    room = max_iter - (len(history) - 1) >= PROBE_SETTLE + AITKEN_BLOCKS * AITKEN_BLOCK
    return room and len(history) - last_probe > PROBE_WINDOW and window[-1] - window[0] <= threshold


def _verdict(
    run: _Run, step: Step, rule: tuple[str, float, int], *, certify: bool, handover: bool
) -> tuple[bool, float]:
    """``(converged, remaining)`` at the end of :func:`run_em` (its parameters; ``rule`` is
    ``(stopping, tol, N)``)."""
    stopping, tol, n_samples = rule
    state, failure, converged, remaining = run.state, run.failure, run.converged, run.remaining
    if stopping == "stationary":
        # at max_iter the end is judged too: is the run stationary where the budget ends?
        remaining = stationary_drift(state.history)[0]
        return (converged or _stationary(state.history)) and failure is None, remaining
    if stopping == "deepgmm" or failure is not None:
        return converged and failure is None, remaining
    if (stopping == "aitken" and converged) or (handover and run.last_probe):
        return converged, remaining
    if not certify:
        return converged and stopping == "tol", remaining
    # the run stopped by another rule (or at max_iter): measure where it stands; the probe's
    # steps are not kept, so the run never exceeds max_iter
    if run.plain_since >= PROBE_SETTLE + AITKEN_BLOCKS * AITKEN_BLOCK:
        remaining = aitken_remaining(state.history)
    else:
        _, remaining, _ = _probe(state, step, keep=False)
    return remaining <= tol * n_samples, remaining


def _probe(state: _State, step: Step, *, keep: bool) -> tuple[_State, float, str | None]:
    """``PROBE_SETTLE + AITKEN_BLOCKS * AITKEN_BLOCK`` plain steps and Aitken's estimate on
    the last ones; the steps are kept in the history when ``keep``."""
    probe = _State(state.params, state.out, [state.history[-1]])
    for _ in range(PROBE_SETTLE + AITKEN_BLOCKS * AITKEN_BLOCK):
        candidate = probe.out.params
        out = _advance(step, candidate)
        if out is None:
            return state, math.nan, "the log-likelihood became non-finite in a plain step"
        probe = _State(candidate, out, [*probe.history, out.log_likelihood])
    remaining = aitken_remaining(probe.history)
    if not keep:
        return state, remaining, None
    return _State(probe.params, probe.out, [*state.history, *probe.history[1:]]), remaining, None
