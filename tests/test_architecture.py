"""The layering of ``src/atelier`` (docs/architecture.md, "Layers") and its size limits, as
checks.

``lint-imports`` reads the contracts in ``pyproject.toml`` ([tool.importlinter]); a copy of
the package with one forbidden import shows the check really fails.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, PROJECT_ROOT, test_env

SOURCE = PROJECT_ROOT / "src" / "atelier"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _lint_imports(project: Path, python_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=project, capture_output=True,
                          text=True, env=test_env(PYTHONPATH=str(python_path)), timeout=300)


def test_import_contracts_hold():
    result = _lint_imports(PROJECT_ROOT, PROJECT_ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, forbidden, contract", [
    ("core/generate.py", "import mlflow", "core is the torch library"),
    ("core/models.py", "from atelier.tracking import lineage", "the floors"),
    ("pipelines/training/nodes.py", "import atelier.hooks.preflight", "the floors"),
    ("pipelines/registration/nodes.py", "from atelier.tracking.registry import CHAMPION",
     "public names"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, forbidden, contract):
    project = tmp_path / "project"
    shutil.copytree(SOURCE, project / "src" / "atelier",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", project / "pyproject.toml")
    target = project / "src" / "atelier" / module
    target.write_text(target.read_text() + f"\n{forbidden}  # noqa\n")
    result = _lint_imports(project, project / "src")
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout


def _python_files() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def test_no_source_file_is_longer_than_the_limit():
    long_files = {str(path.relative_to(SOURCE)): n for path in _python_files()
                  if (n := len(path.read_text().splitlines())) > MAX_FILE_LINES}
    assert long_files == {}


def test_no_function_is_longer_than_the_limit():
    long_functions = {}
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions[f"{path.relative_to(SOURCE)}:{node.name}"] = length
    assert long_functions == {}
