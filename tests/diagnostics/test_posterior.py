import numpy as np
import pytest
import xarray as xr

from bayes_dgmm import DGMMParams, simulate
from bayes_dgmm.diagnostics.posterior import (
    RHAT_OK,
    describe_fit,
    posterior_draws,
    relabel_posterior,
    smc_stages,
)
from bayes_dgmm.diagnostics.relabel import permute_layers
from tests.helpers import jitter

N_DRAWS = 250


@pytest.fixture(scope="module")
def truth():
    params = DGMMParams.random(6, (3, 2), (3, 1), random_state=5, separation=5.0)
    sim = simulate(params, 300, random_state=2)
    return params, sim


def _jitter(params, rng, scale=0.01):
    return jitter(params, rng, scale)


def _tree(chains):
    """DataTree with a posterior group from chains of DGMMParams draws."""
    named = [[d.to_named() for d in chain] for chain in chains]
    data = {}
    for name in named[0][0]:
        arr = np.array([[d[name] for d in chain] for chain in named])
        layer = name.split("_")[1]
        base = name.split("_")[0]
        dims = {
            "pi": [f"component_{layer}"],
            "eta": [f"component_{layer}", f"in_{layer}"],
            "psi": [f"component_{layer}", f"in_{layer}"],
            "Lambda": [f"component_{layer}", f"in_{layer}", f"out_{layer}"],
        }[base]
        data[name] = (("chain", "draw", *dims), arr)
    return xr.DataTree.from_dict({"posterior": xr.Dataset(data)})


def _chains(params, perms_per_chain, rng, switch_chain=None):
    chains, injected = [], []
    for c, perms in enumerate(perms_per_chain):
        chain, inj = [], []
        for d in range(N_DRAWS):
            p = perms
            if c == switch_chain and d >= 3 * N_DRAWS // 4:  # a switch inside the chain
                p = [perms[0], perms[1][::-1]]
            chain.append(permute_layers(_jitter(params, rng), p))
            inj.append(p)
        chains.append(chain)
        injected.append(inj)
    return chains, injected


def test_pure_relabelling_between_chains(truth):
    params, sim = truth
    rng = np.random.default_rng(0)
    ident = [np.arange(3), np.arange(2)]
    perms_per_chain = [
        ident,
        [np.arange(3), np.array([1, 0])],
        [np.array([2, 0, 1]), np.arange(2)],
        [np.array([1, 2, 0]), np.array([1, 0])],
    ]
    chains, injected = _chains(params, perms_per_chain, rng, switch_chain=1)
    tree = _tree(chains)
    before = tree["posterior"].to_dataset().copy(deep=True)
    rel = relabel_posterior(tree, pivot=0)
    xr.testing.assert_identical(tree["posterior"].to_dataset(), before)  # input untouched
    for layer in (1, 2):
        got = rel.permutations[layer]
        for c in range(4):
            for d in range(N_DRAWS):
                np.testing.assert_array_equal(got[c, d], np.argsort(injected[c][d][layer - 1]))
    report = {r["layer"]: r for r in rel.report}
    assert report[2]["switches_per_chain"] == [0, 1, 0, 0]
    assert report[1]["chains_relabelled"] == [2, 3]
    assert report[2]["chains_relabelled"] == [1, 3]
    for r in rel.report:
        assert r["rhat_raw"] > 1.5  # raw r_hat far above 1.01
        assert r["rhat_relabelled"] < RHAT_OK
    # relabelled draws all sit at the truth again
    draws, _ = posterior_draws(rel.posterior)
    np.testing.assert_allclose(draws[-1].eta[0], params.eta[0], atol=0.1)
    text = describe_fit(tree, sim.X, reference_labels=sim.labels)
    assert text.startswith("label switching only")
    assert "chains 0, 1, 2 and 3 are the same mode up to a relabelling of layers 1 and 2" in text
    assert "ARI against the reference" in text


def test_different_modes_are_reported_multimodal(truth):
    params, sim = truth
    rng = np.random.default_rng(1)
    ident = [np.arange(3), np.arange(2)]
    chains, _ = _chains(params, [ident, ident, ident], rng)
    other = DGMMParams.random(6, (3, 2), (3, 1), random_state=99, separation=5.0)
    chains.append([_jitter(other, rng) for _ in range(N_DRAWS)])
    text = describe_fit(_tree(chains), sim.X)
    assert text.startswith("multimodal")
    assert "chain 3 is a different mode (ARI" in text
    assert "chains 0, 1 and 2 are the same mode with the same labels" in text


def test_relabelling_plot_and_fit_census(truth):
    from bayes_dgmm.diagnostics import census_of_fits
    from bayes_dgmm.experiments.plots import plot_rank_relabelling, plot_relabelling

    params, sim = truth
    rng = np.random.default_rng(3)
    chains, _ = _chains(
        params, [[np.arange(3), np.arange(2)], [np.array([1, 2, 0]), np.arange(2)]], rng
    )
    rel = relabel_posterior(_tree([c[:30] for c in chains]))
    fig = plot_relabelling(rel, layer=1)
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title().split()[0] for ax in panels] == ["raw"] * 3 + ["relabelled"] * 3
    # one trace per chain; relabelled, component k sits at one level in both chains
    assert all(len(ax.lines) == 2 for ax in panels)
    for ax in panels[3:]:
        first, second = (ln.get_ydata().mean() for ln in ax.lines)
        assert abs(first - second) < 0.1
    # the raw traces of chain 1 sit where another component of chain 0 does
    gaps = [abs(np.subtract(*[ln.get_ydata().mean() for ln in ax.lines])) for ax in panels[:3]]
    assert max(gaps) > 1
    # ArviZ's rank plot: the uniformity test rejects the raw chains, not the relabelled ones
    ranks = plot_rank_relabelling(rel, layer=1)
    pvalues = [
        float(t.get_text().split("=")[1].split("(")[0]) for ax in ranks.axes for t in ax.texts
    ]
    assert len(pvalues) == 6
    assert max(pvalues[:3]) < 0.01 and min(pvalues[3:]) > 0.05
    other = DGMMParams.random(6, (3, 2), (3, 1), random_state=99, separation=5.0)
    census = census_of_fits(
        [params, permute_layers(params, [np.array([2, 1, 0]), np.arange(2)]), other],
        sim.X,
        reference_labels=sim.labels,
    )
    assert census.n_modes == 2
    assert census.mode_of_run[0] == census.mode_of_run[1] != census.mode_of_run[2]
    from sklearn.metrics import adjusted_rand_score

    mode = census.modes[int(census.mode_of_run[0])]
    assert mode["ari_path"] == pytest.approx(adjusted_rand_score(sim.paths, params.predict(sim.X)))


def test_sampler_convergence_on_identified_quantities(truth):
    from bayes_dgmm.diagnostics.posterior import ESS_OK, sampler_convergence

    params, _ = truth
    rng = np.random.default_rng(3)
    ident = [np.arange(3), np.arange(2)]
    swapped = [np.array([2, 0, 1]), np.array([1, 0])]
    # four chains of iid draws around one DGMM, two of them relabelled: the identified
    # quantities mix (r_hat ~ 1, ESS ~ the draws), although raw eta_1 does not
    chains, _ = _chains(params, [ident, swapped, ident, swapped], rng)
    tree = _tree(chains)
    tree["sample_stats"] = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros((4, N_DRAWS), dtype=bool))}
    )
    good = sampler_convergence(tree)
    assert good["converged"], good
    assert good["max_rhat"] < RHAT_OK and good["min_ess_bulk"] > ESS_OK
    # two chains around a different DGMM: the identified quantities do not mix
    other = DGMMParams.random(6, (3, 2), (3, 1), random_state=6, separation=5.0)
    far, _ = _chains(other, [ident, ident], rng)
    bad = sampler_convergence(_tree(chains[:2] + far))
    assert not bad["converged"] and bad["max_rhat"] > 1.5
    # one divergence is enough to refuse convergence
    tree["sample_stats"]["diverging"][0, 0] = True
    assert sampler_convergence(tree)["divergences"] == 1
    assert not sampler_convergence(tree)["converged"]


def test_nested_rhat_with_fits_as_superchains(truth):
    from bayes_dgmm.diagnostics.posterior import nested_rhat

    params, _ = truth
    rng = np.random.default_rng(4)
    ident = [np.arange(3), np.arange(2)]
    swapped = [np.array([1, 2, 0]), np.array([1, 0])]
    # three "runs" of two chains of iid draws around one DGMM, one run relabelled: label
    # switching between runs is not a lack of mixing
    same = [_tree(_chains(params, [p, p], rng)[0]) for p in (ident, swapped, ident)]
    good = nested_rhat(same)
    assert good["superchain_ids"] == [0, 0, 1, 1, 2, 2]
    assert 1.0 <= good["max_rhat_nested"] < RHAT_OK
    # a run in another mode: its superchain disagrees with the others
    other = DGMMParams.random(6, (3, 2), (3, 1), random_state=6, separation=5.0)
    far = _tree(_chains(other, [ident, ident], rng)[0])
    assert nested_rhat([*same[:2], far])["max_rhat_nested"] > 1.5
    with pytest.raises(ValueError, match="at least 2 fits"):
        nested_rhat(same[:1])


def test_smc_stages_in_both_of_pymcs_layouts():
    # chains with as many stages: PyMC's object array becomes (chain, stage)
    square = np.array([[0.1, 0.5, 1.0], [0.2, 0.6, 1.0]], dtype=object)
    assert smc_stages(xr.DataArray(square, dims=("chain", "beta_dim_0"))) == 3
    # ragged: one list of stages per chain
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = [0.1, 1.0], [0.1, 0.3, 0.6, 1.0]
    assert smc_stages(xr.DataArray(ragged, dims=("chain",))) == 4
