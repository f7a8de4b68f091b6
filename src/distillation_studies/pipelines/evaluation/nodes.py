"""Evaluate the teacher and each student on the test split, once."""

from __future__ import annotations

from typing import Any

from torch import nn

from distillation_studies.core.config import parse_dataclass
from distillation_studies.core.evaluation import evaluate_model
from distillation_studies.core.study import EvaluationConfig


def evaluate_student(
    model: nn.Module,
    last_model: nn.Module,
    teacher_model: nn.Module,
    model_input: dict,
    history: dict[str, Any],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """Test metrics of one (arm, seed) student, labelled with its grid point and seed."""
    config = parse_dataclass(EvaluationConfig, evaluation, "evaluation")
    summary = history["summary"]
    metrics = evaluate_model(model, last_model, model_input["test"], teacher_model, summary, **vars(config))
    labels = {key: summary[key] for key in ("arm", "method", "registered_method", "student", "label_fraction", "train_size", "seed")}
    labels["setting"] = ", ".join(f"{k}={v}" for k, v in summary["setting"].items()) or "default"
    labels.update({f"hp_{k}": v for k, v in summary["setting"].items()})
    return {**labels, **metrics}


def evaluate_teacher(
    teacher_model: nn.Module,
    teacher_last_model: nn.Module,
    model_input: dict,
    teacher_history: dict[str, Any],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    config = parse_dataclass(EvaluationConfig, evaluation, "evaluation")
    summary = teacher_history["summary"]
    metrics = evaluate_model(teacher_model, teacher_last_model, model_input["test"], None, summary, **vars(config))
    return {"method": "teacher", "seed": summary["seed"], **metrics}
