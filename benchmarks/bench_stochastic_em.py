"""The study's baseline on the study data: deepgmm's layer-wise stochastic EM, 5 seeds.

From :func:`bayes_dgmm.em.stochastic.simple_kmeans_init` (k-means + factor analysis per
cluster, layer by layer, as deepgmm's ``init = "kmeans"``), each seed runs ``--iters``
iterations of :func:`stochastic_em_iteration` on the original data scale and prints, per
seed: seconds per iteration (1 BLAS thread), the log-likelihood, the ARI of the paths and of
every layer (Bayes classifier of the fitted model against the true labels), the number of
occupied paths; the same at the iteration where deepgmm's stopping rule
(``eps = 1e-3``, its default) would have stopped. Compare with ANCHORS.md (R deepgmm:
7-15 iterations, log-lik about -586000, path ARI 0.21-0.38, layer-3 ARI 0; deepMFA:
path ARI 0.55-0.60; truth: -377797.02, ARI 1).

    .venv/bin/python benchmarks/bench_stochastic_em.py [--iters 200] [--seeds 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from bayes_dgmm.diagnostics.metrics import layer_aris, n_occupied
from bayes_dgmm.em.stochastic import (
    deepgmm_should_stop,
    simple_kmeans_init,
    stochastic_em_iteration,
)
from bayes_dgmm.experiments.datasets import load_icbinb
from bayes_dgmm.model.params import DGMMParams

EPS = 1e-3
REG_PSI = 1e-10


def summary(params: DGMMParams, X: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    path = params.predict(X)
    out = layer_aris(labels, params.paths[path], params.n_components)
    out["loglik"] = params.score(X)
    out["occupied"] = n_occupied(path, params.n_paths)
    return out


def row(tag: str, n_iter: int, sec: float, s: dict[str, float]) -> str:
    return (
        f"{tag:>10} {n_iter:>5} {sec:>7.3f} {s['loglik']:>12.1f} {s['path']:>6.2f} "
        f"{s['layer_1']:>5.2f} {s['layer_2']:>5.2f} {s['layer_3']:>5.2f} {s['occupied']:>4d}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    data = load_icbinb()
    X, labels = data.X, data.labels
    comps, facts = data.params.n_components, data.params.n_factors
    print(f"truth: log-lik {data.params.score(X):.2f}")
    header = (
        f"{'seed/when':>10} {'iters':>5} {'s/iter':>7} {'log-lik':>12} {'path':>6} "
        f"{'L1':>5} {'L2':>5} {'L3':>5} {'occ':>4}"
    )
    print(header)
    with threadpool_limits(1):
        for seed in range(1, args.seeds + 1):
            rng = np.random.default_rng(seed)
            t0 = time.perf_counter()
            params = simple_kmeans_init(X, comps, facts, rng)
            t_init = time.perf_counter() - t0
            print(row(f"{seed} init", 0, t_init, summary(params, X, labels)))
            hist = [params.score(X)]
            stopped: tuple[int, dict[str, float]] | None = None
            t_iter = 0.0
            for it in range(1, args.iters + 1):
                t0 = time.perf_counter()
                params = stochastic_em_iteration(X, params, rng, reg_psi=REG_PSI)
                t_iter += time.perf_counter() - t0
                hist.append(params.score(X))
                if stopped is None and deepgmm_should_stop(hist, EPS):
                    stopped = (it, summary(params, X, labels))
            sec = t_iter / args.iters
            if stopped is not None:
                print(row(f"{seed} rule", stopped[0], sec, stopped[1]))
            else:
                print(f"{seed:>5} rule: did not stop within {args.iters} iterations")
            print(row(f"{seed} end", args.iters, sec, summary(params, X, labels)))
            best = int(np.argmax(hist))
            print(f"{'':>10} max log-lik {hist[best]:.1f} at iteration {best}")


if __name__ == "__main__":
    main()
