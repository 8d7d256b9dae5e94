"""MAP, Laplace, Pathfinder, ADVI and full-rank ADVI on the study data from the default EM
fit: do they converge?

For each method it prints the wall time, whether the method's own criterion held, the mean
log-likelihood of its draws minus the MAP's (a posterior's draws should lie about k/2 below,
k = free parameters; the target is within [-k, 0]) and the ARI of every layer against the true
labels. One BLAS thread. Each finished method is written to ``--out`` as JSON and skipped
when the script is run again; the EM start is kept there too (``em_start.json``).

    .venv/bin/python benchmarks/bench_vi.py --out benchmarks/out/vi [--methods map advi]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

METHODS = ("map", "laplace", "pathfinder", "advi", "fullrank_advi")


def em_start(out: Path, X: np.ndarray, seed: int):
    from bayes_dgmm import DeepGaussianMixture, DGMMParams
    from bayes_dgmm._io import atomic_write_text

    path = out / "em_start.json"
    if path.exists():
        saved = json.loads(path.read_text())
        return DGMMParams.from_dict(saved["params"]), saved
    t0 = time.perf_counter()
    em = DeepGaussianMixture((3, 3, 2), n_factors=(11, 6, 2), random_state=seed).fit(X)
    saved = {
        "params": em.params_.to_dict(),
        "seconds": time.perf_counter() - t0,
        "log_likelihood": em.lower_bound_,
        "converged": bool(em.converged_),
    }
    atomic_write_text(path, json.dumps(saved))
    return em.params_, saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/vi"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--n", type=int, default=20000, help="most VI iterations")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("pymc").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)

    from sklearn.metrics import adjusted_rand_score

    from bayes_dgmm import BayesianDeepGaussianMixture
    from bayes_dgmm._io import atomic_write_text
    from bayes_dgmm.bayes.backends.flat import n_free_variables
    from bayes_dgmm.experiments.datasets import load_icbinb

    data = load_icbinb()
    with threadpool_limits(1):
        start, em = em_start(args.out, data.X, args.seed)
        print(
            f"EM start: log-likelihood {em['log_likelihood']:.1f}, converged {em['converged']}, "
            f"{em['seconds']:.0f} s"
        )
        est = BayesianDeepGaussianMixture.from_spec(
            "icbinb-sec3", random_seed=args.seed, progressbar=False
        )
        map_ll = None
        for method in ["map", *[m for m in args.methods if m != "map"]]:
            path = args.out / f"{method}.json"
            if path.exists():
                row = json.loads(path.read_text())
            else:
                kw: dict = {"draws": args.draws} if method in ("laplace", "pathfinder") else {}
                if method in ("advi", "fullrank_advi"):
                    kw = {"n": args.n, "draws": args.draws}
                t0 = time.perf_counter()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    est.fit(data.X, method=method, init=start, **kw)
                seconds = time.perf_counter() - t0
                ll = est.idata_["sample_stats"]["log_likelihood_total"].values.ravel()
                row = {
                    "method": method,
                    "seconds": seconds,
                    "converged": bool(est.converged_),
                    "convergence": est.convergence_,
                    "mean_log_likelihood": float(ll.mean()),
                    "k": n_free_variables(est.model_),
                    "ari": {
                        f"layer_{l}": float(
                            adjusted_rand_score(data.labels[:, l - 1], est.predict(data.X, layer=l))
                        )
                        for l in (1, 2, 3)
                    },
                    "warnings": [str(w.message)[:200] for w in caught],
                }
                atomic_write_text(path, json.dumps(row, indent=1, default=str))
            if method == "map":
                map_ll = row["mean_log_likelihood"]
            gap = row["mean_log_likelihood"] - map_ll
            aris = " ".join(f"{k} {v:.3f}" for k, v in row["ari"].items())
            print(
                f"{method:<14} {row['seconds']:7.1f} s  converged {row['converged']}  "
                f"mean loglik - MAP {gap:10.1f} "
                f"(k = {row['k']})  {aris}",
                flush=True,
            )
            print(f"{'':<14} {json.dumps(row['convergence'], default=str)}", flush=True)


if __name__ == "__main__":
    main()
