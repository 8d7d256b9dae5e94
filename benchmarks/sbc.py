"""Simulation-based calibration of the Bayesian DGMM on a small architecture.

Draws ``--sims`` parameter sets from the prior (layer-1 priors fixed at location 0 and
scale 1), a data set of ``--rows`` rows from each, fits each by nutpie's NUTS and by
Pathfinder, ranks the truth among 99 draws for every identified quantity (path weights,
means, log variances, relabelled to the truth) and tests the ranks for uniformity
(chi-square, 10 bins). Simulations run in ``--jobs`` processes; each finished one is saved
in ``OUT/sims/`` and a rerun resumes. ``--misspecified`` draws the data from a prior whose
layer-1 intercepts are 3x wider than the fitted model's, which SBC should flag.

    .venv/bin/python benchmarks/sbc.py --sims 200 --jobs 2 --out docs/sbc
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from bayes_dgmm.experiments.sbc import SBC_METHODS, SBCDesign, run_sbc
from bayes_dgmm.model.spec import DGMMSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=list(SBC_METHODS), choices=SBC_METHODS)
    ap.add_argument("--misspecified", action="store_true")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    design = SBCDesign(
        DGMMSpec((2, 1), (2, 1), name="sbc"),
        n_features=3,
        n_samples=args.rows,
        data_priors={"eta_1_scale": 3.0} if args.misspecified else None,
    )
    t0 = time.perf_counter()
    summary = run_sbc(
        design, args.sims, args.out, methods=args.methods, random_seed=args.seed, n_jobs=args.jobs
    )
    print(f"{args.sims} simulations in {time.perf_counter() - t0:.0f} s")
    for method, res in summary["methods"].items():
        print(
            f"{method}: smallest uniformity p-value {res['min_pvalue']:.3g}, "
            f"{res['n_below_0.01']} of {len(res['pvalues'])} quantities below 0.01; "
            f"median fit figures {json.dumps(res['median_fit_figures'])}"
        )


if __name__ == "__main__":
    main()
