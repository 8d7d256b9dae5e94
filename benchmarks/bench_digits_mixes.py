"""Digits in `mixes`' set-up: how layer-1 ARI moves as the exact EM climbs the likelihood.

`mixes` reports ARI 0.698 on raw digits with G = (10, 5, 2), R = (10, 6, 2), k-means starts
and at most 100 iterations (Aitken stop 0.05). This script fits that architecture with the
exact EM from ``init="kmeans"`` (one start per seed) and scores layer 1 after 1, 10 and 100
iterations (``stopping="fixed"``, each stage started from the previous one's parameters) and
after running on to the package's Aitken criterion. Each finished seed goes to
``DIR/digits_mixes.jsonl`` at once, so an interrupted run resumes.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_digits_mixes.py --seeds 5 \
        --out docs/benchmark
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _timing import resumed_runs
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from bayes_dgmm import DeepGaussianMixture
from bayes_dgmm.experiments.benchmark import load_real

G, R = (10, 5, 2), (10, 6, 2)
#: iterations after which layer 1 is scored; None: on to the Aitken criterion (max_iter 1500)
STAGES: tuple[int | None, ...] = (1, 9, 90, None)


def run_one(seed: int, reg_psi: float) -> dict[str, Any]:
    X, y = load_real("digits")  # raw pixels, constant ones dropped
    row: dict[str, Any] = {"seed": seed, "reg_psi": reg_psi, "stages": []}
    init: Any = "kmeans"
    done = 0
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for stage in STAGES:
            t0 = time.perf_counter()
            kw = {"max_iter": stage, "stopping": "fixed"} if stage else {"max_iter": 1500}
            est = DeepGaussianMixture(
                G, n_factors=R, init=init, n_init=1, reg_psi=reg_psi, random_state=seed, **kw
            ).fit(X)
            done += est.n_iter_
            row["stages"].append(
                {
                    "iterations": done,
                    "to_criterion": stage is None,
                    "converged": bool(est.converged_),
                    "remaining": round(float(est.remaining_), 2),
                    "loglik": round(float(est.lower_bound_), 1),
                    "ari_layer_1": round(float(adjusted_rand_score(y, est.predict(X, layer=1))), 4),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
            init = est.params_
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--reg-psi",
        type=float,
        default=1e-10,
        help="floor on psi relative to each feature's variance (the package's default 1e-10; "
        "mixes adds 2e-3 to the raw variances, about 1e-4 of a pixel's variance)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.reg_psi == 1e-10 else f"_reg{args.reg_psi:g}"
    log = args.out / f"digits_mixes{suffix}.jsonl"
    rows = resumed_runs(log, args.seeds, lambda seed: run_one(seed, args.reg_psi))
    print("| seed | " + " | ".join(f"it {s['iterations']}" for s in rows[0]["stages"]) + " |")
    for r in rows:
        cells = [f"{s['ari_layer_1']:.3f} ({s['loglik']:.0f})" for s in r["stages"]]
        print(f"| {r['seed']} | " + " | ".join(cells) + " |")
    for k in range(len(STAGES)):
        aris = np.array([r["stages"][k]["ari_layer_1"] for r in rows])
        sd = aris.std(ddof=1) if len(aris) > 1 else 0.0
        print(f"stage {k}: mean ARI {aris.mean():.3f} (sd {sd:.3f})")


if __name__ == "__main__":
    main()
