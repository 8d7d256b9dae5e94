"""Second-order checks of a posterior mode on the unconstrained scale, shared by MAP and
the Laplace approximation.

The Hessian is taken by finite differences of the compiled gradient (``k`` gradients, with
an estimate of its differencing error); Newton steps on it refine the mode; the mode is
certified when the Hessian off the top layer's exact rotations has no eigenvalue below minus
its differencing error and the Newton decrement (the log density a Newton step would still
gain) is below :data:`DECREMENT_TOL`. A stalled optimiser cannot meet that: the decrement is
measured, not the optimiser's own stopping rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from numpy.typing import NDArray

from bayes_dgmm.bayes.backends.flat import _value_vars_and_shapes, compile_flat_logp_grad
from bayes_dgmm.bayes.model import n_layers_of

Array = NDArray[np.float64]

#: The mode is reached when a Newton step would gain less than this (nats).
DECREMENT_TOL = 0.1
#: Least curvature (-d2 logp along an eigenvector of the Hessian) a draw's direction gets:
#: an sd of at most 1 on the unconstrained scale.
MIN_CURVATURE = 1.0
NEWTON_STEPS = 20


def negative_hessian(fn: Any, x0: Array) -> Array:
    """``-d2 logp / dx dx^T`` at ``x0`` by forward differences of ``fn(x) -> (logp, grad)``:
    one gradient per coordinate, symmetrised."""
    return _negative_hessian_and_error(fn, x0)[0]


def _negative_hessian_and_error(fn: Any, x0: Array) -> tuple[Array, float]:
    """:func:`negative_hessian` and the spectral norm of its antisymmetric part before
    symmetrising: the size of the differencing error, which bounds how far from zero an
    eigenvalue must be to be told apart from it."""
    _, g0 = fn(x0)
    g0 = np.array(g0, dtype=float)
    h = 1e-6 * (1.0 + np.abs(x0))
    H = np.empty((x0.size, x0.size))
    for i in range(x0.size):
        x = x0.copy()
        x[i] += h[i]
        H[i] = -(np.asarray(fn(x)[1], dtype=float) - g0) / h[i]
    return 0.5 * (H + H.T), float(np.linalg.norm(0.5 * (H - H.T), 2))


def rotation_directions(model: Any, x: Array) -> Array:
    """Orthonormal directions (columns) of the exact symmetry of the top layer at ``x``.

    ``z^(L) ~ N(0, I)`` and the isotropic prior on ``Lambda_L`` (or ``c_L``) make the posterior
    invariant under ``Lambda_L[g] -> Lambda_L[g] Q`` for every rotation ``Q``, one per top
    component: ``G_L R_L (R_L - 1) / 2`` directions along which the log density is constant
    (the Hessian is zero there at a mode). Empty when ``Lambda_L`` is not a free variable on
    its own scale (``constraint="lower_triangular"``) or ``R_L = 1``.
    """
    value_vars, shapes = _value_vars_and_shapes(model)
    names = [v.name for v in value_vars]
    L = n_layers_of(model)
    # in the standardised gauge the top layer's free loadings are c_L (noise units), whose
    # rows' norms the prior and the likelihood see: they rotate the same way
    top = f"Lambda_{L}" if f"Lambda_{L}" in names else f"c_{L}"
    if top not in names:
        return np.zeros((x.size, 0))
    k = names.index(top)
    offset = int(sum(math.prod(s) for s in shapes[:k]))
    G, r_in, r_out = shapes[k]
    lam = x[offset : offset + G * r_in * r_out].reshape(G, r_in, r_out)
    columns = []
    for g in range(G):
        for a in range(r_out):
            for b in range(a + 1, r_out):
                gen = np.zeros((r_out, r_out))
                gen[a, b], gen[b, a] = 1.0, -1.0
                d = np.zeros((G, r_in, r_out))
                d[g] = lam[g] @ gen
                col = np.zeros(x.size)
                col[offset : offset + d.size] = d.ravel()
                columns.append(col)
    if not columns:
        return np.zeros((x.size, 0))
    q, _ = np.linalg.qr(np.stack(columns, axis=1))
    return q


def _newton_to_mode(fn: Any, x: Array, w: Array, V: Array) -> tuple[Array, float, int]:
    """Newton steps with the fixed Hessian ``V diag(w) V^T``, its curvatures raised to at
    least :data:`MIN_CURVATURE` (a step along a flat or negative direction is bounded),
    each halved until the log density rises; returns the point, the last decrement (of that
    regularised model) and the steps."""
    w_pos = np.maximum(w, MIN_CURVATURE)
    decrement = np.inf
    steps = 0
    for steps in range(NEWTON_STEPS + 1):
        value, grad = fn(x)
        grad = np.asarray(grad, dtype=float)
        step = V @ ((V.T @ grad) / w_pos)
        decrement = 0.5 * float(grad @ step)
        if decrement < DECREMENT_TOL or steps == NEWTON_STEPS:
            break
        t = 1.0
        while t > 1e-6:
            trial = x + t * step
            if float(fn(trial)[0]) > float(value):
                x = trial
                break
            t /= 2
        else:
            break  # no step raises the log density: the quadratic model is wrong here
    return x, decrement, steps


#: Hessians taken (each followed by Newton steps) before the decrement is reported.
NEWTON_ROUNDS = 3


@dataclass
class SecondOrder:
    """A mode refined by Newton steps and the figures that certify it (module docstring)."""

    x: Array
    w: Array  # eigenvalues of the last -Hessian
    V: Array  # its eigenvectors
    error: float  # its differencing error
    decrement: float
    steps: int
    bad: int  # eigenvalues off the rotations below -error
    w_off: Array
    rotations: Array

    @property
    def converged(self) -> bool:
        return bool(self.bad == 0 and self.decrement < DECREMENT_TOL)


def second_order(model: Any, x: Array) -> SecondOrder:
    """Newton refinement of the mode near ``x`` (at most :data:`NEWTON_ROUNDS` Hessians)
    and its second-order check."""
    fn, _ = compile_flat_logp_grad(model)
    total = 0
    for _ in range(NEWTON_ROUNDS):
        H, error = _negative_hessian_and_error(fn, x)
        w, V = np.linalg.eigh(H)
        x, decrement, steps = _newton_to_mode(fn, x, w, V)
        total += steps
        if decrement < DECREMENT_TOL:
            break
    # Positive definiteness is asked of the Hessian off the top layer's exact rotations,
    # along which it is zero at any mode, and of eigenvalues beyond the differencing error
    # (a direction whose curvature is within it is flat, not a saddle).
    Q = rotation_directions(model, x)
    if Q.shape[1]:
        B = scipy.linalg.null_space(Q.T)  # orthonormal basis of their complement
        w_off = np.linalg.eigvalsh(B.T @ H @ B)
    else:
        w_off = w
    bad = int(np.sum(w_off < -error))
    return SecondOrder(x, w, V, error, decrement, total, bad, w_off, Q)
