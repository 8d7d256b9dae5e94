"""Names of the parameters as variables: ``pi_1, eta_1, Lambda_1, psi_1, pi_2, ...``.

PyMC models, posterior draws and :meth:`DGMMParams.from_named` share these names.
"""

from __future__ import annotations

from collections.abc import Container, Hashable

#: The parameters of every layer, in the order of their named variables ``pi_1, eta_1, ...``.
PARAM_NAMES = ("pi", "eta", "Lambda", "psi")


def n_named_layers(names: Container[Hashable]) -> int:
    """Number of layers ``l = 1, 2, ...`` whose weights ``pi_l`` are in ``names`` (0 if none)."""
    n = 0
    while f"pi_{n + 1}" in names:
        n += 1
    return n


def named_variables(n_layers: int) -> list[str]:
    """``["pi_1", "eta_1", "Lambda_1", "psi_1", "pi_2", ...]`` for ``n_layers`` layers."""
    return [f"{p}_{l}" for l in range(1, n_layers + 1) for p in PARAM_NAMES]
