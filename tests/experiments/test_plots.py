import numpy as np

from bayes_dgmm.experiments import plots


def test_histories_mutual_ari_and_occupancy_figures():
    fig = plots.plot_histories({"exact": [[3.0, 2.0, 1.5], [4.0, 2.5]], "stochastic": [[5.0]]})
    assert len(fig.axes) == 2
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [3, 2]
    m = np.array([[1.0, 0.2, 0.97], [0.2, 1.0, 0.1], [0.97, 0.1, 1.0]])
    fig = plots.plot_mutual_ari(m)
    assert any("3 pairs, 33% with ARI >= 0.95" in ax.get_title() for ax in fig.axes)
    fig = plots.plot_path_occupancy({"fit": [5, 0, 3]})
    bars = fig.axes[0].patches
    assert [b.get_height() for b in bars] == [5, 0, 3]
    assert bars[1].get_facecolor() != bars[0].get_facecolor()  # empty paths stand out
    fig = plots.plot_metric_by_method(
        [
            {"method": "a", "ari": 0.5},
            {"method": "b", "ari": 1.0},
            {"method": "a", "ari": float("nan")},
        ],
        "ari",
    )
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b"]
