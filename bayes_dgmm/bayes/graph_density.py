"""The DGMM likelihood as a PyTensor graph: the per-path Woodbury form, for small models
compiled by PyTensor's Numba backend.

The model's default likelihood is the hand-written JAX density (:mod:`bayes_dgmm.bayes.
likelihood`). On tiny models a JAX call costs more in dispatch than in arithmetic (about
0.5 ms per gradient on the simulation-based-calibration design, G=(2,1), R=(2,1), J=3,
N=50), where this graph under Numba runs in a few microseconds, so
``build_model(likelihood="graph")`` keeps it for such uses (``docs/bayesian-model.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_grad
from pytensor.tensor.linalg import cholesky, solve_triangular

from bayes_dgmm.model.density import LOG_2PI
from bayes_dgmm.model.paths import path_table

#: Differentiate the quadratic form with the ridge coefficients held fixed (exact at their
#: optimum); False differentiates through the solves (kept for tests and comparisons).
#: The held-fixed graph gives exact first derivatives only: a second derivative taken
#: through it (a Hessian or Hessian-vector product by autodiff) is wrong, so such graphs
#: must be built with False (``docs/bayes-convergence.md``).
ENVELOPE_GRADIENT = True


def dgmm_log_prob_paths(
    X: Any,
    pi: Sequence[Any],
    eta: Sequence[Any],
    Lambda: Sequence[Any],
    psi: Sequence[Any],
    n_components: Sequence[int],
    n_factors: Sequence[int],
) -> Any:
    """Symbolic ``log pi_p + log N(x_i; mu_p, Sigma_p)`` for every row and path, (N, P).

    The PyTensor twin of :meth:`bayes_dgmm.model.params.DGMMParams.log_prob_paths`: same path
    order (:func:`~bayes_dgmm.model.params.path_table`), same residual-plus-penalty Woodbury form.

    Parameters
    ----------
    X : (N, J) tensor
    pi, eta, Lambda, psi : per-layer tensors shaped as in :class:`DGMMParams`
    n_components, n_factors : the architecture ``(G_1, ..., G_L)``, ``(R_1, ..., R_L)``
    """
    paths = path_table(n_components)  # (P, L) constant index table
    n_layers = len(n_components)
    P = paths.shape[0]
    log_w = sum(pt.log(pi[l])[paths[:, l]] for l in range(n_layers))

    # Mean and covariance of z^(1) on every path's sub-path (g_2..g_L), eqs. 5-6, top down.
    # Identity matrices are numpy constants of the architecture's sizes: symbolic eye and
    # broadcast_to made the gradient graph many times slower to build and compile.
    r_top = n_factors[-1]
    m: Any = pt.as_tensor(np.zeros((P, r_top)))
    S: Any = pt.as_tensor(np.broadcast_to(np.eye(r_top), (P, r_top, r_top)).copy())
    for l in range(n_layers - 1, 0, -1):
        g = paths[:, l]
        lam = Lambda[l][g]  # (P, R_{l-1}, R_l) in 0-based layer l
        m = eta[l][g] + pt.matmul(lam, m[:, :, None])[:, :, 0]
        S = pt.matmul(pt.matmul(lam, S), lam.mT)
        S = 0.5 * (S + S.mT) + np.eye(n_factors[l - 1])[None] * psi[l][g][:, None, :]

    g1 = paths[:, 0]
    lam1 = Lambda[0][g1]  # (P, J, R1)
    mean = eta[0][g1] + pt.matmul(lam1, m[:, :, None])[:, :, 0]  # (P, J)
    W = pt.matmul(lam1, cholesky(S, lower=True))  # (P, J, R1)
    psi1 = psi[0][g1]  # (P, J)
    Wd = W / psi1[:, :, None]  # D^{-1} W
    M = pt.matmul(W.mT, Wd) + np.eye(n_factors[0])[None]  # I + W~^T W~, (P, R1, R1)
    LM = cholesky(M, lower=True)
    # A = M^{-1} W^T D^{-1} (P, R1, J): a small solve with J right-hand sides; then
    # b = A (x - mean) is one matrix product. An error in b enters the quadratic form at
    # second order only (the form is the minimum over b), so this loses no accuracy.
    A = solve_triangular(LM.mT, solve_triangular(LM, Wd.mT, lower=True), lower=False)
    D = X[None, :, :] - mean[:, None, :]  # (P, N, J)
    b = pt.matmul(D, A.mT)  # (P, N, R1)
    if ENVELOPE_GRADIENT:
        # The quadratic form is min_b q(b); at the minimiser dq/db = 0, so its gradient with
        # b held fixed is the exact gradient (envelope theorem). Cutting the graph there
        # skips differentiating the solves: a smaller graph, faster to compile and run.
        b = disconnected_grad(b)
    resid = D - pt.matmul(b, W.mT)  # (P, N, J), in data units before scaling
    quad = pt.sum(resid**2 / psi1[:, None, :], axis=-1) + pt.sum(b**2, axis=-1)  # (P, N)
    logdet = pt.sum(pt.log(psi1), axis=-1) + 2.0 * pt.sum(
        pt.log(pt.diagonal(LM, axis1=-2, axis2=-1)), axis=-1
    )
    J = X.shape[-1]
    logpdf = -0.5 * (J * LOG_2PI + logdet[:, None] + quad)  # (P, N)
    return (logpdf + log_w[:, None]).T


def dgmm_logp(
    X: Any,
    pi: Sequence[Any],
    eta: Sequence[Any],
    Lambda: Sequence[Any],
    psi: Sequence[Any],
    n_components: Sequence[int],
    n_factors: Sequence[int],
) -> Any:
    """Symbolic marginal log density of each row of ``X``, shape (N,)."""
    log_prob = dgmm_log_prob_paths(X, pi, eta, Lambda, psi, n_components, n_factors)
    return pt.logsumexp(log_prob, axis=1)
