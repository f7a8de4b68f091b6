"""An arm's identity: every name is built and parsed by ArmRun, and the catalog patterns match it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distillation_studies.study.identity import STUDENT_PATTERN, ArmRun, student_runs
from distillation_studies.study.grid import Arm

CATALOG = Path(__file__).resolve().parents[2] / "conf" / "base" / "catalog.yml"
KINDS = ("model", "last_model", "history", "metrics")


def test_names_of_one_student():
    run = ArmRun("kd__T_4", 3)
    assert run.key == "kd__T_4/seed_3"
    assert run.namespace == "students.kd__T_4.seed_3"
    assert run.dataset("metrics") == "students.kd__T_4.seed_3.metrics"
    assert run.model_name == "kd__T_4-seed_3"
    assert not run.is_teacher


def test_names_of_the_teacher():
    teacher = ArmRun.teacher()
    assert teacher.key == "teacher" and teacher.dataset("model") == "teacher_model" and teacher.is_teacher
    assert teacher.model_name == "teacher"
    with pytest.raises(ValueError, match="not namespaced"):
        teacher.namespace


@pytest.mark.parametrize("run", [ArmRun("kd", 0), ArmRun("fitnet__student_big__labels_10", 12), ArmRun.teacher()])
@pytest.mark.parametrize("kind", KINDS)
def test_parse_inverts_dataset_and_from_key_inverts_key(run, kind):
    assert ArmRun.parse(run.dataset(kind)) == (run, kind)
    assert ArmRun.from_key(run.key) == run


@pytest.mark.parametrize("name", ["comparison_table", "students.kd.metrics", "students.kd.seed_x.metrics", "params:students.kd.seed_0.metrics"])
def test_parse_ignores_other_datasets(name):
    assert ArmRun.parse(name) is None


def test_from_key_rejects_other_strings():
    with pytest.raises(ValueError, match="not a run key"):
        ArmRun.from_key("kd.seed_0")


def test_student_runs_arm_by_arm():
    arms = [Arm("ce", "ce"), Arm("kd", "kd")]
    assert [r.key for r in student_runs(arms, [0, 1])] == ["ce/seed_0", "ce/seed_1", "kd/seed_0", "kd/seed_1"]


def test_catalog_patterns_are_the_identity_pattern():
    catalog = yaml.safe_load(CATALOG.read_text())
    patterns = {name for name in catalog if "{" in name}
    assert patterns == {STUDENT_PATTERN.replace("{kind}", kind) for kind in KINDS}
    for kind in KINDS:
        path = catalog[STUDENT_PATTERN.replace("{kind}", kind)]["filepath"]
        assert "/students/{arm}/seed_{seed}/" in path


@pytest.mark.parametrize("run", [ArmRun("kd", 0), ArmRun("fitnet__student_big__labels_10", 12), ArmRun.teacher()])
def test_model_names_are_ones_mlflow_accepts(run):
    from mlflow.utils.validation import _validate_logged_model_name

    _validate_logged_model_name(run.model_name)  # raises on '/', ':', '.', '%' and quotes
