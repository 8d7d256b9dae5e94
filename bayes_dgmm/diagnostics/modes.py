"""Multimodality: a census of the modes reached by chains, VI runs or EM restarts.

Partitions need no relabelling: the adjusted Rand index (ARI) between two partitions is
invariant to any renaming of clusters. Runs whose partitions agree (mutual ARI at least
``threshold`` for every pair, complete linkage) form one mode. This is the study's Figure 5
(mutual ARI of 100 EM starts) turned into a reusable diagnostic, with the study's Table 2
(empty global paths) and Table 3 (ARI per layer against reference labels) per mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import adjusted_rand_score

from bayes_dgmm.diagnostics.metrics import layer_aris, n_occupied
from bayes_dgmm.model.paths import path_table

#: Two runs whose partitions have ARI at least this are taken as the same mode. ARI 0.95
#: tolerates a few percent of boundary observations assigned differently.
SAME_MODE_ARI = 0.95


def mutual_ari(partitions: ArrayLike) -> NDArray[np.float64]:
    """ARI of every partition against every other, shape (R, R), ones on the diagonal.

    Parameters
    ----------
    partitions : (R, N) int array, one partition of the same N observations per run
    """
    parts = np.asarray(partitions)
    R = parts.shape[0]
    out = np.eye(R)
    for i in range(R):
        for j in range(i + 1, R):
            out[i, j] = out[j, i] = adjusted_rand_score(parts[i], parts[j])
    return out


@dataclass(frozen=True)
class ModeCensus:
    """Modes found among runs.

    Attributes
    ----------
    mode_of_run : (R,) int array, the mode of every run (0 is the mode of the best run)
    mutual_ari : (R, R) array
    modes : list of dicts, one per mode (best first): ``mode``, ``members``, ``n_members``,
        ``best_run``, ``best_score``, ``occupied_paths``, ``empty_paths``, ``mean_within_ari``
        and, with reference labels, ``ari_path``, ``ari_layer_1``, ...
    threshold : the ARI threshold used
    """

    mode_of_run: NDArray[np.intp]
    mutual_ari: NDArray[np.float64]
    modes: list[dict[str, Any]]
    threshold: float

    @property
    def n_modes(self) -> int:
        return len(self.modes)

    def table(self) -> Any:
        """The modes as a pandas DataFrame (one row per mode)."""
        import pandas as pd

        return pd.DataFrame(self.modes).set_index("mode")


def _checked_paths(paths: ArrayLike, n_components: Sequence[int], threshold: float) -> NDArray[Any]:
    """``paths`` as an (R, N) integer array of path ids, or a ValueError that says why not."""
    parts = np.asarray(paths)
    if parts.ndim != 2:
        raise ValueError(f"paths has shape {parts.shape}; expected (n_runs, n_samples).")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold} must lie in (0, 1].")
    n_paths = int(np.prod([int(g) for g in n_components]))
    if not np.issubdtype(parts.dtype, np.integer):
        raise ValueError(f"paths has dtype {parts.dtype}; path ids are integers 0..{n_paths - 1}.")
    bad = np.flatnonzero((parts.ravel() < 0) | (parts.ravel() >= n_paths))
    if bad.size:
        r, i = divmod(int(bad[0]), parts.shape[1])
        raise ValueError(
            f"paths holds {int(parts[r, i])} (run {r + 1}, observation {i + 1}, counted from 1), "
            f"not a path id of n_components={tuple(n_components)}: path ids are 0..{n_paths - 1}."
        )
    return parts


def _mode_of_run(
    ari: NDArray[np.float64], scores: NDArray[np.float64], threshold: float
) -> NDArray[np.intp]:
    """(R,) the mode of every run: complete linkage on ``1 - ari`` cut at ``1 - threshold``,
    modes numbered by their best score (ties: by size)."""
    if ari.shape[0] == 1:
        clusters = np.zeros(1, dtype=np.intp)
    else:
        dist = squareform(1.0 - ari, checks=False)
        clusters = (
            fcluster(
                linkage(dist, method="complete"), t=1.0 - threshold + 1e-12, criterion="distance"
            )
            - 1
        )
    order = sorted(
        set(clusters.tolist()),
        key=lambda c: (-np.max(np.where(clusters == c, scores, -np.inf)), -np.sum(clusters == c)),
    )
    remap = {c: i for i, c in enumerate(order)}
    return np.array([remap[int(c)] for c in clusters], dtype=np.intp)


def _mode_row(
    mode: int,
    members: NDArray[np.intp],
    parts: NDArray[Any],
    ari: NDArray[np.float64],
    scores: NDArray[np.float64] | None,
    n_components: Sequence[int],
    reference_labels: ArrayLike | None,
) -> dict[str, Any]:
    """One mode's row of :attr:`ModeCensus.modes` (its runs ``members``, ``scores`` None
    when the runs have none)."""
    sc = np.zeros(parts.shape[0]) if scores is None else scores
    table = path_table(n_components)
    n_paths = table.shape[0]
    best = int(members[np.argmax(sc[members])])
    sub = ari[np.ix_(members, members)]
    occupied = n_occupied(parts[best], n_paths)
    row: dict[str, Any] = {
        "mode": mode,
        "members": members.tolist(),
        "n_members": int(members.size),
        "best_run": best,
        "best_score": float(sc[best]) if scores is not None else float("nan"),
        "occupied_paths": occupied,
        "empty_paths": n_paths - occupied,
        "mean_within_ari": float(sub[np.triu_indices(members.size, 1)].mean())
        if members.size > 1
        else 1.0,
    }
    if reference_labels is not None:
        aris = layer_aris(reference_labels, table[parts[best]], n_components)
        row.update({f"ari_{k}": v for k, v in aris.items()})
    return row


def mode_census(
    paths: ArrayLike,
    n_components: Sequence[int],
    *,
    scores: ArrayLike | None = None,
    reference_labels: ArrayLike | None = None,
    threshold: float = SAME_MODE_ARI,
) -> ModeCensus:
    """Group runs into modes by the agreement of their path partitions.

    Parameters
    ----------
    paths : (R, N) int array, the global path of every observation in every run
    n_components : the architecture ``(G_1, ..., G_L)``
    scores : (R,) array, optional
        Log-likelihood, ELBO or log posterior of every run; modes and runs are ordered by it.
    reference_labels : (N, L) int array, optional
        True per-layer labels; adds ARI per layer and for the paths to every mode.
    threshold : float in (0, 1]
        Complete-linkage cut: every pair of runs in a mode has ARI >= threshold.
    """
    parts = _checked_paths(paths, n_components, threshold)
    R = parts.shape[0]
    sc = np.zeros(R) if scores is None else np.asarray(scores, dtype=float)
    if sc.shape != (R,):
        raise ValueError(f"scores has shape {sc.shape}; expected ({R},), one per run.")
    ari = mutual_ari(parts)
    mode_of_run = _mode_of_run(ari, sc, threshold)
    modes = [
        _mode_row(
            m,
            np.flatnonzero(mode_of_run == m),
            parts,
            ari,
            None if scores is None else sc,
            n_components,
            reference_labels,
        )
        for m in range(int(mode_of_run.max()) + 1)
    ]
    return ModeCensus(mode_of_run=mode_of_run, mutual_ari=ari, modes=modes, threshold=threshold)


def census_of_fits(
    fits: Sequence[Any],
    X: ArrayLike,
    *,
    scores: ArrayLike | None = None,
    reference_labels: ArrayLike | None = None,
    threshold: float = SAME_MODE_ARI,
) -> ModeCensus:
    """Census of the modes reached by a collection of fits (EM restarts, VI runs, MAPs).

    Parameters
    ----------
    fits : DGMMParams or fitted estimators (anything with ``params_``) of one architecture
    X : (N, J) array, the data whose partitions are compared
    scores : (R,) array, optional; default the log-likelihood of each fit on X
    """
    params = [getattr(f, "params_", f) for f in fits]
    parts = np.stack([p.predict(X) for p in params])
    if scores is None:
        scores = [p.score(X) for p in params]
    return mode_census(
        parts,
        params[0].n_components,
        scores=scores,
        reference_labels=reference_labels,
        threshold=threshold,
    )
