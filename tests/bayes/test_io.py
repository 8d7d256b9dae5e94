import numpy as np
import xarray as xr

from bayes_dgmm.bayes.io import _drop_object_variables


def test_ragged_smc_statistics_become_final_values():
    ragged = np.empty(2, dtype=object)
    ragged[0] = [-10.0, -5.0, -3.5]
    ragged[1] = [-9.0, -4.0]
    stats = xr.Dataset(
        {
            "log_marginal_likelihood": (("chain",), ragged),
            "lp": (("chain", "draw"), np.zeros((2, 3))),
        }
    )
    tree = xr.DataTree.from_dict({"sample_stats": stats})
    copy = tree.copy()
    _drop_object_variables(copy)
    out = copy["sample_stats"]
    np.testing.assert_array_equal(out["log_marginal_likelihood_final"].values, [-3.5, -4.0])
    assert "log_marginal_likelihood" not in out
    assert out["lp"].dtype == np.float64
    assert "log_marginal_likelihood" in tree["sample_stats"]  # the fitted tree is untouched
