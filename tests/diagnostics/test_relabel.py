import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from bayes_dgmm import DGMMParams, simulate
from bayes_dgmm.diagnostics import (
    RELABEL_METHODS,
    mode_census,
    path_permutation,
    permute_layers,
    relabel_draws,
)
from bayes_dgmm.diagnostics._kernels import apply_permutations, count_switches
from tests.helpers import jitter


@pytest.fixture(scope="module")
def truth():
    params = DGMMParams.random(6, (3, 2, 2), (3, 2, 1), random_state=11, separation=4.0)
    sim = simulate(params, 400, random_state=1)
    return params, sim


def _jitter(params, rng, scale=0.02):
    return jitter(params, rng, scale)


def _injected_draws(params, n_draws, rng):
    draws, injected = [params], [[np.arange(g) for g in params.n_components]]
    for _ in range(n_draws - 1):
        perms = [rng.permutation(g) for g in params.n_components]
        draws.append(permute_layers(_jitter(params, rng), perms))
        injected.append(perms)
    return draws, injected


@pytest.mark.parametrize("method", RELABEL_METHODS)
def test_injected_permutations_recovered_exactly(truth, method):
    params, sim = truth
    rng = np.random.default_rng(0)
    draws, injected = _injected_draws(params, 12, rng)
    result = relabel_draws(draws, method=method, pivot=0, X=sim.X)
    for layer in range(params.n_layers):
        for t in range(len(draws)):
            # draw t shows old label injected[t][k] at position k; aligning it back needs the
            # inverse permutation
            expected = np.argsort(injected[t][layer])
            np.testing.assert_array_equal(result.permutations[layer][t], expected)
    # relabelled draws are close to the pivot again, and the input is untouched
    for d in result.params:
        np.testing.assert_allclose(d.eta[0], params.eta[0], atol=0.2)
    assert draws[1] != result.params[1] or all(
        np.array_equal(p, np.arange(len(p))) for p in injected[1]
    )


def test_path_permutation_consistent_with_predictions(truth):
    params, sim = truth
    perms = [np.array([2, 0, 1]), np.array([1, 0]), np.array([1, 0])]
    permuted = permute_layers(params, perms)
    old_of_new = path_permutation(perms, params.n_components)
    np.testing.assert_array_equal(old_of_new[permuted.predict(sim.X)], params.predict(sim.X))


def test_apply_permutations_and_switches():
    values = np.arange(12.0).reshape(2, 3, 2)
    perms = np.array([[0, 1, 2], [2, 0, 1]])
    out = apply_permutations(values, perms)
    np.testing.assert_array_equal(out[1], values[1][[2, 0, 1]])
    assert count_switches(np.array([[0, 1], [0, 1], [1, 0], [1, 0], [0, 1]])) == 2


def test_relabel_errors(truth):
    params, _ = truth
    with pytest.raises(ValueError, match="method='kl' is not one of"):
        relabel_draws([params], method="kl")
    with pytest.raises(ValueError, match="pass X"):
        relabel_draws([params], method="ecr")


def test_mode_census_groups_relabelled_runs(truth):
    params, sim = truth
    rng = np.random.default_rng(1)
    base = params.predict(sim.X)
    other = rng.integers(0, params.n_paths, size=base.size)  # an unrelated partition
    # runs 0-2: the truth under different labelings; run 3: unrelated; run 4: truth + 1% noise
    relabel = rng.permutation(params.n_paths)
    noisy = base.copy()
    flip = rng.choice(base.size, size=4, replace=False)
    noisy[flip] = rng.integers(0, params.n_paths, size=4)
    runs = np.stack([base, relabel[base], relabel[relabel[base]], other, noisy])
    census = mode_census(
        runs, params.n_components, scores=[-10, -11, -12, -5, -13], reference_labels=sim.labels
    )
    assert census.n_modes == 2
    assert census.mode_of_run.tolist() == [1, 1, 1, 0, 1]  # mode 0 holds the best score
    truth_mode = census.modes[1]
    assert truth_mode["n_members"] == 4 and truth_mode["best_run"] == 0
    assert truth_mode["ari_path"] == pytest.approx(adjusted_rand_score(base, sim.paths))
    assert census.modes[0]["empty_paths"] == 0
    np.testing.assert_allclose(np.diag(census.mutual_ari), 1.0)
    assert census.table().shape[0] == 2


@pytest.mark.parametrize(
    ("paths", "match"),
    [
        ([[0, 1, 3], [0, 4, 3]], r"paths holds 4 \(run 2, observation 2, counted from 1\)"),
        ([[0, -1, 3]], r"paths holds -1 \(run 1, observation 2.*path ids are 0\.\.3"),
        ([[0.0, 1.5, 3.0]], r"paths has dtype float64; path ids are integers 0\.\.3"),
    ],
)
def test_mode_census_refuses_invalid_path_ids(paths, match):
    with pytest.raises(ValueError, match=match):
        mode_census(np.array(paths), (2, 2))
