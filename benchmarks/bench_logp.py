"""Time the PyMC model's log density plus gradient against one exact-EM iteration.

On the study data (N=4000, J=17, G=(3,3,2), R=(11,6,2)) at the true parameters, in the
model's default gauge, with one BLAS thread. Each route runs in a child process with an
empty PyTensor compile directory and an empty JAX cache (a cold compile):

- ``model (C + JAX Op)``: the flat log density and gradient that MAP, Laplace and the VIs
  use (``bayes_dgmm.bayes.backends.flat``): priors and transforms in PyTensor's C backend,
  the likelihood the hand-written JAX density through ``RowLogLik``;
- ``model (JAX)``: the same log density compiled end to end by PyTensor's JAX backend, as
  nutpie runs it (``bayes_dgmm.bayes.backends.nutpie``);
- ``hand-written JAX``: the bare likelihood and gradient (``bayes_dgmm.model.jax_density``).

Then one exact-EM iteration from the same parameters, and the ratios. Targets: logp+grad
<= 5 ms and <= 0.25 EM iterations; cold compile <= 15 s. For one XLA thread, as for one BLAS
thread, run with ``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"``.

    .venv/bin/python benchmarks/bench_logp.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
from _timing import best_time

ROUTES = ("model (C + JAX Op)", "model (JAX)", "hand-written JAX")


def _study() -> tuple[Any, Any, np.ndarray]:
    """The study data set, its model and the true parameters' flat unconstrained point."""
    from bayes_dgmm.bayes.backends.flat import flatten_point
    from bayes_dgmm.bayes.model import build_model, params_to_point, transformed_point
    from bayes_dgmm.experiments.datasets import load_icbinb

    data = load_icbinb()
    model = build_model(data.X, data.spec)
    x0 = flatten_point(model, transformed_point(model, params_to_point(data.params, model)))
    return data, model, x0


def _route(route: str) -> tuple[Any, Any]:
    """``(f, x0)`` with ``f(x0)`` one log density and gradient of ``route``, results ready."""
    data, model, x0 = _study()
    if route == ROUTES[0]:
        from bayes_dgmm.bayes.backends.flat import compile_flat_logp_grad

        fn, _ = compile_flat_logp_grad(model)
        return fn, x0
    if route == ROUTES[1]:
        from bayes_dgmm.bayes.backends.nutpie import compile_nutpie_model

        compiled = compile_nutpie_model(model)
        logp = compiled._make_logp_func()
        shared = compiled._shared_data
        return (lambda x: logp(x, **shared)), x0
    import jax

    from bayes_dgmm.model import jax_density

    fn = jax_density.compiled_value_and_grad((3, 3, 2), (11, 6, 2), data.X.shape[1])
    with jax.enable_x64(True):
        args = jax.device_put(
            [data.X] + [list(getattr(data.params, k)) for k in ("pi", "eta", "Lambda", "psi")]
        )

    def call(_: Any) -> Any:
        with jax.enable_x64(True):
            return jax.block_until_ready(fn(*args))

    return call, x0


def _child(route: str, repeat: int) -> None:
    """In a child process with empty compile caches: print the compile time (with the first
    call), the best evaluation time and the log density as JSON."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        t0 = time.perf_counter()
        fn, x0 = _route(route)
        value = float(np.asarray(fn(x0)[0]))
        compile_s = time.perf_counter() - t0
        eval_s = best_time(lambda: fn(x0), repeat=repeat)
    print(json.dumps({"compile": compile_s, "eval": eval_s, "logp": value}))


def _run_child(route: str, repeat: int, tmp: str) -> dict[str, float]:
    env = dict(
        os.environ,
        PYTENSOR_FLAGS=f"compiledir={tmp}/pytensor",
        BAYES_DGMM_JAX_CACHE=f"{tmp}/jax",
    )
    cmd = [sys.executable, __file__, "--child", route, "--repeat", str(repeat)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.repeat)
        return

    from threadpoolctl import threadpool_limits

    from bayes_dgmm.em.exact import exact_step
    from bayes_dgmm.experiments.datasets import load_icbinb

    def row(name: str, value: str) -> None:
        print(f"{name:<46}  {value}", flush=True)

    print("study data N=4000 J=17 G=(3,3,2) R=(11,6,2), 18 paths, true parameters, 1 BLAS thread")
    times = {}
    for route in ROUTES:  # each in a child process with empty compile caches
        with tempfile.TemporaryDirectory(prefix="bench_logp_") as tmp:
            res = _run_child(route, args.repeat, tmp)
        times[route] = res["eval"]
        row(f"{route}: cold compile", f"{res['compile']:.1f} s  (target <= 15 s)")
        row(f"{route}: logp+grad", f"{res['eval'] * 1e3:.2f} ms  (target <= 5 ms)")
        row(f"{route}: value", f"{res['logp']:.6f}")
    data = load_icbinb()
    with threadpool_limits(1):
        step = exact_step(data.X, reg_psi=1e-10)
        t_em = best_time(lambda: step(data.params), repeat=args.repeat)
    row("exact EM iteration (E-step + expanded M-step)", f"{t_em * 1e3:.2f} ms")
    for route in ROUTES:
        row(f"{route} / EM iteration", f"{times[route] / t_em:.2f}  (target <= 0.25)")


if __name__ == "__main__":
    main()
