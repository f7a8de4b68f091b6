"""Distil one student with one method and one seed, through the one training loop."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from distillation_studies.core.methods import METHODS, build_method
from distillation_studies.core.models import build_model
from distillation_studies.core.study import parse_method_entry, parse_model_section
from distillation_studies.core.training import train
from distillation_studies.pipelines.teacher.nodes import history_record


def distil_student(
    teacher_model: nn.Module,
    model_input: dict,
    data_summary: dict,
    student: dict[str, Any],
    method: dict[str, Any],
    *,
    method_key: str,
    seed: int,
) -> tuple[nn.Module, nn.Module, dict]:
    """Best-on-validation student, its last-epoch weights, and the history of every loss term.

    ``seed`` fixes the student's initialisation, batch order and any randomness of the method.
    """
    spec, training, _ = parse_model_section(student, "student", data_summary)
    entry = parse_method_entry(method_key, method)
    torch.manual_seed(seed)
    model = build_model(spec)
    teacher = teacher_model if METHODS[entry.method].needs_teacher else None
    loss = build_method(entry.method, entry.config, model, teacher, len(model_input["train"]["y"]), f"methods.{method_key}")
    result = train(
        model, loss, model_input["train"], model_input["val"], training, seed, teacher=teacher, label=f"{method_key}/seed_{seed}"
    )
    last = build_model(spec)
    last.load_state_dict(result.last_state)
    model.load_state_dict(result.best_state)
    extra = {"method": method_key, "registered_method": entry.method, "seed": seed, "hyperparameters": entry.raw, "model": spec}
    return model, last, history_record(result, extra)

