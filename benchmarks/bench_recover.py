"""Does the default fit recover the truth? The study data, new data sets of its design, and
other architectures, with the plain random/k-means starts and ablations for comparison.

Every fit uses only ``X``, the architecture and a seed; the true labels and parameters are
used afterwards, for the table only: ARI of the fitted model's Bayes classifier (paths and
every layer), the same for the *true* parameters (the ceiling: on overlapping data even the
truth misclassifies), log-likelihood of the fit minus that of the truth, occupied paths.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_recover.py --seeds 10 --jobs 2 \
        --out docs/recover
    # the same under three OpenBLAS kernels (each run in its own process with
    # OPENBLAS_CORETYPE set), finished fits kept in DIR/NAME-KERNEL.jsonl and resumed
    .venv/bin/python benchmarks/bench_recover.py --data study like --seeds 10 --repeats 5 \
        --kernels Haswell SkylakeX Sandybridge --jobs 2 --out docs/recover --name kernels
    # baselines and ablations on the study data
    .venv/bin/python benchmarks/bench_recover.py --data study --method kmeans random \
        no-align no-frame-step --repeats 3 --out docs/recover

Methods: ``default`` (``DeepGaussianMixture`` with only the architecture and
``random_state``: the aligned start), ``kmeans`` / ``random`` (the study's layer-wise
starts, exact EM for up to ``--max-iter`` iterations), ``no-align`` (aligned start without the
sub-cluster registration: whitened frames only), ``no-frame-step`` (without the L-BFGS frame
refinement), ``likelihood-moves`` (with the likelihood search over ambiguous sub-cluster
correspondences, off by default).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_info, threadpool_limits

from bayes_dgmm import DeepGaussianMixture
from bayes_dgmm.diagnostics.metrics import layer_aris, n_occupied
from bayes_dgmm.em.aligned import AlignOptions, aligned_init
from bayes_dgmm.experiments.datasets import (
    DGMMDataset,
    load_icbinb,
    make_dgmm_data,
    make_icbinb_like,
)

#: Other architectures from the package's simulator: (n_samples, J, G, R, separation).
OTHER_DESIGNS: dict[str, tuple[int, int, tuple[int, ...], tuple[int, ...], float]] = {
    "G=(4,2) R=(5,2) J=10": (3000, 10, (4, 2), (5, 2), 3.0),
    "G=(2,3,3) R=(4,2,1) J=8": (3000, 8, (2, 3, 3), (4, 2, 1), 8.0),
}

ABLATIONS = {
    "no-align": AlignOptions(align=False),
    "no-frame-step": AlignOptions(frame_step=False),
    "likelihood-moves": AlignOptions(n_alternatives=2),
}


def datasets(names: list[str], n_seeds: int) -> list[tuple[str, Any]]:
    """(name, loader) pairs; loaders are called inside the workers."""
    out: list[tuple[str, Any]] = []
    if "study" in names:
        out.append(("study (icbinb sec. 3)", (load_icbinb,)))
    if "like" in names:
        out += [(f"icbinb-like seed {s}", (make_icbinb_like, s)) for s in range(1, n_seeds + 1)]
    if "other" in names:
        for name, (n, J, G, R, sep) in OTHER_DESIGNS.items():
            out.append((f"{name} sep {sep:g}", (make_dgmm_data, n, J, G, R, 0, sep)))
    return out


def _load(loader: tuple[Any, ...]) -> DGMMDataset:
    if loader[0] is make_dgmm_data:
        _, n, J, G, R, seed, sep = loader
        return make_dgmm_data(n, J, G, R, seed, separation=sep)
    return loader[0](*loader[1:])


def _labels(params: Any, X: np.ndarray) -> np.ndarray:
    return np.stack([params.predict(X, layer=l) for l in range(1, params.n_layers + 1)], axis=1)


def blas_kernel() -> str:
    """The OpenBLAS kernel in use (threadpoolctl's "architecture"), or the BLAS's name."""
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            return str(info.get("architecture") or info.get("internal_api"))
    return "unknown"


def run_one(name: str, loader: tuple[Any, ...], method: str, seed: int, max_iter: int) -> dict:
    """Fit one data set with one method and score it against the truth."""
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        data = _load(loader)
        G, R = data.params.n_components, data.params.n_factors
        t0 = time.perf_counter()
        if method == "default":
            est = DeepGaussianMixture(G, n_factors=R, random_state=seed)
        elif method in ABLATIONS:
            start = aligned_init(data.X, G, R, np.random.default_rng(seed), ABLATIONS[method])
            est = DeepGaussianMixture(G, n_factors=R, init=start, random_state=seed)
        else:
            est = DeepGaussianMixture(
                G, n_factors=R, init=method, max_iter=max_iter, random_state=seed
            )
        est.fit(data.X)
        seconds = time.perf_counter() - t0
        fit = layer_aris(data.labels, _labels(est.params_, data.X), G)
        ceiling = layer_aris(data.labels, _labels(data.params, data.X), G)
        truth_ll = data.params.score(data.X)
    row: dict[str, Any] = {
        "data": name,
        "method": method,
        "seed": seed,
        "kernel": blas_kernel(),
        "seconds": round(seconds, 1),
        "n_iter": est.n_iter_,
        "converged": bool(est.converged_),
        "remaining": round(float(est.remaining_), 2),
        "loglik_fit_minus_truth": round(est.lower_bound_ - truth_ll, 1),
        "loglik_truth": round(truth_ll, 1),
        "occupied_paths": n_occupied(est.predict(data.X), data.params.n_paths),
        "n_paths": data.params.n_paths,
    }
    row["ari_path"] = round(fit["path"], 4)
    for l in range(1, 5):
        row[f"ari_layer_{l}"] = round(fit[f"layer_{l}"], 4) if f"layer_{l}" in fit else ""
    row["bayes_ari_path"] = round(ceiling["path"], 4)
    row["bayes_ari_min_layer"] = round(min(v for k, v in ceiling.items() if k != "path"), 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", nargs="+", default=["study", "like", "other"], choices=["study", "like", "other"]
    )
    parser.add_argument("--seeds", type=int, default=10, help="icbinb-like data sets 1..seeds")
    parser.add_argument(
        "--method",
        nargs="+",
        default=["default"],
        choices=["default", "kmeans", "random", *ABLATIONS],
    )
    parser.add_argument("--repeats", type=int, default=1, help="fit seeds 0..repeats-1")
    parser.add_argument("--max-iter", type=int, default=200, help="EM iterations of baselines")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="folder for NAME.csv")
    parser.add_argument("--name", default="recover", help="CSV file name (without .csv)")
    parser.add_argument(
        "--kernels", nargs="+", default=None, help="OPENBLAS_CORETYPE values, one process each"
    )
    args = parser.parse_args()
    if args.kernels:
        run_kernels(args)
        return
    tasks = [
        (name, loader, method, seed)
        for name, loader in datasets(args.data, args.seeds)
        for method in args.method
        for seed in range(args.repeats)
    ]
    done: dict[tuple[str, str, int], dict] = {}
    log = None
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        log = args.out / f"{args.name}.jsonl"
        if log.exists():
            for line in log.read_text().splitlines():
                row = json.loads(line)
                done[(row["data"], row["method"], row["seed"])] = row
    todo = [t for t in tasks if (t[0], t[2], t[3]) not in done]
    results = Parallel(n_jobs=args.jobs, return_as="generator_unordered")(
        delayed(run_one)(name, loader, method, seed, args.max_iter)
        for name, loader, method, seed in todo
    )
    for row in results:
        done[(row["data"], row["method"], row["seed"])] = row
        if log is not None:
            with log.open("a") as fh:  # one finished fit per line: an interrupted run resumes
                fh.write(json.dumps(row) + "\n")
    rows = [done[(t[0], t[2], t[3])] for t in tasks]
    print_table(rows)
    if args.out is not None:
        path = args.out / f"{args.name}.csv"
        write_csv(path, rows)
        print(f"written {path}")


def print_table(rows: list[dict]) -> None:
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))


def write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def run_kernels(args: argparse.Namespace) -> None:
    """Rerun this script once per OpenBLAS kernel (the variable must be set before numpy is
    imported), then print the robustness table: per data set, seed and kernel, the worst
    layer ARI and the log-likelihood above the truth's."""
    if args.out is None:
        raise SystemExit("--kernels needs --out (each kernel's fits are written there)")
    argv = [a for a in sys.argv[1:]]
    cut = argv.index("--kernels")
    end = cut + 1
    while end < len(argv) and not argv[end].startswith("--"):
        end += 1
    base = argv[:cut] + argv[end:]
    if "--name" in base:
        i = base.index("--name")
        base = base[:i] + base[i + 2 :]
    rows: list[dict] = []
    for kernel in args.kernels:
        env = {**os.environ, "OPENBLAS_CORETYPE": kernel, "OPENBLAS_NUM_THREADS": "1"}
        name = f"{args.name}-{kernel}"
        subprocess.run([sys.executable, __file__, *base, "--name", name], env=env, check=True)
        with (args.out / f"{name}.csv").open() as fh:
            rows += [{**r, "coretype": kernel} for r in csv.DictReader(fh)]
    summary = []
    for r in rows:
        aris = [float(r[k]) for k in r if k.startswith("ari_layer_") and r[k] != ""]
        summary.append(
            {
                "data": r["data"],
                "seed": r["seed"],
                "coretype": r["coretype"],
                "kernel": r["kernel"],
                "min_ari": round(min([float(r["ari_path"]), *aris]), 4),
                "loglik_fit_minus_truth": r["loglik_fit_minus_truth"],
                "converged": r["converged"],
                "remaining": r["remaining"],
                "seconds": r["seconds"],
            }
        )
    print_table(summary)
    write_csv(args.out / f"{args.name}-summary.csv", summary)


if __name__ == "__main__":
    main()
