"""The real `kedro run` with a student from outside the project, picked on the command line with YAML
`--params` (a list and a mapping), as the README shows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import ROOT, copy_project, kedro_run

pytestmark = pytest.mark.e2e

OWN_STUDENT = (
    "seeds=[0],student.model={name: import, path: own_pkg.models:TinyNet, kwargs: {width: 4}},"
    "methods.fitnet.student_layer=neck,methods.rkd.student_layer=neck"
)


def test_a_study_distils_into_your_own_module_chosen_with_yaml_params(tmp_path, monkeypatch):
    project = copy_project(tmp_path)
    (project / "own_pkg").mkdir()
    (project / "own_pkg" / "__init__.py").write_text("")
    shutil.copy(ROOT / "tests" / "learning" / "own_models.py", project / "own_pkg" / "models.py")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")]))

    result = kedro_run(project, "--params", OWN_STUDENT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    monkeypatch.syspath_prepend(str(project))  # this process loads the saved student: it imports own_pkg too
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="tiny") as session:
        catalog = session.load_context().catalog
        table = catalog.load("comparison_table")
        student = catalog.load("students.fitnet.seed_0.model")
    assert set(table["arm"]) == {"ce", "kd", "fitnet", "rkd"}
    students = project / "data" / "06_models" / "tiny" / "students" / "fitnet"
    assert sorted(p.name for p in students.iterdir()) == ["seed_0"]  # seeds=[0] read as a list
    assert type(student).__name__ == "TinyNet" and student.spec["kwargs"] == {"width": 4}
    assert student.spec["path"] == "own_pkg.models:TinyNet"


def test_a_wrong_import_path_fails_before_training(tmp_path):
    project = copy_project(tmp_path)
    result = kedro_run(project, "--params", "student.model={name: import, path: own_pkg.models:TinyNet}")
    assert result.returncode != 0
    assert "student.model.path: cannot import module 'own_pkg.models'" in result.stdout + result.stderr
    assert not list(Path(project, "data").glob("06_models/**/*.pt"))
