"""Time the PyMC model of the DGMM on the study data (N=4000, J=17, G=(3,3,2), R=(11,6,2)).

Prints, with one BLAS thread: compile time and evaluation time of the log density plus its
gradient for PyTensor's C backend (mode "CVM") and its Numba backend (mode "NUMBA"), next to
numpy's ``DGMMParams.score_samples``; ADVI seconds per 1000 iterations; and NUTS (nutpie on the
C-backend density of ``bayes_dgmm.bayes.backends.nutpie``, or ``--nutpie-backend numba`` for
nutpie's own route) seconds per 100 draws of one chain. All runs start at the true parameters.

Targets: gradient evaluation <= 5x score_samples; compile <= 20 s.

    .venv/bin/python benchmarks/bench_pymc.py [--skip-advi] [--skip-nutpie] [--nutpie-draws 50]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
from _timing import best_time
from threadpoolctl import threadpool_limits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-advi", action="store_true")
    parser.add_argument("--skip-nutpie", action="store_true")
    parser.add_argument("--modes", default="CVM,NUMBA")
    parser.add_argument("--nutpie-draws", type=int, default=100, help="tune = draws = this")
    parser.add_argument("--nutpie-backend", choices=("c", "numba"), default="c")
    parser.add_argument("--max-treedepth", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger("pymc").setLevel(logging.WARNING)

    import pymc as pm

    from bayes_dgmm.bayes.model import build_model, params_to_point, transformed_point
    from bayes_dgmm.experiments.datasets import load_icbinb

    data = load_icbinb()
    print("PyMC DGMM model, study data N=4000 J=17 G=(3,3,2) R=(11,6,2), 1 BLAS thread")

    class Rows(list):
        # print each figure as soon as it is measured (a long run may be stopped)
        def append(self, row: tuple[str, str]) -> None:
            super().append(row)
            print(f"{row[0]:<52}  {row[1]}", flush=True)

    rows: list[tuple[str, str]] = Rows()
    with threadpool_limits(1):
        t0 = time.perf_counter()
        model = build_model(data.X, data.spec)
        rows.append(("build_model", f"{time.perf_counter() - t0:.2f} s"))
        point = transformed_point(model, params_to_point(data.params, model))
        n_params = sum(int(np.size(v)) for v in point.values())
        rows.append(("free parameters", str(n_params)))

        def numpy_score() -> None:
            data.params.copy().score_samples(data.X)  # copy: no cached factors

        t_np = best_time(numpy_score)
        rows.append(("numpy score_samples (value only)", f"{t_np * 1e3:.1f} ms"))

        for mode in args.modes.split(","):
            t0 = time.perf_counter()
            fn = model.logp_dlogp_function(mode=mode, ravel_inputs=True)
            x0 = np.concatenate([np.ravel(point[v.name]) for v in fn._grad_vars])
            logp, _ = fn(x0)
            t_compile = time.perf_counter() - t0
            t_eval = best_time(lambda fn=fn, x0=x0: fn(x0))
            rows.append((f"{mode}: compile logp+grad (cold or cached)", f"{t_compile:.1f} s"))
            rows.append(
                (
                    f"{mode}: logp+grad evaluation",
                    f"{t_eval * 1e3:.1f} ms ({t_eval / t_np:.2f}x score_samples)",
                )
            )
            rows.append((f"{mode}: logp at truth", f"{logp:.2f}"))

        start = params_to_point(data.params, model)
        if not args.skip_advi:
            times = {}
            for n in (100, 1100):
                t0 = time.perf_counter()
                pm.fit(
                    n=n, method="advi", model=model, start=start, progressbar=False, random_seed=0
                )
                times[n] = time.perf_counter() - t0
            rows.append(("ADVI fit(n=100) incl. compile", f"{times[100]:.1f} s"))
            rows.append(("ADVI seconds per 1000 iterations", f"{times[1100] - times[100]:.2f} s"))

        if not args.skip_nutpie:
            import dataclasses

            import nutpie

            from bayes_dgmm.bayes.backends.nutpie import (
                compile_nutpie_model,
                initial_point_function,
            )

            t0 = time.perf_counter()
            if args.nutpie_backend == "numba":
                compiled = nutpie.compile_pymc_model(model, initial_points=start)
            else:
                compiled = dataclasses.replace(
                    compile_nutpie_model(model),
                    _make_initial_points=initial_point_function(model, start),
                )
            backend = args.nutpie_backend
            rows.append((f"nutpie compile ({backend})", f"{time.perf_counter() - t0:.1f} s"))
            t0 = time.perf_counter()
            trace = nutpie.sample(
                compiled,
                draws=args.nutpie_draws,
                tune=args.nutpie_draws,
                chains=1,
                cores=1,
                seed=0,
                progress_bar=False,
                maxdepth=args.max_treedepth,
            )
            t_s = time.perf_counter() - t0
            n_it = args.nutpie_draws
            depth = trace["sample_stats"]["depth"].values.ravel()
            rows.append(
                (
                    f"nutpie ({backend}) 1 chain, tune={n_it} + draws={n_it}",
                    f"{t_s:.1f} s, tree depth median {np.median(depth):.0f} max {depth.max()}",
                )
            )
            rows.append(
                (
                    f"nutpie ({backend}) seconds per 100 draws (incl. tuning share)",
                    f"{t_s / (2 * n_it) * 100:.1f} s",
                )
            )


if __name__ == "__main__":
    main()
