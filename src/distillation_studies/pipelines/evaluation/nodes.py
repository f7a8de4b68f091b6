"""Evaluate the teacher and each student on the test split, once; diagnose the capacity gap."""

from __future__ import annotations

from typing import Any

from torch import nn

from distillation_studies.common.names import DEFAULT_STUDENT
from distillation_studies.common.names import DATA_FACTOR_LABELS
from distillation_studies.learning import diagnostics
from distillation_studies.learning.evaluation import evaluate_model
from distillation_studies.learning.methods import METHODS
from distillation_studies.pipelines.teacher.nodes import check_data_shape
from distillation_studies.study.identity import student_model_key
from distillation_studies.study.schema import EvaluationConfig, GridConfig, MethodEntry, ModelSection

DEFAULT_TEMPERATURES = [1.0, 4.0]


def evaluate_student(
    model: nn.Module,
    last_model: nn.Module,
    teacher_model: nn.Module,
    model_input: dict,
    history: dict[str, Any],
    evaluation: EvaluationConfig,
) -> dict[str, Any]:
    """Test metrics of one (arm, seed) student, labelled with its grid point and seed.

    A run flagged at training (``summary["failure"]``: diverged, exploded, never above chance) is still
    evaluated, so the table shows what it scored, and carries ``usable: False`` and the reason.
    """
    summary = history["summary"]
    metrics = evaluate_model(model, last_model, model_input["test"], teacher_model, summary, **vars(evaluation))
    labels = {key: summary[key] for key in ("arm", "method", "registered_method", "student", "label_fraction", "train_size", "seed")}
    labels.update({key: summary[key] for key in DATA_FACTOR_LABELS if key in summary})  # transfer sets, label noise
    labels["setting"] = ", ".join(f"{k}={v}" for k, v in summary["setting"].items()) or "default"
    labels.update({f"hp_{k}": v for k, v in summary["setting"].items()})
    failure = summary.get("failure") or ""
    return {**labels, **metrics, "usable": not failure, "failure": failure}


def evaluate_teacher(
    teacher_model: nn.Module,
    teacher_last_model: nn.Module,
    model_input: dict,
    teacher_history: dict[str, Any],
    evaluation: EvaluationConfig,
) -> dict[str, Any]:
    summary = teacher_history["summary"]
    metrics = evaluate_model(teacher_model, teacher_last_model, model_input["test"], None, summary, **vars(evaluation))
    return {"method": "teacher", "seed": summary["seed"], **metrics}


def diagnose_capacity_gap(
    teacher_model: nn.Module,
    teacher_metrics: dict[str, Any],
    model_input: dict,
    data_summary: dict,
    student: ModelSection,
    grid: GridConfig,
    methods: tuple[MethodEntry, ...],
) -> dict[str, Any]:
    """Size/compute ratios, teacher calibration and soft-target entropy, and the layers each method reads.

    Soft-target statistics use the validation split at every temperature the study configures.
    """
    specs = grid.students or {DEFAULT_STUDENT: student.spec}
    for name, spec in specs.items():
        check_data_shape(spec, data_summary, student_model_key(name))
    temperatures = [
        float(getattr(entry.config_for(setting), "temperature"))
        for entry in methods
        for setting in entry.settings
        if hasattr(entry.config, "temperature")
    ] or DEFAULT_TEMPERATURES
    report = diagnostics.capacity_gap(teacher_model, specs, model_input["val"], teacher_metrics, temperatures)
    layers = {entry.key: METHODS[entry.method].layers(entry.config) for entry in methods}
    report["applicability"] = diagnostics.applicability(layers, report)
    return report
