"""The `mixes` package's own digits run, repeated: what its ARI of 0.698 is made of.

Runs `mixes`' DGMM exactly as its clustering notebook does on digits (raw pixels,
G = (10, 5, 2), R = (10, 6, 2), k-means start, ``var_regularization=2e-3``, at most 100
iterations, its Aitken stop at 0.05 nats per row), one seed per run of numpy's global RNG,
which `mixes` draws from. Records, per seed, the ARI and log-likelihood at the start and at
the end, the number of iterations, and any error (the notebook redraws runs that fail).
Needs ``pip install 'bayes-dgmm[anchors]'`` (mixes 1.0). Each finished seed goes to
``DIR/mixes_digits.jsonl`` at once.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_mixes_digits.py --seeds 20 \
        --out docs/benchmark
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import datasets
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits


def run_one(seed: int) -> dict[str, Any]:
    try:
        from mixes import DGMM, stopping_criterion
    except ImportError:
        raise SystemExit("this benchmark needs mixes: pip install 'bayes-dgmm[anchors]'") from None
    X, y = datasets.load_digits(return_X_y=True)
    trace: list[tuple[int, float, float]] = []

    def evaluator(it: int, data: Any, probs: Any, pred: Any, log_lik: float) -> None:
        trace.append((it, float(log_lik), float(adjusted_rand_score(y, pred))))

    np.random.seed(seed)  # noqa: NPY002 (mixes draws from numpy's global generator)
    t0 = time.perf_counter()
    error = None
    ari = None
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DGMM(
            [10, 5, 2], [10, 6, 2], init="kmeans", update_rate=1, num_iter=100,
            evaluator=evaluator, var_regularization=2e-3,
            stopping_criterion=stopping_criterion.create_log_lik_criterion(0.05),
        )  # fmt: skip
        try:
            model.fit(X)
            ari = float(adjusted_rand_score(y, model.predict(X)))
        except Exception as exc:  # recorded, as the notebook's harness redraws such runs
            error = f"{type(exc).__name__}: {exc}"
    return {
        "seed": seed,
        "ari": ari,
        "error": error,
        "iterations": len(trace) - 1,
        "start": {"loglik": trace[0][1], "ari": trace[0][2]},
        "end": {"loglik": trace[-1][1], "ari": trace[-1][2]},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "mixes_digits.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    have = {r["seed"] for r in rows}
    for seed in range(args.seeds):
        if seed not in have:
            row = run_one(seed)
            with log.open("a") as fh:  # one line per finished seed
                fh.write(json.dumps(row) + "\n")
            rows.append(row)
    ok = [r for r in rows if r["error"] is None]
    start = [r["start"]["ari"] for r in rows]
    print(f"runs {len(rows)}, failed {len(rows) - len(ok)}")
    print(f"ARI at the k-means start: mean {statistics.mean(start):.3f} "
          f"(sd {statistics.stdev(start):.3f})")  # fmt: skip
    if ok:
        ari = [r["ari"] for r in ok]
        sd = statistics.stdev(ari) if len(ari) > 1 else 0.0
        print(f"ARI at the end: mean {statistics.mean(ari):.3f} (sd {sd:.3f})")
        print(f"iterations: {sorted(r['iterations'] for r in ok)}")
        first = statistics.mean(r["start"]["loglik"] for r in ok)
        last = statistics.mean(r["end"]["loglik"] for r in ok)
        print(f"log-likelihood at the start {first:.0f}, at the end {last:.0f}")


if __name__ == "__main__":
    main()
