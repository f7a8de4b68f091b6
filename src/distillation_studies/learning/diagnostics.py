"""Capacity-gap diagnostics: how far apart teacher and students are, before students are trained.

Reports size and compute ratios, the teacher's quality and calibration, how peaked its soft targets
are at each configured temperature (logit scale, entropy), and the layer shapes that feature and
relation methods would read, so a user can see which methods fit their models.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.learning.metrics import count_flops, count_parameters
from distillation_studies.learning.models import build_model, feature_shapes
from distillation_studies.learning.training import TrainingData, predict


def logit_statistics(logits: Tensor, temperatures: list[float]) -> dict[str, Any]:
    """Logit scale (per-sample std across classes, mean over samples) and soft-target entropy per T."""
    classes = logits.shape[1]
    entropies = {}
    for temperature in temperatures:
        log_p = F.log_softmax(logits / temperature, dim=1)
        entropy = -(log_p.exp() * log_p).sum(dim=1).mean().item()
        entropies[str(temperature)] = {"entropy_nats": entropy, "normalised_entropy": entropy / math.log(classes)}
    return {
        "logit_std_mean": logits.std(dim=1).mean().item(),
        "max_logit_mean": logits.max(dim=1).values.mean().item(),
        "logit_gap_top2_mean": (logits.topk(2, dim=1).values[:, 0] - logits.topk(2, dim=1).values[:, 1]).mean().item(),
        "soft_targets": entropies,
    }


def inspectable_layers(model: nn.Module) -> list[str]:
    """Layers worth hooking: the model's declared ``feature_layers``, else its top two levels."""
    declared = getattr(model, "feature_layers", None)
    if declared:
        return list(declared)
    return [name for name, _ in model.named_modules() if name and name.count(".") <= 1]


def capacity_gap(
    teacher: nn.Module,
    student_specs: dict[str, dict[str, Any]],
    inputs: Tensor | TrainingData,
    teacher_metrics: dict[str, Any],
    temperatures: list[float],
) -> dict[str, Any]:
    """The capacity-gap report as plain data (JSON-safe)."""
    in_shape = tuple(teacher.spec["in_shape"])
    teacher_params, teacher_flops = count_parameters(teacher), count_flops(teacher, in_shape)
    students = {}
    for name, spec in student_specs.items():
        student = build_model(spec)
        params, flops = count_parameters(student), count_flops(student, in_shape)
        students[name] = {
            "model": spec,
            "parameters": params,
            "flops": flops,
            "parameter_ratio": teacher_params / params,
            "flop_ratio": teacher_flops / flops if flops else math.inf,
            "layer_shapes": {k: list(v) for k, v in feature_shapes(student, inspectable_layers(student)).items()},
        }
    logits = predict(teacher, inputs).logits
    return {
        "teacher": {
            "model": teacher.spec,
            "parameters": teacher_params,
            "flops": teacher_flops,
            "test_accuracy": teacher_metrics["test_accuracy"],
            "test_ece": teacher_metrics["test_ece"],
            "test_nll": teacher_metrics["test_nll"],
            "logits": logit_statistics(logits, sorted(set(temperatures))),
            "layer_shapes": {k: list(v) for k, v in feature_shapes(teacher, inspectable_layers(teacher)).items()},
        },
        "students": students,
    }


def applicability(method_layers: dict[str, tuple[list[str], list[str]]], report: dict[str, Any]) -> dict[str, Any]:
    """For each configured method: the student and teacher layers it reads, with their shapes."""
    teacher_shapes = report["teacher"]["layer_shapes"]
    table = {}
    for method, (student_layers, teacher_layers) in method_layers.items():
        table[method] = {"student_layers": student_layers, "teacher_layers": teacher_layers}
    return {"methods": table, "teacher_layer_shapes": teacher_shapes}
