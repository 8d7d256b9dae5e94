"""The package's import graph: one way from the model to the command line, no circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bayes_dgmm"
#: packages re-export their modules' names (lazily), so they are left out of both checks
PACKAGES = {_p.parent for _p in PACKAGE.rglob("__init__.py")}

#: docs/layout.md's layers, bottom up; a module may import its own layer and those below
RANK = {
    "_validation": 0,
    "_io": 0,
    "_version": 0,
    "_lazy": 0,
    "_jax": 0,
    "model": 1,
    # the statistics on draws and partitions sit below the fits that call them
    "diagnostics": 2,
    "em": 3,
    "bayes": 4,
    "experiments": 5,
    "datasets": 5,
    "__init__": 6,
    "__main__": 6,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every ``bayes_dgmm`` module each module imports, at top level or inside functions."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def _packages() -> set[str]:
    return {_module_name(p / "__init__.py") for p in PACKAGES}


def _rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return RANK["__init__"]
    return RANK[parts[1]]


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{m} -> {t}"
        for m, targets in _imports().items()
        for t in targets
        if _rank(t) > _rank(m) and m not in _packages() and t not in _packages()
    ]
    assert upward == []


def _imported_names(path: Path) -> set[str]:
    """Every module name ``path`` imports, relative imports resolved, whether or not it exists."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


def test_diagnostics_import_no_fit():
    # bayes and em may call diagnostics, never the reverse; checked apart from the ranks so
    # that a change of ranks cannot let such an import through
    fits = ("bayes_dgmm.bayes", "bayes_dgmm.em")
    paths = sorted((PACKAGE / "diagnostics").rglob("*.py"))
    found = [
        f"{_module_name(p)} -> {name}"
        for p in paths
        for name in sorted(_imported_names(p))
        if name in fits or name.startswith(tuple(f"{f}." for f in fits))
    ]
    assert found == []
    assert len(paths) > 5  # the walk saw the diagnostics modules


def test_no_import_circle_at_module_level():
    graph = _imports()
    # a package's __init__ re-exports lazily; only module-to-module edges form circles
    pk = _packages()
    edges = {m: {t for t in ts if t not in pk} for m, ts in graph.items() if m not in pk}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                pytest.fail("import circle: " + " -> ".join([*stack, node, nxt]))
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node, [])
    assert len(state) > 30  # the walk saw the package's modules
