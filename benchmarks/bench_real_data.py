"""The default fit on scikit-learn's real data sets (standardised): does it run, converge, and
how well does layer 1 match the known classes?

Each data set is standardised column-wise (``StandardScaler``; digits' constant pixels are
dropped first, since a constant column cannot be standardised) and fitted by
``DeepGaussianMixture(G, n_factors=R, random_state=seed)`` with every other setting at its
default, for ``seed`` in ``0..seeds-1``. The classes are used only to score layer 1 (ARI).
Finished fits go to ``DIR/NAME.jsonl`` at once, so an interrupted run resumes.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_real_data.py --seeds 10 \
        --out docs/real_data
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import datasets as skd
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from bayes_dgmm import DeepGaussianMixture

#: data set -> (loader, n_components, n_factors): layer 1 has as many components as classes.
DESIGNS: dict[str, tuple[Any, tuple[int, ...], tuple[int, ...]]] = {
    "wine": (skd.load_wine, (3, 2), (3, 1)),
    "iris": (skd.load_iris, (3, 2), (2, 1)),
    "breast_cancer": (skd.load_breast_cancer, (2, 2), (5, 1)),
    "digits": (skd.load_digits, (10, 2), (8, 2)),
}


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    bunch = DESIGNS[name][0]()
    X = np.asarray(bunch.data, dtype=np.float64)
    X = X[:, X.std(axis=0) > 0]
    return StandardScaler().fit_transform(X), np.asarray(bunch.target)


def run_one(name: str, seed: int) -> dict[str, Any]:
    X, y = load(name)
    _, G, R = DESIGNS[name]
    row: dict[str, Any] = {"data": name, "seed": seed, "N": X.shape[0], "J": X.shape[1]}
    t0 = time.perf_counter()
    with threadpool_limits(1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est = DeepGaussianMixture(G, n_factors=R, random_state=seed).fit(X)
        except Exception as exc:  # the benchmark records any failure instead of stopping
            row.update(error=f"{type(exc).__name__}: {exc}")
            return row
    row.update(
        seconds=round(time.perf_counter() - t0, 1),
        n_iter=est.n_iter_,
        converged=bool(est.converged_),
        remaining=round(float(est.remaining_), 3),
        loglik=round(est.lower_bound_, 2),
        ari_layer_1=round(adjusted_rand_score(y, est.predict(X, layer=1)), 4),
        warnings=sorted({type(w.message).__name__ for w in caught}),
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--name", default="default_fit")
    args = parser.parse_args()
    done: dict[tuple[str, int], dict] = {}
    log = None
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        log = args.out / f"{args.name}.jsonl"
        if log.exists():
            for line in log.read_text().splitlines():
                row = json.loads(line)
                done[(row["data"], row["seed"])] = row
    for name in args.data:
        for seed in range(args.seeds):
            if (name, seed) not in done:
                done[(name, seed)] = row = run_one(name, seed)
                if log is not None:
                    with log.open("a") as fh:  # one finished fit per line
                        fh.write(json.dumps(row) + "\n")
            print(json.dumps(done[(name, seed)]), flush=True)
    print("\n| data | fits | errors | converged | ARI layer 1 mean (sd) | seconds median |")
    print("|---|---|---|---|---|---|")
    for name in args.data:
        rows = [done[(name, s)] for s in range(args.seeds)]
        ok = [r for r in rows if "error" not in r]
        aris = np.array([r["ari_layer_1"] for r in ok])
        conv = sum(r["converged"] for r in ok)
        secs = np.median([r["seconds"] for r in ok]) if ok else float("nan")
        stat = f"{aris.mean():.3f} ({aris.std(ddof=1):.3f})" if len(ok) > 1 else "-"
        print(f"| {name} | {len(rows)} | {len(rows) - len(ok)} | {conv} | {stat} | {secs:.1f} |")


if __name__ == "__main__":
    main()
