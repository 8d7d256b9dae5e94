"""Exact EM and scoring at large N: time per iteration and peak memory, N = 1e4, 1e5, 1e6.

Data of the study's design (``icbinb_like_params``: J = 17, G = (3, 3, 2), R = (11, 6, 2)),
simulated. For each N: one exact-EM iteration from the true parameters (E-step in blocks of
``CHUNK_ROWS`` rows) and ``score_samples``, best of ``--repeat`` calls, one BLAS thread. Peak
memory is ``tracemalloc``'s peak during one call, net of the data (numpy's allocations are
traced). Time should grow linearly in N. Memory should stay flat once N exceeds one block,
apart from the (N,) result of scoring. With ``--advi``: seconds per 1000 iterations of
minibatch ADVI (``batch_size`` rows per iteration), which should not depend on N.

    .venv/bin/python benchmarks/bench_large_n.py [--sizes 10000 100000 1000000] [--advi]
"""

from __future__ import annotations

import argparse
import functools
import time
import tracemalloc

import numpy as np
from _timing import best_time
from threadpoolctl import threadpool_limits


def advi_per_1000(X: np.ndarray, truth, batch_size: int) -> float:
    """Seconds per 1000 minibatch-ADVI iterations: 1200 minus 200 iterations, after a
    10-iteration warm-up that pays the cold C compile, so what is left of the compile
    (a cache lookup, the same in both) cancels. q starts at sd 0.01 everywhere; the ELBO criterion
    is switched off (a window longer than the run)."""
    import warnings

    from bayes_dgmm.bayes.backends.flat import n_free_variables
    from bayes_dgmm.bayes.backends.vi import run_vi
    from bayes_dgmm.bayes.model import build_model, params_to_point
    from bayes_dgmm.model.spec import DGMMSpec

    spec = DGMMSpec((3, 3, 2), (11, 6, 2))
    model = build_model(X, spec, batch_size=batch_size)
    start = params_to_point(truth, model)
    sd = np.full(n_free_variables(model), 0.01)
    times = []
    for n in (10, 200, 1200):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_vi(
                "advi",
                model,
                start,
                n=n,
                draws=1,
                random_seed=0,
                progressbar=False,
                window=10**6,
                sd=sd,
            )
        times.append(time.perf_counter() - t0)
    return times[2] - times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--advi", action="store_true", help="also minibatch ADVI")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    from bayes_dgmm.em.estep import CHUNK_ROWS
    from bayes_dgmm.em.exact import exact_step
    from bayes_dgmm.experiments.datasets import icbinb_like_params

    truth = icbinb_like_params(random_state=0)
    print(f"block of the E-step and of scoring: {CHUNK_ROWS} rows; one BLAS thread")
    print(
        f"{'N':>9} {'EM iter s':>10} {'s per 1e4 rows':>15} {'EM peak MiB':>12} "
        f"{'score s':>8} {'score peak MiB':>15}"
    )
    with threadpool_limits(1):
        for n in args.sizes:
            X, _ = truth.sample(n, random_state=1)
            step = exact_step(X, reg_psi=1e-10)
            em_call = functools.partial(step, truth)
            score_call = functools.partial(truth.score_samples, X)
            t_em = best_time(em_call, repeat=args.repeat)
            t_score = best_time(score_call, repeat=args.repeat)
            peaks = []
            for fn in (em_call, score_call):
                tracemalloc.start()
                tracemalloc.reset_peak()
                fn()
                peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
                tracemalloc.stop()
            print(
                f"{n:>9} {t_em:>10.3f} {t_em / n * 1e4:>15.4f} {peaks[0]:>12.1f} "
                f"{t_score:>8.3f} {peaks[1]:>15.1f}",
                flush=True,
            )
            if args.advi:
                print(
                    f"{'':>9} minibatch ADVI (batch {args.batch_size}): "
                    f"{advi_per_1000(X, truth, args.batch_size):.2f} s per 1000 iterations",
                    flush=True,
                )


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.0f} s")
