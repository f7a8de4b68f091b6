"""The core package must stay pure PyTorch: no Kedro or MLflow import anywhere under it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import distillation_studies.core

CORE = Path(distillation_studies.core.__file__).parent
FORBIDDEN = {"kedro", "kedro_datasets", "kedro_viz", "mlflow"}
MODULES = sorted(CORE.rglob("*.py"))


def imported_roots(source: str) -> set[str]:
    """Top-level package of every import statement, including ones nested in functions."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                roots.add(node.args[0].value.split(".")[0])
    return roots


def test_core_modules_found():
    names = {p.relative_to(CORE).as_posix() for p in MODULES}
    assert {"training.py", "study.py", "methods/kd.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(CORE).as_posix())
def test_core_module_does_not_import_kedro_or_mlflow(path):
    assert not imported_roots(path.read_text()) & FORBIDDEN


@pytest.mark.parametrize(
    "source",
    ["import kedro", "import mlflow.pytorch as m", "from kedro.pipeline import node", "def f():\n    import mlflow",
     "importlib.import_module('mlflow')"],
)
def test_checker_catches_forbidden_imports(source):
    assert imported_roots(source) & FORBIDDEN
