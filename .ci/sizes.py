"""Sizes over the house limits: functions over 80 lines, classes over 250, modules over 500.

Prints one line per offender (lines, kind, where) and exits 1 when there is any, 0 when
there is none. A function's or class's lines run from its first decorator to its last line,
docstring included; a module's are all its lines.

    python .ci/sizes.py [ROOT ...]      # default: the bayes_dgmm package
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FUNCTION_LINES = 80
CLASS_LINES = 250
MODULE_LINES = 500

REPO = Path(__file__).resolve().parents[1]


def _span(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> int:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return (node.end_lineno or node.lineno) - first + 1


def _offenders(path: Path) -> list[tuple[int, str, str]]:
    """``(lines, kind, where)`` of each function, class or module of ``path`` over its limit."""
    text = path.read_text()
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    found: list[tuple[int, str, str]] = []
    n_lines = len(text.splitlines())
    if n_lines > MODULE_LINES:
        found.append((n_lines, "module", str(where)))

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                is_class = isinstance(child, ast.ClassDef)
                limit = CLASS_LINES if is_class else FUNCTION_LINES
                if _span(child) > limit:
                    kind = "class" if is_class else "function"
                    found.append((_span(child), kind, f"{where}::{name}"))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(text, filename=str(path)), "")
    return found


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [REPO / "bayes_dgmm"]
    files = sorted(p for r in roots for p in ([r] if r.is_file() else r.rglob("*.py")))
    found = [o for p in files for o in _offenders(p.resolve())]
    for lines, kind, where in sorted(found, key=lambda o: (o[1], -o[0])):
        print(f"{lines:5d}  {kind:8s}  {where}")
    limits = f"functions {FUNCTION_LINES}, classes {CLASS_LINES}, modules {MODULE_LINES} lines"
    print(f"{len(found)} over the limits ({limits})", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
