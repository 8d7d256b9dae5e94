"""The `mixes` package's own wine and digits runs, repeated: what its ARIs are made of.

Runs `mixes`' DGMM exactly as its clustering notebook does (`SETTINGS`), one seed per run of
numpy's global RNG, which `mixes` draws from, and records per seed the ARI and the
log-likelihood at the start and at the end, the iterations, and any error (the notebook
redraws runs that fail). On wine it also fits the same architecture with this package's
exact EM (default settings, and one k-means start), for the log-likelihoods side by side.
Needs ``pip install 'bayes-dgmm[anchors]'`` (mixes 1.0). Each finished seed goes to
``DIR/mixes_NAME.jsonl`` at once.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_mixes.py --data digits wine \
        --seeds 20 --out docs/benchmark
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _timing import resumed_runs
from sklearn import datasets, preprocessing
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

#: the notebook's settings: loader, standardise?, layer sizes, dims, DGMM keywords, Aitken stop
SETTINGS: dict[str, tuple[Any, bool, list[int], list[int], dict[str, Any], float | None]] = {
    "digits": (
        datasets.load_digits, False, [10, 5, 2], [10, 6, 2],
        {"update_rate": 1, "num_iter": 100, "var_regularization": 2e-3}, 0.05,
    ),
    "wine": (
        datasets.load_wine, True, [3, 1], [3, 2],
        {"update_rate": 0.1, "num_iter": 200}, None,
    ),
}  # fmt: skip


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = SETTINGS[name][0](return_X_y=True)
    return (preprocessing.scale(X) if SETTINGS[name][1] else X), y


def run_one(name: str, seed: int) -> dict[str, Any]:
    try:
        from mixes import DGMM, stopping_criterion
    except ImportError:
        raise SystemExit("this benchmark needs mixes: pip install 'bayes-dgmm[anchors]'") from None
    X, y = load(name)
    _, _, sizes, dims, kw, stop = SETTINGS[name]
    trace: list[tuple[int, float, float]] = []

    def evaluator(it: int, data: Any, probs: Any, pred: Any, log_lik: float) -> None:
        trace.append((it, float(log_lik), float(adjusted_rand_score(y, pred))))

    np.random.seed(seed)  # noqa: NPY002 (mixes draws from numpy's global generator)
    t0 = time.perf_counter()
    error = None
    ari = None
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crit = None if stop is None else stopping_criterion.create_log_lik_criterion(stop)
        model = DGMM(sizes, dims, init="kmeans", evaluator=evaluator, stopping_criterion=crit, **kw)
        try:
            model.fit(X)
            ari = float(adjusted_rand_score(y, model.predict(X)))
        except Exception as exc:  # recorded, as the notebook's harness redraws such runs
            error = f"{type(exc).__name__}: {exc}"
    row = {
        "seed": seed,
        "ari": ari,
        "error": error,
        "iterations": len(trace) - 1,
        "start": {"loglik": trace[0][1], "ari": trace[0][2]},
        "end": {"loglik": trace[-1][1], "ari": trace[-1][2]},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if name == "wine":
        row["ours"] = ours(X, y, sizes, dims, seed)
    return row


def ours(X: np.ndarray, y: np.ndarray, sizes: list[int], dims: list[int], seed: int) -> Any:
    """This package's exact EM in the same architecture: default start, and one k-means start."""
    from bayes_dgmm import DeepGaussianMixture

    out = {}
    for label, kw in (("default", {}), ("kmeans", {"init": "kmeans", "n_init": 1})):
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = DeepGaussianMixture(sizes, n_factors=dims, random_state=seed, **kw).fit(X)
        out[label] = {
            "ari": float(adjusted_rand_score(y, est.predict(X, layer=1))),
            "loglik": float(est.lower_bound_),
            "converged": bool(est.converged_),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.data:
        log = args.out / f"mixes_{name}.jsonl"
        summarise(name, resumed_runs(log, args.seeds, functools.partial(run_one, name)))


def summarise(name: str, rows: list[dict[str, Any]]) -> None:
    ok = [r for r in rows if r["error"] is None]
    start = [r["start"]["ari"] for r in rows]
    print(f"{name}: runs {len(rows)}, failed {len(rows) - len(ok)}")
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
    for label in ("default", "kmeans") if rows and "ours" in rows[0] else ():
        fits = [r["ours"][label] for r in rows]
        print(
            f"ours ({label}): ARI mean {statistics.mean(f['ari'] for f in fits):.3f}, "
            f"log-likelihood {min(f['loglik'] for f in fits):.1f} .. "
            f"{max(f['loglik'] for f in fits):.1f}, converged {sum(f['converged'] for f in fits)}"
        )


if __name__ == "__main__":
    main()
