"""select_architecture refuses a malformed grid entry by its position, before any fit."""

import numpy as np
import pytest

from bayes_dgmm.em.estimator import select_architecture

X = np.random.default_rng(0).normal(size=(40, 4))


@pytest.mark.parametrize(
    ("grid", "error", "match"),
    [
        ([((2, 2),)], ValueError, r"grid\[0\]=\(\(2, 2\),\) is not an architecture"),
        ([((2,), (1,)), (2, 1, 1)], ValueError, r"grid\[1\]=\(2, 1, 1\) is not an architecture"),
        ([{"n_components": (2,)}], ValueError, r"grid\[0\]=\{'n_components': \(2,\)\} is not"),
        ("abc", TypeError, r"grid='abc' is not a list of architectures"),
    ],
)
def test_malformed_grid_is_refused(grid, error, match):
    with pytest.raises(error, match=match):
        select_architecture(X, grid, max_iter=2)
