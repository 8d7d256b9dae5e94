"""Time the PyMC model's log density plus gradient against one exact-EM iteration.

On the study data (N=4000, J=17, G=(3,3,2), R=(11,6,2)) at the true parameters, with one BLAS
thread: the cold compile time of ``logp_dlogp_function`` (a child process with an empty PyTensor
compile directory), one logp+grad evaluation of the likelihood of ``bayes_dgmm.bayes.model``
and of a candidate form (J-dimensional work per layer-1 component, R1-dimensional work per path,
``_per_component_log_prob_paths``; measured slower, so not the package's),
one exact-EM iteration from the same parameters, and the ratio. Targets: logp+grad <= 0.5 EM
iterations; cold compile <= 15 s.

    .venv/bin/python benchmarks/bench_logp.py [--skip-candidate] [--jax]

It ends with the hand-written JAX log-likelihood (``bayes_dgmm.model.jax_density``): its cold
compile and its value+grad time against the same EM iteration (target <= 0.25). For one XLA
thread, as for one BLAS thread, run with
``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from _timing import best_time


def _per_component_log_prob_paths(
    X: Any,
    pi: Sequence[Any],
    eta: Sequence[Any],
    Lambda: Sequence[Any],
    psi: Sequence[Any],
    n_components: Sequence[int],
    n_factors: Sequence[int],
) -> Any:
    """A candidate form of ``dgmm_log_prob_paths``: the J-dimensional work once per layer-1
    component (Gram matrix, ridge fit, explicit residual), R1-dimensional work per path.
    Exact (it matched the package's form to 1e-12) but slower on the C backend."""
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_grad
    from pytensor.tensor.linalg import cholesky, solve_triangular

    from bayes_dgmm.bayes.model import ENVELOPE_GRADIENT
    from bayes_dgmm.model.density import LOG_2PI
    from bayes_dgmm.model.paths import path_table

    comps = tuple(int(g) for g in n_components)
    n_layers = len(comps)
    G1, R1 = comps[0], int(n_factors[0])
    paths = path_table(comps)  # (P, L), layer 1 fastest: p = g1 + G1 * q
    sub = path_table(comps[1:])  # (Q, L - 1) sub-paths (g_2..g_L), q as above
    P, Q = paths.shape[0], sub.shape[0]
    log_w = sum(pt.log(pi[l])[paths[:, l]] for l in range(n_layers))
    eye1 = np.eye(R1)

    # Mean m_q and Cholesky factor of the covariance S_q of z^(1) on every sub-path (eqs. 5-6),
    # top down. Identity matrices are numpy constants of the architecture's sizes: symbolic
    # eye and broadcast_to made the gradient graph many times slower to build and compile.
    if n_layers == 1:
        m: Any = pt.as_tensor(np.zeros((1, R1)))
        LS: Any = pt.as_tensor(eye1[None])
    else:
        r_top = n_factors[-1]
        m = pt.as_tensor(np.zeros((Q, r_top)))
        S: Any = pt.as_tensor(np.broadcast_to(np.eye(r_top), (Q, r_top, r_top)).copy())
        for l in range(n_layers - 1, 0, -1):
            g = sub[:, l - 1]
            lam = Lambda[l][g]  # (Q, R_{l-1}, R_l) in 0-based layer l
            m = eta[l][g] + pt.matmul(lam, m[:, :, None])[:, :, 0]
            S = pt.matmul(pt.matmul(lam, S), lam.mT)
            S = 0.5 * (S + S.mT) + np.eye(n_factors[l - 1])[None] * psi[l][g][:, None, :]
        LS = cholesky(S, lower=True)  # (Q, R1, R1)

    # Per layer-1 component g: whitened data x~ = D^{-1/2}(x - eta_g) and loadings
    # L~ = D^{-1/2} Lambda_g, their Gram matrix A = L~^T L~ and a coefficient beta with the
    # residual r = x~ - L~ beta explicit. For any w, x~ - L~ w = r + L~ (beta - w), so
    #     ||x~ - L~ w||^2 = ||r||^2 + 2 (beta - w)^T L~^T r + (beta - w)^T A (beta - w)
    # holds exactly whatever beta is: beta enters only through rounding and is held out of
    # the gradient. It is the ridge coefficient (I + A)^{-1} L~^T x~ (I + A is positive
    # definite even for rank-deficient loadings); when the noise is tiny it is the least-
    # squares fit, r is small and no term of the sum is large.
    log_psi1 = pt.log(psi[0])  # (G1, J)
    inv_sd = pt.exp(-0.5 * log_psi1)
    Lt = Lambda[0] * inv_sd[:, :, None]  # (G1, J, R1)
    Xt = (X[None, :, :] - eta[0][:, None, :]) * inv_sd[:, None, :]  # (G1, N, J)
    A = pt.matmul(Lt.mT, Lt)  # (G1, R1, R1)
    u = pt.matmul(Xt, Lt)  # (G1, N, R1), rows L~^T x~
    # beta = u C0 with C0 = (I + A)^{-1} from its Cholesky factor: one matrix product, not a
    # solve with N right-hand sides. Any beta keeps the identity exact, so the rounding of an
    # explicit inverse costs nothing here.
    L0 = cholesky(A + eye1[None], lower=True)
    C0: Any = solve_triangular(
        L0.mT, solve_triangular(L0, pt.as_tensor(eye1[None]), lower=True), lower=False
    )
    beta = disconnected_grad(pt.matmul(u, C0))  # (G1, N, R1); C0 is symmetric
    r = Xt - pt.matmul(beta, Lt.mT)  # (G1, N, J): the only J-dimensional residual
    rr = pt.sum(r**2, axis=-1)  # (G1, N)
    gr = pt.matmul(r, Lt)  # (G1, N, R1), rows L~^T r

    # Every path p = (q, g): z^(1) ~ N(m_q, S_q), W = L~_g chol(S_q). The quadratic form is
    # min_b ||x~ - L~ (m + LS b)||^2 + ||b||^2 (residual plus penalty), minimised by
    # b = M^{-1} LS^T L~^T (x~ - L~ m) with M = I + LS^T A LS; with v = beta - m - LS b the
    # identity above turns it into R1-dimensional work only:
    #     quad = ||r||^2 + v^T (2 L~^T r + A v) + ||b||^2.
    # Arrays over paths are (Q, G1, N, R1) for the elementwise work and (P, N, R1) views of
    # them for the matrix products (p = q * G1 + g, path_table's order).
    N = X.shape[0]
    Ab = A[None]  # (1, G1, R1, R1)
    LSq = LS[:, None]  # (Q, 1, R1, R1)
    M = pt.matmul(pt.matmul(LSq.mT, Ab), LSq) + eye1  # (Q, G1, R1, R1)
    LM = cholesky(M, lower=True)
    # B = M^{-1} LS^T, a solve with R1 right-hand sides; then b = h B^T is one matrix
    # product. An error in b enters the quadratic form at second order only (the form is
    # the minimum over b), so this loses no accuracy.
    B = solve_triangular(LM.mT, solve_triangular(LM, LSq.mT, lower=True), lower=False)
    Am = pt.matmul(Ab, m[:, None, :, None])[..., 0]  # (Q, G1, R1)
    h = u[None] - Am[:, :, None, :]  # (Q, G1, N, R1): L~^T (x~ - L~ m)
    b = pt.matmul(h.reshape((P, N, R1)), B.reshape((P, R1, R1)).mT)  # (P, N, R1)
    if ENVELOPE_GRADIENT:
        # The quadratic form is min_b q(b); at the minimiser dq/db = 0, so its gradient with
        # b held fixed is the exact gradient (envelope theorem). Cutting the graph there
        # skips differentiating the solves: a smaller graph, faster to compile and run.
        b = disconnected_grad(b)
    # v = (beta - m) - LS b and A v = (A beta - A m) - (A LS) b
    LSp = pt.broadcast_to(LSq, (Q, G1, R1, R1)).reshape((P, R1, R1))
    ALS = pt.matmul(Ab, LSq).reshape((P, R1, R1))
    v = beta[None] - m[:, None, None, :] - pt.matmul(b, LSp.mT).reshape((Q, G1, N, R1))
    Av = pt.matmul(beta, A)[None] - Am[:, :, None, :] - pt.matmul(b, ALS.mT).reshape((Q, G1, N, R1))
    quad = (
        rr[None]
        + pt.sum(v * (2.0 * gr[None] + Av), axis=-1)
        + pt.sum(b**2, axis=-1).reshape((Q, G1, N))
    )  # (Q, G1, N)
    logdet = pt.sum(log_psi1, axis=-1)[None] + 2.0 * pt.sum(
        pt.log(pt.diagonal(LM, axis1=-2, axis2=-1)), axis=-1
    )  # (Q, G1)
    J = X.shape[-1]
    logpdf = -0.5 * (J * LOG_2PI + logdet[:, :, None] + quad)  # (Q, G1, N)
    logpdf = logpdf.reshape((P, N))  # row q * G1 + g: path_table's order
    return (logpdf + log_w[:, None]).T


def _setup(form: str) -> tuple[Any, dict[str, np.ndarray]]:
    """The study model (with the likelihood ``form``) and the true parameters' point."""
    import bayes_dgmm.bayes.model as bm
    from bayes_dgmm.experiments.datasets import load_icbinb

    if form == "per_component":
        bm.dgmm_log_prob_paths = _per_component_log_prob_paths  # dgmm_logp looks it up by name
    data = load_icbinb()
    model = bm.build_model(data.X, data.spec)
    return model, bm.transformed_point(model, bm.params_to_point(data.params, model))


def _logp_dlogp(model: Any, point: dict[str, np.ndarray], mode: str) -> tuple[Any, np.ndarray]:
    fn = model.logp_dlogp_function(mode=mode, ravel_inputs=True, initial_point=point)
    x0 = np.concatenate([np.ravel(point[v.name]) for v in fn._grad_vars])
    return fn, x0


def _child(form: str, mode: str, repeat: int) -> None:
    """Run in a child process with an empty compile directory: print the compile time (with
    the first call) and the best evaluation time as JSON."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        t0 = time.perf_counter()
        fn, x0 = _logp_dlogp(*_setup(form), mode)
        logp, _ = fn(x0)
        compile_s = time.perf_counter() - t0
        eval_s = best_time(lambda: fn(x0), repeat=repeat)
    print(json.dumps({"compile": compile_s, "eval": eval_s, "logp": float(logp)}))


def run_child(form: str, mode: str, repeat: int, compiledir: str) -> dict[str, float]:
    env = dict(os.environ, PYTENSOR_FLAGS=f"compiledir={compiledir}")
    cmd = [sys.executable, __file__, "--child", form, "--mode", mode, "--repeat", str(repeat)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="CVM", help="PyTensor mode of the C-backend figures")
    parser.add_argument("--skip-candidate", action="store_true", help="the package's form only")
    parser.add_argument("--jax", action="store_true", help="also time PyTensor's JAX mode")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.mode, args.repeat)
        return

    from threadpoolctl import threadpool_limits

    def row(name: str, value: str) -> None:
        print(f"{name:<48}  {value}", flush=True)

    forms = ["package"] + ([] if args.skip_candidate else ["per_component"])
    print("study data N=4000 J=17 G=(3,3,2) R=(11,6,2), 18 paths, true parameters, 1 BLAS thread")
    times = {}
    with tempfile.TemporaryDirectory(prefix="bench_logp_") as tmp:
        for form in forms:  # each form in a child process with its own empty compile directory
            res = run_child(form, args.mode, args.repeat, os.path.join(tmp, form))
            times[form] = res["eval"]
            row(f"{form}: cold compile logp+grad ({args.mode})", f"{res['compile']:.1f} s")
            row(f"{form}: logp+grad evaluation", f"{res['eval'] * 1e3:.2f} ms")
            row(f"{form}: logp at the true parameters", f"{res['logp']:.6f}")

    from bayes_dgmm.em.exact import exact_step

    data = _setup_data()
    with threadpool_limits(1):
        step = exact_step(data.X, reg_psi=1e-10)
        t_em = best_time(lambda: step(data.params), repeat=args.repeat)
    row("exact EM iteration (E-step + expanded M-step)", f"{t_em * 1e3:.2f} ms")
    for form in forms:
        row(f"{form}: logp+grad / EM iteration", f"{times[form] / t_em:.2f}  (target <= 0.5)")
    if "per_component" in times:
        row("per_component / package time", f"{times['per_component'] / times['package']:.2f}")
    if args.jax:
        with threadpool_limits(1):
            _time_jax(row, args.repeat, forms)
    with threadpool_limits(1):
        t_hand = _time_hand_written(row, data, args.repeat)
    row("hand-written JAX value+grad / EM iteration", f"{t_hand / t_em:.2f}  (target <= 0.25)")


def _time_hand_written(row: Any, data: Any, repeat: int) -> float:
    """Cold compile (JAX's disk cache bypassed) and evaluation of the hand-written JAX
    log-likelihood and gradient (bayes_dgmm.model.jax_density)."""
    import jax

    from bayes_dgmm.model import jax_density

    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="bench_logp_jax_"))
    fn = jax_density.compiled_value_and_grad((3, 3, 2), (11, 6, 2), data.X.shape[1])
    with jax.enable_x64(True):
        args = jax.device_put(
            [data.X] + [list(getattr(data.params, k)) for k in ("pi", "eta", "Lambda", "psi")]
        )
        t0 = time.perf_counter()
        value = float(jax.block_until_ready(fn(*args))[0])
        row("hand-written JAX: cold compile value+grad", f"{time.perf_counter() - t0:.1f} s")
        t = best_time(lambda: jax.block_until_ready(fn(*args)), repeat=repeat)
    row("hand-written JAX: value+grad evaluation", f"{t * 1e3:.2f} ms (logp {value:.6f})")
    return t


def _setup_data() -> Any:
    from bayes_dgmm.experiments.datasets import load_icbinb

    return load_icbinb()


def _time_jax(row: Any, repeat: int, forms: Sequence[str]) -> None:
    """Compile and time logp+grad in PyTensor's JAX mode (jitted, dims and data frozen)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from pymc.model.transform.optimization import freeze_dims_and_data

    for form in forms:  # "package" first: "per_component" replaces the package's function
        model, point = _setup(form)
        t0 = time.perf_counter()
        fn, x0 = _logp_dlogp(freeze_dims_and_data(model), point, "JAX")

        def call(fn: Any = fn, x0: np.ndarray = x0) -> float:
            logp, grad = fn(x0)
            np.asarray(grad)  # wait for the result (JAX dispatches asynchronously)
            return float(logp)

        call()
        row(
            f"{form}: JAX compile logp+grad (incl. first call)", f"{time.perf_counter() - t0:.1f} s"
        )
        t = best_time(call, repeat=repeat)
        row(f"{form}: JAX logp+grad evaluation", f"{t * 1e3:.2f} ms (logp {call():.6f})")


if __name__ == "__main__":
    main()
