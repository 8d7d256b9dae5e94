"""Exact EM on the study data: seconds per iteration next to scikit-learn's GaussianMixture.

The exact EM's iteration should cost about one iteration of a full-covariance GMM with as many
components as paths (18): one E-step (a whitening product per path) and one M-step (a weighted
scatter matrix per path, mapped to the scores). Target: ratio <= 1.5. Both run with one BLAS
thread, interleaved, best of ``--repeat`` timings (the machines are shared, so minima are the
stable figure). Then the default fit is run in one process with its work counted and timed by
phase (starting values, screening, continuation, probes, Newton steps), and 4 random restarts
of 200 iterations with ``n_jobs=2`` are timed and extrapolated to the study's 100 restarts.

    .venv/bin/python benchmarks/bench_em.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

import bayes_dgmm.em.aligned as aligned
import bayes_dgmm.em.driver as driver
import bayes_dgmm.em.restarts as restarts
from bayes_dgmm.em.estimator import DeepGaussianMixture
from bayes_dgmm.experiments.datasets import load_icbinb


def fit_seconds(make, X, n_iter: int) -> float:
    t0 = time.perf_counter()
    make(n_iter).fit(X)
    return time.perf_counter() - t0


def per_iteration(make, X, k: int, repeat: int) -> float:
    """Seconds per iteration: (time of k + 1 iterations - time of 1 iteration) / k, best of."""
    long = min(fit_seconds(make, X, k + 1) for _ in range(repeat))
    short = min(fit_seconds(make, X, 1) for _ in range(repeat))
    return (long - short) / k


class Ledger:
    """Counts and seconds of the work of one fit, by phase (patched into the EM modules)."""

    def __init__(self) -> None:
        self.count: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.phase = "start"

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.count[name] += 1
                self.seconds[name] += time.perf_counter() - t0

        return wrapper


@contextlib.contextmanager
def counting(ledger: Ledger) -> Iterator[None]:
    """Patch the EM's entry points so that every step, probe, start and Newton finish of a
    fit in this process is counted and timed in ``ledger``."""
    saved = {
        (restarts, "exact_step"): restarts.exact_step,
        (restarts, "aligned_init"): restarts.aligned_init,
        (restarts, "newton_finish"): restarts.newton_finish,
        (driver, "_probe"): driver._probe,
    }

    def exact_step(*args: Any, **kwargs: Any) -> Any:
        step = saved[(restarts, "exact_step")](*args, **kwargs)

        def counted(params: Any) -> Any:
            return ledger.timed(f"E+M steps ({ledger.phase})", step)(params)

        return counted

    def probe(*args: Any, **kwargs: Any) -> Any:
        phase, ledger.phase = ledger.phase, f"{ledger.phase}, Aitken probes"
        try:
            return ledger.timed(f"probes ({phase})", saved[(driver, "_probe")])(*args, **kwargs)
        finally:
            ledger.phase = phase

    def iterate(fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ledger.phase = phase
            return fn(*args, **kwargs)

        return wrapper

    restarts.exact_step = exact_step
    restarts.aligned_init = ledger.timed("aligned starts", aligned.aligned_init)
    restarts.newton_finish = ledger.timed("Newton finishes", saved[(restarts, "newton_finish")])
    driver._probe = probe
    saved_iterate = restarts._iterate
    screen = iterate(saved_iterate, "screening")
    cont = iterate(saved_iterate, "continuation")
    saved_continue = restarts.continue_restart

    def continue_restart(*args: Any, **kwargs: Any) -> Any:
        restarts._iterate = cont
        try:
            return ledger.timed("continued restarts", saved_continue)(*args, **kwargs)
        finally:
            restarts._iterate = screen

    restarts.continue_restart = continue_restart
    restarts._iterate = screen
    try:
        yield
    finally:
        restarts.exact_step = saved[(restarts, "exact_step")]
        restarts.aligned_init = saved[(restarts, "aligned_init")]
        restarts.newton_finish = saved[(restarts, "newton_finish")]
        driver._probe = saved[(driver, "_probe")]
        restarts._iterate = saved_iterate
        restarts.continue_restart = saved_continue


def default_fit_breakdown(X: Any, labels: Any, truth_ll: float) -> None:
    """The default fit of the study's architecture, in one process: its work and time by phase."""
    from bayes_dgmm.diagnostics.metrics import layer_aris

    ledger = Ledger()
    est = DeepGaussianMixture((3, 3, 2), n_factors=(11, 6, 2), random_state=0, n_jobs=1)
    with threadpool_limits(1), counting(ledger):
        t0, cpu0 = time.perf_counter(), time.process_time()
        est.fit(X)
        total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    pred = np.stack([est.predict(X, layer=l) for l in (1, 2, 3)], axis=1)
    aris = {k: round(v, 3) for k, v in layer_aris(labels, pred, (3, 3, 2)).items()}
    print(
        f"default fit (random_state=0, n_jobs=1): {total:.1f} s ({cpu:.1f} CPU s, load "
        f"{os.getloadavg()[0]:.1f}), converged {est.converged_} "
        f"({est.criterion_} {est.remaining_:.3g}), log-likelihood {est.lower_bound_:.2f} "
        f"({est.lower_bound_ - truth_ll:+.1f} against the truth), ARI {aris}"
    )
    print(f"  {'work':<44} {'count':>6} {'seconds':>8} {'share':>6}")
    for name in sorted(ledger.seconds, key=lambda k: -ledger.seconds[k]):
        sec = ledger.seconds[name]
        print(f"  {name:<44} {ledger.count[name]:>6} {sec:8.1f} {sec / total:6.1%}")
    two = DeepGaussianMixture((3, 3, 2), n_factors=(11, 6, 2), random_state=0, n_jobs=2)
    t0 = time.perf_counter()
    two.fit(X)
    print(
        f"default fit with n_jobs=2 (restarts on both cores): {time.perf_counter() - t0:.1f} s, "
        f"converged {two.converged_}, log-likelihood {two.lower_bound_ - truth_ll:+.1f} against "
        f"the truth (load {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument(
        "--no-breakdown", dest="breakdown", action="store_false", help="skip the default fit"
    )
    args = parser.parse_args()
    data = load_icbinb()
    X = data.X
    warnings.simplefilter("ignore", ConvergenceWarning)

    def dgmm(n_iter: int) -> DeepGaussianMixture:
        return DeepGaussianMixture(
            (3, 3, 2),
            n_factors=(11, 6, 2),
            init=data.params,
            max_iter=n_iter,
            stopping="fixed",
        )

    def gmm(n_iter: int) -> GaussianMixture:
        return GaussianMixture(18, covariance_type="full", max_iter=n_iter, tol=0.0, random_state=0)

    if args.breakdown:
        default_fit_breakdown(X, data.labels, data.params.score(X))

    with threadpool_limits(1):
        t_dgmm = per_iteration(dgmm, X, args.iters, args.repeat)
        t_gmm = per_iteration(gmm, X, args.iters, args.repeat)
        t_20 = min(fit_seconds(dgmm, X, 20) for _ in range(args.repeat))
    print(
        f"study data N={X.shape[0]}, J={X.shape[1]}, G=(3,3,2), R=(11,6,2), 18 paths, 1 BLAS thread"
    )
    print(f"exact EM              {t_dgmm * 1e3:8.2f} ms / iteration")
    print(f"GaussianMixture(18)   {t_gmm * 1e3:8.2f} ms / iteration")
    print(f"ratio                 {t_dgmm / t_gmm:8.2f}   (target <= 1.5)")
    print(f"exact EM, 20 iterations (fit from the true parameters): {t_20:.3f} s")

    def restarts(n_init: int, n_jobs: int) -> DeepGaussianMixture:
        return DeepGaussianMixture(
            (3, 3, 2),
            n_factors=(11, 6, 2),
            init="random",
            n_init=n_init,
            max_iter=200,
            stopping="fixed",
            random_state=0,
            n_jobs=n_jobs,
        )

    # CPU seconds of one restart in this process: what a restart costs on an idle core
    cpu0 = time.process_time()
    restarts(1, 1).fit(X)
    cpu_restart = time.process_time() - cpu0
    t0 = time.perf_counter()
    est = restarts(args.restarts, 2).fit(X)
    wall = time.perf_counter() - t0
    per_restart = wall / args.restarts
    print(f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"one random restart x 200 iterations: {cpu_restart:.1f} CPU s")
    print(
        f"{args.restarts} random restarts x 200 iterations, n_jobs=2: {wall:.1f} s wall "
        f"({per_restart:.2f} s per restart on 2 workers)"
    )
    print(
        f"extrapolated: 100 restarts x 200 iterations on 2 cores: "
        f"{100 * per_restart / 60:.1f} min from the n_jobs=2 wall time, "
        f"{100 * cpu_restart / 2 / 60:.1f} min from CPU time (target < 10 min)"
    )
    print(f"best of those restarts: log-likelihood {est.lower_bound_:.2f}")


if __name__ == "__main__":
    main()
