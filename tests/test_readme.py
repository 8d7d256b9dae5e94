"""The README as a front door: its links resolve, it links every docs page and notebook, its
test command is the one CI runs, and its quick start is Python that parses."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
LINKS = re.findall(r"\]\(([^)\s]+)\)", README)


def _local(target: str) -> str:
    return target.split("#", 1)[0]


def test_every_relative_link_resolves():
    local = [_local(t) for t in LINKS if not re.match(r"[a-z]+:", t)]
    assert local, "the README links nothing"
    missing = [t for t in local if t and not (ROOT / t).exists()]
    assert not missing, f"README links missing files: {missing}"


def test_readme_links_every_docs_page_and_notebook():
    linked = {_local(t) for t in LINKS}
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    notebooks = {p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert not pages - linked, f"README does not link {sorted(pages - linked)}"
    assert not notebooks - linked, f"README does not link {sorted(notebooks - linked)}"


def test_the_test_command_is_the_one_ci_runs():
    commands = [
        line.strip() for line in README.splitlines() if line.startswith("    python -m venv")
    ]
    assert len(commands) == 2, "the README has exactly two set-up commands"
    install_and_run, install_and_test = commands
    assert install_and_run.endswith("bayes-dgmm compare --out results")
    assert install_and_test.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert install_and_test in ci.splitlines()


def test_quick_start_is_python_that_parses():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    assert blocks, "the README has no quick start"
    for block in blocks:
        ast.parse(block)


def test_the_files_the_readme_promises_exist():
    for name in ("LICENSE", "CITATION.cff", "CHANGELOG.md", "docs/figures/study-paths.png"):
        assert (ROOT / name).is_file(), name
