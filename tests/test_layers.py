"""The dependency layers of the package, held by reading every import.

Lower layers never import higher ones, and each layer imports only the third-party packages of
its job: the torch code never sees pandas, Kedro or MLflow; the analysis never sees torch or text
formatting; the report never trains; the study schema never touches Kedro. Only the shell
(pipelines, tracking, datasets, guards, settings) ties them to Kedro and MLflow. Inside the torch
layer, the distillation methods sit below the training loop and never import it. Inside the shell,
the pipelines' nodes never see MLflow or the tracking (they publish epochs through ``common.epochs``),
and the tracking, the catalog's datasets and the guards never import a pipeline.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import distillation_studies

PACKAGE = Path(distillation_studies.__file__).parent
STDLIB = set(sys.stdlib_module_names) | {"__future__"}

# layer -> (internal layers it may import, third-party roots it may import)
LAYERS: dict[str, tuple[set[str], set[str]]] = {
    "common": (set(), set()),
    "learning": ({"common"}, {"torch", "torchvision", "numpy", "sklearn", "PIL", "mlxtend"}),
    "analysis": ({"common"}, {"numpy", "pandas", "scipy"}),
    # markdown_it: the HTML report is rendered from the Markdown one by markdown-it-py.
    "report": ({"common", "analysis"}, {"numpy", "pandas", "matplotlib", "tabulate", "markdown_it"}),
    # psutil: validation compares each model's weights with the host's free memory before building it.
    "study": ({"common", "learning", "analysis"}, {"numpy", "psutil"}),
}
SHELL_FILES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in LAYERS)


def layer_of(path: Path) -> str:
    top = path.relative_to(PACKAGE).parts[0]
    return top if top in LAYERS else "shell"


def imports(source: str) -> set[str]:
    """Dotted name of every absolute import, including ones nested in functions and import_module calls."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)  # and each imported name, which may be a module: from pkg import training
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


# Text formatting belongs to the report: the analysis returns numbers and data classes.
TEXT_CALLS = {"to_markdown", "to_html", "to_latex", "to_string"}


def text_calls(source: str) -> list[str]:
    """Calls that turn tables into text (``df.to_markdown()``), by method name."""
    return sorted(
        node.func.attr for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in TEXT_CALLS
    )


def violations(source: str, layer: str) -> list[str]:
    """Imports that a module of ``layer`` may not make (and, in the analysis, text-formatting calls)."""
    internal, third_party = LAYERS[layer]
    found = text_calls(source) if layer == "analysis" else []
    for name in sorted(imports(source)):
        parts = name.split(".")
        if parts[0] == "distillation_studies":
            target = parts[1] if len(parts) > 1 else ""
            if target != layer and target not in internal:
                found.append(name)
        elif parts[0] not in STDLIB and parts[0] not in third_party:
            found.append(name)
    return found


LAYER_FILES = sorted(p for p in PACKAGE.rglob("*.py") if layer_of(p) != "shell")

# Inside a layer: folder -> the modules of its layer above it, which it never imports. The methods sit
# below the one training loop (training imports methods.base): a method that fits a network of its
# own does it with methods.shared.fit.
ABOVE: dict[str, set[str]] = {"learning/methods": {"distillation_studies.learning.training"}}


def inner_violations(source: str, folder: str) -> list[str]:
    """The modules above ``folder`` (or a folder it is in) that ``source`` imports or imports from."""
    above = set().union(*(mods for f, mods in ABOVE.items() if folder == f or folder.startswith(f"{f}/")))
    names = imports(source)
    return sorted(a for a in above if any(n == a or n.startswith(f"{a}.") for n in names))


def folder_of(path: Path) -> str:
    return path.parent.relative_to(PACKAGE).as_posix()


def test_every_layer_has_modules():
    assert {layer_of(p) for p in LAYER_FILES} == set(LAYERS)
    assert {
        "learning/training.py", "learning/methods/kd.py", "analysis/recommend.py", "report/plots.py", "study/schema.py",
        "study/search.py", "analysis/search_driver.py",
    } <= {
        p.relative_to(PACKAGE).as_posix() for p in LAYER_FILES
    }


@pytest.mark.parametrize("path", LAYER_FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_module_respects_its_layer(path):
    assert violations(path.read_text(), layer_of(path)) == []


@pytest.mark.parametrize("path", LAYER_FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_module_imports_nothing_above_it_in_its_layer(path):
    assert inner_violations(path.read_text(), folder_of(path)) == []


@pytest.mark.parametrize(
    "source",
    [
        "from distillation_studies.learning.training import train",
        "def prepare():\n    from distillation_studies.learning.training import TrainConfig",
        "from distillation_studies.learning import training",
        "import distillation_studies.learning.training as loop",
    ],
)
def test_checker_catches_a_method_importing_the_loop(source):
    assert inner_violations(source, "learning/methods") == ["distillation_studies.learning.training"]


METHODS_DIR = PACKAGE / "learning" / "methods"
METHOD_FILES = sorted(p for p in METHODS_DIR.glob("*.py") if p.stem not in {"__init__", "base", "shared"})


def other_method_files(source: str, own: str) -> list[str]:
    """Method files other than ``own`` that ``source`` imports: shared helpers live in methods.shared."""
    stems = {p.stem for p in METHOD_FILES} - {own}
    prefix = "distillation_studies.learning.methods."
    return sorted({n[len(prefix):].split(".")[0] for n in imports(source) if n.startswith(prefix)} & stems)


@pytest.mark.parametrize("path", METHOD_FILES, ids=lambda p: p.stem)
def test_a_method_imports_no_other_method_file(path):
    assert other_method_files(path.read_text(), path.stem) == []


def test_checker_catches_a_helper_taken_from_another_method():
    assert other_method_files("from distillation_studies.learning.methods.kd import soft_target_kl", "ctkd") == ["kd"]
    assert other_method_files(
        "from distillation_studies.learning.methods import method_class\n"
        "from distillation_studies.learning.methods.shared import fit", "takd"
    ) == []


def test_checker_lets_methods_import_their_own_helpers_and_the_loop_import_methods():
    source = "from distillation_studies.learning.methods.shared import fit\nfrom distillation_studies.learning.models import build_model"
    assert inner_violations(source, "learning/methods") == []
    assert inner_violations("from distillation_studies.learning.methods.base import Batch", "learning") == []


@pytest.mark.parametrize(
    ("source", "layer"),
    [
        ("import kedro", "learning"),
        ("import pandas as pd", "learning"),
        ("from distillation_studies.analysis.stats import mean_ci", "learning"),
        ("def f():\n    import mlflow", "study"),
        ("importlib.import_module('matplotlib')", "analysis"),
        ("from distillation_studies.report.plots import pareto_plot", "analysis"),
        ("from distillation_studies.learning import training", "report"),
        ("import torch", "report"),
        ("from distillation_studies.study.grid import Arm", "learning"),
        ("from distillation_studies import hooks", "study"),
        ("def f(table):\n    return table.to_markdown(index=False)", "analysis"),
        ("from distillation_studies.study.identity import ArmRun", "analysis"),
        ("import optuna", "analysis"),  # the search driver is pure: the shell wraps Optuna in propose/tell
        ("from optuna.samplers import TPESampler", "study"),
        ("from distillation_studies.study.search import SearchConfig", "analysis"),
    ],
)
def test_checker_catches_forbidden_imports(source, layer):
    assert violations(source, layer)


@pytest.mark.parametrize(
    ("source", "layer"),
    [("import torch.nn as nn", "learning"), ("from distillation_studies.common.errors import ConfigError", "analysis"),
     ("import json", "report"), ("from distillation_studies.analysis.recommend import recommend", "study")],
)
def test_checker_allows_the_layer_below(source, layer):
    assert violations(source, layer) == []


# ---- the study's data vocabulary has one owner: common/records.py ------------------------------------------

RECORDS = PACKAGE / "common" / "records.py"


def factor_name_literals(source: str) -> list[str]:
    """String constants spelling a data-cell factor (``"label_noise"``): outside the records, code reads
    the record's fields or the constants it exports, so a consumer cannot forget a factor by hand."""
    from distillation_studies.common.records import DataCell

    names = set(DataCell.columns())
    return sorted(
        node.value for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
    )


@pytest.mark.parametrize("path", [p for p in sorted(PACKAGE.rglob("*.py")) if p != RECORDS], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_factor_names_appear_as_string_keys_only_in_the_records(path):
    assert factor_name_literals(path.read_text()) == []


def test_checker_catches_a_factor_name_spelled_as_a_key():
    assert factor_name_literals('noise = arm["label_noise"]\ncell = {"transfer_set": True}') == ["label_noise", "transfer_set"]
    assert factor_name_literals('row = f"{row[\'label_fraction\']:g}"') == ["label_fraction"]
    assert factor_name_literals('"""label_noise is read as a field."""\nnoise = cell.label_noise') == []


# The shell's rooms: folder -> module prefixes it never imports.
SHELL_ROOMS: dict[str, set[str]] = {
    "pipelines": {"distillation_studies.tracking", "distillation_studies.hooks", "mlflow"},
    "tracking": {"distillation_studies.pipelines"},
    "datasets": {"distillation_studies.pipelines", "distillation_studies.tracking", "mlflow"},
    "guards": {"distillation_studies.pipelines", "distillation_studies.tracking", "mlflow"},
}
ROOM_FILES = sorted(p for p in SHELL_FILES if p.relative_to(PACKAGE).parts[0] in SHELL_ROOMS)


def room_violations(source: str, room: str) -> list[str]:
    """The imports of ``source`` (a module of the shell's ``room``) that the room never makes."""
    banned = SHELL_ROOMS[room]
    return sorted(n for n in imports(source) if any(n == b or n.startswith(f"{b}.") for b in banned))


def test_every_shell_room_has_modules():
    assert {p.relative_to(PACKAGE).parts[0] for p in ROOM_FILES} == set(SHELL_ROOMS)


@pytest.mark.parametrize("path", ROOM_FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_shell_module_respects_its_room(path):
    assert room_violations(path.read_text(), path.relative_to(PACKAGE).parts[0]) == []


@pytest.mark.parametrize(
    ("source", "room"),
    [
        ("from distillation_studies.tracking.runs import NestedRun", "pipelines"),
        ("def on_epoch(row):\n    from distillation_studies.tracking import hooks", "pipelines"),
        ("import mlflow", "pipelines"),
        ("from mlflow.entities import Metric", "pipelines"),
        ("from distillation_studies.pipelines.evaluation.nodes import evaluate_student", "tracking"),
        ("import mlflow.pytorch", "datasets"),
        ("from distillation_studies import pipelines", "guards"),
    ],
)
def test_checker_catches_a_room_importing_what_it_must_not(source, room):
    assert room_violations(source, room)


def test_checker_lets_pipelines_publish_epochs():
    assert room_violations("from distillation_studies.common.epochs import reporter", "pipelines") == []
