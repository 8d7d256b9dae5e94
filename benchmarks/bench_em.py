"""Exact EM on the study data: seconds per iteration next to scikit-learn's GaussianMixture.

The exact EM's iteration should cost about one iteration of a full-covariance GMM with as many
components as paths (18): one E-step (a whitening product per path) and one M-step (a weighted
scatter matrix per path, mapped to the scores). Target: ratio <= 1.5. Both run with one BLAS
thread, interleaved, best of ``--repeat`` timings (the machines are shared, so minima are the
stable figure). Then 4 restarts of 200 iterations with ``n_jobs=2`` are timed and extrapolated
to the study's 100 restarts.

    .venv/bin/python benchmarks/bench_em.py
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--restarts", type=int, default=4)
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
