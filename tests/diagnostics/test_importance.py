"""The Pareto k of importance weights against tails known exactly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from bayes_dgmm.diagnostics.importance import pareto_k


def test_pareto_k_is_that_of_the_weights_tail():
    # Pareto(alpha) weights have k = 1 / alpha (k-hat's noise at 20000 draws is ~0.08);
    # a proposal wider than a Gaussian target has bounded weights (k <= 0); equal weights
    # (q is the target) have no tail, k 0
    rng = np.random.default_rng(0)
    for alpha in (2.0, 1.25):
        log_w = np.log(rng.pareto(alpha, size=20000) + 1.0)
        assert pareto_k(log_w) == pytest.approx(1 / alpha, abs=0.25)
    x = rng.normal(0.0, 2.0, size=20000)
    assert pareto_k(norm.logpdf(x) - norm.logpdf(x, 0.0, 2.0)) < 0.2
    assert pareto_k(np.full(1000, -3.5)) == 0.0


def test_pareto_k_of_exact_draws_is_small_and_of_bad_ones_infinite():
    assert pareto_k(np.zeros(1000) + 1e-9 * np.arange(1000)) < 0.5
    assert pareto_k(np.array([0.0, -np.inf, 1.0] * 100)) == np.inf
