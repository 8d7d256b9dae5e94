"""The exact Hessian of the Bayesian model's log density at the EM fit, by parameter block.

On the study data, in each gauge (``--gauges``), at the EM fit mapped into the gauge: the
Hessian of the unconstrained log density by automatic differentiation (forward over reverse
through the model's JAX graph, in chunks of Hessian-vector products), then per parameter
block the count of eigenvalues below zero and below 1, the count of eigenvalues of the
diagonally scaled Hessian below 1e-3, its condition number, and the Newton decrement (the
log density a saddle-free Newton step predicts to gain). One BLAS thread.

    .venv/bin/python benchmarks/bench_hessian.py --start FIT.json [--gauges standardised noise]

``FIT.json``: DGMM parameters (``DGMMParams.to_json``, or ``bayes-dgmm compare``'s
``fits/exact.json``); without it the default EM fit is run first (about two minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits


def hessian(model, x0: np.ndarray, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of ``model``'s flat unconstrained log density at ``x0``."""
    import jax
    from pymc.sampling.jax import get_jaxified_graph

    from bayes_dgmm.bayes.backends.flat import _value_vars_and_shapes

    jax.config.update("jax_enable_x64", True)
    value_vars, shapes = _value_vars_and_shapes(model)
    logp = get_jaxified_graph(inputs=value_vars, outputs=[model.logp()])
    offsets = np.cumsum([0] + [math.prod(s) for s in shapes])

    def flat(x):
        parts = [x[offsets[i] : offsets[i + 1]].reshape(s) for i, s in enumerate(shapes)]
        return logp(*parts)[0]

    grad = jax.grad(flat)
    hvp = jax.jit(lambda x, V: jax.vmap(lambda v: jax.jvp(grad, (x,), (v,))[1])(V))
    n = x0.size
    basis = np.vstack([np.eye(n), np.zeros(((-n) % chunk, n))])
    H = np.vstack([np.asarray(hvp(x0, basis[i : i + chunk])) for i in range(0, len(basis), chunk)])
    return np.asarray(jax.jit(grad)(x0)), 0.5 * (H[:n] + H[:n].T)


def report(model, g: np.ndarray, H: np.ndarray) -> dict:
    from bayes_dgmm.bayes.backends.flat import _value_vars_and_shapes

    value_vars, shapes = _value_vars_and_shapes(model)
    names = np.repeat([v.name for v in value_vars], [math.prod(s) for s in shapes])
    A = -H
    w, V = np.linalg.eigh(A)
    d = np.sqrt(np.abs(np.diag(A)))
    ws = np.linalg.eigvalsh(A / np.outer(d, d))
    step = V @ ((V.T @ g) / np.maximum(np.abs(w), 1e-8 * np.abs(w).max()))
    out = {
        "n": int(g.size),
        "max_abs_gradient": float(np.abs(g).max()),
        "eigenvalues_below_0": int((w < 0).sum()),
        "eigenvalues_below_1": int((w < 1).sum()),
        "scaled_below_1e-3": int((ws < 1e-3).sum()),
        "scaled_condition": float(ws.max() / ws[ws > 0].min()),
        "newton_decrement": float(0.5 * g @ step),
        "blocks": {},
    }
    for name in dict.fromkeys(names):
        idx = names == name
        wb = np.linalg.eigvalsh(A[np.ix_(idx, idx)])
        sb = np.linalg.eigvalsh((A / np.outer(d, d))[np.ix_(idx, idx)])
        out["blocks"][str(name)] = {
            "n": int(idx.sum()),
            "below_0": int((wb < 0).sum()),
            "below_1": int((wb < 1).sum()),
            "scaled_below_1e-3": int((sb < 1e-3).sum()),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=Path)
    parser.add_argument("--gauges", nargs="+", default=["standardised", "noise"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/hessian.json"))
    args = parser.parse_args()

    from bayes_dgmm import DeepGaussianMixture, DGMMParams
    from bayes_dgmm._io import atomic_write_text
    from bayes_dgmm.bayes.backends.flat import flatten_point
    from bayes_dgmm.bayes.model import build_model, params_to_point, transformed_point
    from bayes_dgmm.experiments.datasets import load_icbinb

    data = load_icbinb()
    with threadpool_limits(1):
        if args.start is not None:
            raw = json.loads(args.start.read_text())
            params = DGMMParams.from_dict(raw.get("params", raw))
        else:
            params = DeepGaussianMixture((3, 3, 2), n_factors=(11, 6, 2)).fit(data.X).params_
        results = {}
        for gauge in args.gauges:
            model = build_model(data.X, data.spec, gauge=gauge)
            x0 = flatten_point(model, transformed_point(model, params_to_point(params, model)))
            t0 = time.perf_counter()
            g, H = hessian(model, x0)
            results[gauge] = {"seconds": time.perf_counter() - t0, **report(model, g, H)}
            print(gauge, json.dumps(results[gauge], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
