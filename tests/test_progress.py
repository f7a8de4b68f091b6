"""The terminal's study progress: counts, time left from the mean arm time, and the closing lines."""

from __future__ import annotations

import logging
from dataclasses import replace
from types import SimpleNamespace

import pytest
from kedro.io import DataCatalog, MemoryDataset

from distillation_studies.tracking.hooks import STUDY_RUN
from distillation_studies.progress import ProgressHooks, StudyProgress, arm_name, clock, mlflow_lines
from distillation_studies.tracking.runs import StudyRun


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (42.4, "42 s"), (185, "3 min 05 s"), (3720, "1 h 02 min")])
def test_clock(seconds, text):
    assert clock(seconds) == text


def test_time_left_is_the_mean_arm_time_times_the_arms_left():
    progress = StudyProgress(total=5)
    assert progress.time_left() is None
    progress.arm_finished(10.0)
    progress.arm_finished(20.0)
    assert progress.time_left() == pytest.approx(3 * 15.0)
    assert "2/5 students trained (kd/seed_1 done)" in progress.line("kd/seed_1")


def test_arm_name_of_a_student_namespace():
    assert arm_name("students.kd__temperature_4.seed_2") == "kd__temperature_4/seed_2"
    assert arm_name(None) == "?"


def node(name: str, namespace: str | None = None):
    return SimpleNamespace(name=f"{namespace}.{name}" if namespace else name, namespace=namespace)


def test_hooks_count_only_student_training_nodes_and_repeat_the_recommendation_at_the_end(caplog):
    hooks = ProgressHooks()
    arms = [node("distil_student", f"students.{m}.seed_0") for m in ("ce", "kd")]
    pipeline = SimpleNamespace(nodes=[node("train_teacher"), *arms, node("recommend_method")])
    caplog.set_level(logging.INFO, logger="distillation_studies.progress")
    hooks.before_pipeline_run({}, pipeline, None)
    for arm in arms:
        hooks.before_node_run(arm)
        hooks.after_node_run(arm, {})
    hooks.after_node_run(node("train_teacher"), {"teacher_model": object()})
    hooks.after_node_run(node("recommend_method"), {"recommendation": {"markdown": "### Recommendation\nkd"}})
    hooks.after_pipeline_run({}, pipeline, DataCatalog())
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "Study: 2 students to train (arms x seeds)"
    assert "1/2 students trained (ce/seed_0 done)" in messages[1] and "2/2" in messages[2]
    assert messages[-1].strip().endswith("### Recommendation\nkd")


def test_the_run_ends_with_the_study_run_and_the_command_that_shows_it(caplog):
    study = StudyRun("sqlite:////work/p/mlflow.db", "3", "abc123", "h", "v")
    hooks = ProgressHooks()
    pipeline = SimpleNamespace(nodes=[node("train_teacher")])
    caplog.set_level(logging.INFO, logger="distillation_studies.progress")
    hooks.before_pipeline_run({}, pipeline, None)
    hooks.after_pipeline_run({}, pipeline, DataCatalog({STUDY_RUN: MemoryDataset(study)}))
    assert caplog.records[-1].getMessage().splitlines() == [
        "MLflow study run: abc123 (experiment 3) in sqlite:////work/p/mlflow.db",
        "  see it: mlflow ui --backend-store-uri sqlite:////work/p/mlflow.db --port 5000, then open "
        "http://127.0.0.1:5000/#/experiments/3/runs/abc123",
    ]
    server = replace(study, tracking_uri="http://tracking:5000/")
    assert mlflow_lines(server)[1] == "  see it: http://tracking:5000/#/experiments/3/runs/abc123"
