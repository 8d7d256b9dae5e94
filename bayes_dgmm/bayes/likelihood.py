"""The DGMM likelihood inside PyTensor graphs: Ops over the hand-written JAX density.

:class:`RowLogLik` gives the marginal log density of every row (``docs/jax-density.md``) to
the PyMC model, so every method (MAP, Laplace, the VIs, PyMC's NUTS, nutpie, SMC) evaluates
the same jitted JAX function, whatever PyTensor backend compiles the rest (the priors and
transforms). Its gradient is :class:`RowLogLikVJP` (one JAX pullback); under PyTensor's JAX
backend both are replaced by the JAX functions themselves, so that graph is JAX end to end
and JAX can take second derivatives through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.jax.dispatch import jax_funcify

from bayes_dgmm.model.jax_density import compiled_rows, log_likelihood_rows, rows_vjp


class _DensityOp(Op):
    """Shared part: the architecture, and the flat ``(pi_1, eta_1, Lambda_1, psi_1, pi_2,
    ...)`` inputs split into the four per-layer lists of the JAX density."""

    __props__ = ("n_components", "n_factors")

    def __init__(self, n_components: Sequence[int], n_factors: Sequence[int]) -> None:
        self.n_components = tuple(int(g) for g in n_components)
        self.n_factors = tuple(int(r) for r in n_factors)

    def split(self, flat: Sequence[Any]) -> tuple[list[Any], ...]:
        return tuple(list(flat[k::4]) for k in range(4))

    def _run(self, which: int, *args: Any) -> Any:
        import jax

        fn = compiled_rows(self.n_components, self.n_factors)[which]
        with jax.enable_x64(True):
            return fn(*args)


class RowLogLik(_DensityOp):
    """``(X, pi_1, eta_1, Lambda_1, psi_1, ...) -> log p(x_i)``, shape (N,)."""

    def make_node(self, *inputs: Any) -> Apply:
        """``inputs``: ``X`` then the flat parameters."""
        X, *params = (pt.as_tensor(v).astype("float64") for v in inputs)
        out = pt.TensorType("float64", shape=(X.type.shape[0],))()
        return Apply(self, [X, *params], [out])

    def perform(self, node: Apply, inputs: Sequence[Any], outputs: Any) -> None:
        X, *flat = inputs
        outputs[0][0] = np.asarray(self._run(0, X, *self.split(flat)), dtype=np.float64)

    def pullback(
        self, inputs: Sequence[Any], outputs: Sequence[Any], cotangents: Sequence[Any]
    ) -> list[Any]:
        X, *params = inputs
        grads = RowLogLikVJP(self.n_components, self.n_factors)(X, cotangents[0], *params)
        undefined = grad_undefined(self, 0, X, "the data are not differentiated")
        return [undefined, *(grads if isinstance(grads, list) else [grads])]


class RowLogLikVJP(_DensityOp):
    """``(X, w, params...) -> sum_i w_i d log p(x_i) / d params``, one output per parameter."""

    def make_node(self, *inputs: Any) -> Apply:
        """``inputs``: ``X``, the cotangent of the rows, then the flat parameters."""
        tensors = [pt.as_tensor(v).astype("float64") for v in inputs]
        return Apply(self, tensors, [p.type() for p in tensors[2:]])

    def perform(self, node: Apply, inputs: Sequence[Any], outputs: Any) -> None:
        X, cotangent, *flat = inputs
        grads = self._run(1, X, cotangent, *self.split(flat))
        for i in range(len(flat)):
            outputs[i][0] = np.asarray(grads[i % 4][i // 4], dtype=np.float64)


@jax_funcify.register(RowLogLik)
def _jax_rows(op: RowLogLik, **kwargs: Any) -> Any:
    def rows(X: Any, *flat: Any) -> Any:
        return log_likelihood_rows(X, *op.split(flat))

    return rows


@jax_funcify.register(RowLogLikVJP)
def _jax_rows_vjp(op: RowLogLikVJP, **kwargs: Any) -> Any:
    def vjp(X: Any, cotangent: Any, *flat: Any) -> Any:
        grads = rows_vjp(X, cotangent, *op.split(flat))
        return tuple(grads[i % 4][i // 4] for i in range(len(flat)))

    return vjp
