"""The code's shape: dependencies point one way, nothing imports in a circle, private names stay home,
and no module grows past what one reader can hold.

The layering and acyclic contracts are import-linter's (pyproject.toml's [tool.importlinter]); a copy of
the packages with one upward import shows that they catch it.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("games", "agents", "arena")
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())", "--no-cache"]


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(LINT, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_the_layering_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def test_the_contracts_catch_an_upward_import(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=lambda d, names: [
            n for n in names if not (n.endswith(".py") or (Path(d) / n).is_dir()) or n == "__pycache__"])
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "games" / "text.py", "a") as f:
        f.write("\nimport arena.cli  # an upward import: games must not know the arena\n")
    result = _lint(tmp_path)
    assert result.returncode != 0 and "games.text -> arena.cli" in result.stdout, result.stdout[-3000:]


def _modules():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_private_name_is_imported_from_another_module():
    crossings = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                crossings += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not crossings, "make them public where their users expect them: " + "; ".join(crossings)


def test_no_module_is_longer_than_450_lines():
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450]
    assert not long, "split by responsibility: " + ", ".join(long)
