"""Too few rows for the architecture: an error, not a degenerate fit called converged."""

import numpy as np
import pytest

from bayes_dgmm import DeepGaussianMixture
from bayes_dgmm.experiments.datasets import make_dgmm_data


@pytest.fixture(scope="module")
def X():
    return make_dgmm_data(40, 5, (2, 2), (2, 1), random_state=3, separation=5.0).X


@pytest.mark.parametrize("n", [2, 3, 7])
def test_fewer_than_two_rows_per_path_is_refused(X, n):
    est = DeepGaussianMixture((2, 2), n_factors=(2, 1), random_state=0)
    with pytest.raises(ValueError, match=rf"n_samples={n}, fewer than two per path .*\(4 paths\)"):
        est.fit(X[:n])
    assert not hasattr(est, "converged_")


def test_two_rows_per_path_fit(X):
    est = DeepGaussianMixture((2, 2), n_factors=(2, 1), n_init=1, max_iter=5, random_state=0)
    est.fit(X[:8])
    assert np.isfinite(est.lower_bound_)
