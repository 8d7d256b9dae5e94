"""NUTS (nutpie) from the EM fit on a simulated data set of the design G=(4,2), R=(5,2), J=10.

Prints the wall time of sampling, the r_hat and bulk ESS of the identified quantities (after
relabelling), the divergences, the mean tree depth and the ARI of each layer against the true
labels. Targets: r_hat < 1.01, ESS > 400, no divergence, under 5 minutes for 4 chains x 1000
draws. One BLAS thread; the result is written to ``--out`` as JSON.

    .venv/bin/python benchmarks/bench_nuts.py --out benchmarks/out/nuts [--draws 1000]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/nuts"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gauge", default="standardised", choices=("standardised", "noise"))
    parser.add_argument("--max-treedepth", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger("pymc").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)

    from sklearn.metrics import adjusted_rand_score

    from bayes_dgmm import BayesianDeepGaussianMixture, DeepGaussianMixture
    from bayes_dgmm._io import atomic_write_text
    from bayes_dgmm.experiments.datasets import make_dgmm_data

    comps, facts = (4, 2), (5, 2)
    data = make_dgmm_data(args.n, 10, comps, facts, random_state=args.seed, separation=4.0)
    with threadpool_limits(1):
        t0 = time.perf_counter()
        em = DeepGaussianMixture(comps, n_factors=facts, random_state=args.seed).fit(data.X)
        t_em = time.perf_counter() - t0
        est = BayesianDeepGaussianMixture(
            comps, facts, random_seed=args.seed, progressbar=False, gauge=args.gauge
        )
        t0 = time.perf_counter()
        est.fit(
            data.X,
            method="nutpie",
            init=em,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            cores=args.cores,
            nuts={"max_treedepth": args.max_treedepth},
        )
        t_fit = time.perf_counter() - t0
    stats = est.idata_["sample_stats"]
    sampling = float(est.idata_["posterior"].attrs.get("sampling_time", np.nan))
    row = {
        "design": {"N": args.n, "J": 10, "G": comps, "R": facts},
        "gauge": args.gauge,
        "max_treedepth": args.max_treedepth,
        "chains": args.chains,
        "draws": args.draws,
        "tune": args.tune,
        "em_seconds": t_em,
        "em_converged": bool(em.converged_),
        "fit_seconds": t_fit,
        "sampling_seconds": sampling,
        **{k: v for k, v in est.convergence_.items()},
        "mean_tree_depth": float(stats["tree_depth"].mean()) if "tree_depth" in stats else None,
        "mean_leapfrog_steps": float(stats["n_steps"].mean()) if "n_steps" in stats else None,
        "share_at_max_depth": (
            float((stats["tree_depth"] >= args.max_treedepth).mean())
            if "tree_depth" in stats
            else None
        ),
        "ari": {
            f"layer_{l}": float(
                adjusted_rand_score(data.labels[:, l - 1], est.predict(data.X, layer=l))
            )
            for l in (1, 2)
        },
    }
    atomic_write_text(args.out / "nuts.json", json.dumps(row, indent=1, default=str))
    for key, value in row.items():
        print(f"{key:<18} {value}")


if __name__ == "__main__":
    main()
