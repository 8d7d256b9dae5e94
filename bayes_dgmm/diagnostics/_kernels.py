"""Numpy kernels of the relabelling algorithms, on arrays with a leading draw axis.

Conventions. ``T`` draws (chains and draws flattened), ``G`` components of one layer.
A permutation ``perm`` of shape (T, G) maps new label ``k`` to old label ``perm[t, k]``:
the relabelled draw is ``relabelled[t, k] = raw[t, perm[t, k]]`` (see
:func:`apply_permutations`). Each kernel returns the permutations that align every draw to a
pivot; none mutates its input.

References
----------
- Hungarian matching: Kuhn (1955); ``scipy.optimize.linear_sum_assignment``.
- ECR: Papastamoulis & Iliopoulos (2010), "An artificial allocations based solution to the
  label switching problem in Bayesian analysis of mixtures of distributions", JCGS 19.
- Stephens (2000), "Dealing with label switching in mixture models", JRSS-B 62, the
  Kullback-Leibler algorithm on classification probabilities.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: Smallest probability inside the logarithms of Stephens' algorithm.
PROBA_FLOOR = 1e-300


def _assign(cost: Array) -> IntArray:
    """Permutation minimising ``sum_k cost[k, perm[k]]`` for a (G, G) cost matrix."""
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(cost.shape[0], dtype=np.intp)
    perm[rows] = cols
    return perm


def hungarian_permutations(features: Array, pivot: Array) -> IntArray:
    """Align component features of every draw to a pivot by squared distance.

    Parameters
    ----------
    features : (T, G, F) array, the features of every component in every draw
    pivot : (G, F) array, the features of the pivot's components

    Returns
    -------
    (T, G) int array of permutations.
    """
    diff = pivot[None, :, None, :] - features[:, None, :, :]  # (T, G_pivot, G_draw, F)
    cost = np.einsum("tkjf,tkjf->tkj", diff, diff)
    return np.stack([_assign(c) for c in cost])


def ecr_permutations(
    allocations: IntArray, pivot_allocation: IntArray, n_components: int
) -> IntArray:
    """ECR: maximise the number of observations allocated as in the pivot.

    Parameters
    ----------
    allocations : (T, N) int array, the allocation of every observation in every draw
    pivot_allocation : (N,) int array
    n_components : int, G

    Returns
    -------
    (T, G) int array of permutations.
    """
    G = n_components
    perms = []
    for alloc in allocations:
        agree = np.zeros((G, G))
        np.add.at(agree, (pivot_allocation, alloc), 1.0)
        perms.append(_assign(-agree))
    return np.stack(perms)


def stephens_permutations(
    probabilities: Array, pivot_probabilities: Array, max_iter: int = 100
) -> tuple[IntArray, int]:
    """Stephens' Kullback-Leibler relabelling on classification probabilities.

    Alternates (1) ``Q = mean_t p_t`` of the relabelled probabilities and (2) for every draw
    the permutation minimising ``KL(Q || p_t permuted)``, i.e. the cost
    ``-sum_i Q[i, k] log p_t[i, j]``, until no permutation changes. ``Q`` starts at the
    pivot's probabilities (rather than at the average of unaligned draws, which blurs every
    component together when labels switch often).

    Parameters
    ----------
    probabilities : (T, N, G) array, rows summing to one
    pivot_probabilities : (N, G) array
    max_iter : int

    Returns
    -------
    perms : (T, G) int array
    n_iter : int, iterations run
    """
    log_p = np.log(np.maximum(probabilities, PROBA_FLOOR))
    Q = pivot_probabilities
    perms = np.full(probabilities.shape[::2], -1, dtype=np.intp)
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        cost = -np.einsum("ik,tij->tkj", Q, log_p)
        new = np.stack([_assign(c) for c in cost])
        if np.array_equal(new, perms):
            break
        perms = new
        Q = apply_permutations(probabilities, perms, axis=2).mean(axis=0)
    return perms, n_iter


def apply_permutations(values: NDArray, perms: IntArray, axis: int = 1) -> NDArray:
    """Reorder the component axis of every draw: ``out[t, k] = values[t, perms[t, k]]``.

    Parameters
    ----------
    values : (T, ..., G, ...) array with the component axis at ``axis``
    perms : (T, G) int array
    axis : int, position of the component axis in ``values``
    """
    shape = [perms.shape[0]] + [1] * (values.ndim - 1)
    shape[axis] = perms.shape[1]
    return np.take_along_axis(values, perms.reshape(shape), axis=axis)


def count_switches(perms: IntArray) -> int:
    """Number of successive draws whose permutation differs (within one chain)."""
    return int(np.count_nonzero(np.any(perms[1:] != perms[:-1], axis=1)))
