"""Time DGMMParams.score_samples for N=4000 at J = 100, 300, 1000 (G=(3,2), R=(10,3)).

The log density uses Woodbury and the determinant lemma through layer 1's loadings, so the
time should grow about linearly in J (ratio ~3 between consecutive sizes), not
quadratically (~9) or cubically. BLAS is pinned to one thread.

    .venv/bin/python benchmarks/bench_score_samples.py
"""

from __future__ import annotations

import numpy as np
from _timing import best_time
from threadpoolctl import threadpool_limits

from bayes_dgmm import DGMMParams


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(1):
        for J in (100, 300, 1000):
            params = DGMMParams.random(J, (3, 2), (10, 3), rng)
            X, _ = params.sample(4000, random_state=rng)
            params.score_samples(X[:10])  # warm the cached marginals
            rows.append((J, best_time(lambda p=params, X=X: p.score_samples(X))))
    print("score_samples, N=4000, G=(3,2), R=(10,3), 6 paths, 1 BLAS thread")
    print(f"{'J':>6} {'seconds':>10} {'ratio to previous':>18} {'J ratio':>8}")
    for i, (J, t) in enumerate(rows):
        ratio = f"{t / rows[i - 1][1]:.2f}" if i else "-"
        jr = f"{J / rows[i - 1][0]:.2f}" if i else "-"
        print(f"{J:>6} {t:>10.4f} {ratio:>18} {jr:>8}")


if __name__ == "__main__":
    main()
