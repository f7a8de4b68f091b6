"""Shared checks for distillation methods: one real training step on tiny models.

Every method's tests call ``assert_gradients_flow`` so "student and adapters get gradients, the
teacher does not" is checked the same way for all of them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, DistillationMethod, ModelOutputs
from distillation_studies.learning.models import build_model, make_spec
from distillation_studies.learning.training import forward_with_features, predict

IN_SHAPE = (1, 8, 8)
NUM_CLASSES = 10


def tiny_cnn(channels=(4, 8), embed=16) -> nn.Module:
    return build_model(make_spec({"name": "cnn", "channels": list(channels), "embed": embed}, IN_SHAPE, NUM_CLASSES))


def tiny_mlp(hidden=(16,)) -> nn.Module:
    return build_model(make_spec({"name": "mlp", "hidden": list(hidden)}, IN_SHAPE, NUM_CLASSES))


def tiny_batch(n: int = 8, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch(
        inputs=torch.randn(n, *IN_SHAPE, generator=generator),
        labels=torch.randint(0, NUM_CLASSES, (n,), generator=generator),
        indices=torch.arange(n),
    )


def one_step(
    name: str, config: dict[str, Any], student: nn.Module, teacher: nn.Module | None, batch: Batch | None = None
) -> tuple[dict[str, torch.Tensor], DistillationMethod]:
    """Build the method, run ``prepare`` and one forward + backward pass; return its terms."""
    batch = batch or tiny_batch()
    method = build_method(name, parse_method_config(name, config, f"methods.{name}"), student, teacher, len(batch.labels))
    student_layers, teacher_layers = method.layers(method.config)
    teacher_out = None
    if teacher is not None:
        teacher.eval().requires_grad_(False)
        teacher_out = predict(teacher, batch.inputs, teacher_layers)
    method.prepare(teacher_out, {"x": batch.inputs, "y": batch.labels})
    method.start_epoch(1, 1)
    student_out = forward_with_features(student, batch.inputs, student_layers)
    terms = method(student_out, teacher_out, batch)
    torch.stack(list(terms.values())).sum().backward()
    return terms, method


def assert_gradients_flow(name: str, config: dict[str, Any], student: nn.Module, teacher: nn.Module | None) -> None:
    """Every student parameter on the loss path and every method parameter gets a gradient; the teacher none."""
    terms, method = one_step(name, config, student, teacher)
    assert terms, "a method must return at least one loss term"
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert student.head.weight.grad is not None
    for pname, p in method.named_parameters():
        assert p.grad is not None, f"method parameter {pname} got no gradient"
    if teacher is not None:
        assert all(p.grad is None for p in teacher.parameters())


def hand_zscore(row: list[float]) -> list[float]:
    """Logit standardisation as the authors' ``normalize`` (and torchdistill) compute it, in plain floats:
    (x - mean) / (std + 1e-7) with the Bessel-corrected std (1/(K-1))."""
    mean = sum(row) / len(row)
    sigma = math.sqrt(sum((v - mean) ** 2 for v in row) / (len(row) - 1))
    return [(v - mean) / (sigma + 1e-7) for v in row]


def hand_smoothed_ce(logits: list[list[float]], labels: list[int], eps: float) -> float:
    """Mean CE against the target (1 - eps) one_hot(y) + eps / K, in plain floats."""
    total = 0.0
    for row, y in zip(logits, labels):
        top = max(row)
        log_total = top + math.log(sum(math.exp(v - top) for v in row))
        log_p = [v - log_total for v in row]
        total += -(1 - eps) * log_p[y] - eps * sum(log_p) / len(row)
    return total / len(labels)


def run_on_logits(method: DistillationMethod, student: list, teacher: list, labels: list[int]) -> dict[str, torch.Tensor]:
    """A logit method's terms on hand-written float64 logits (inputs unused, indices 0..n-1)."""
    batch = Batch(torch.zeros(len(labels), 1), torch.tensor(labels), torch.arange(len(labels)))
    return method(
        ModelOutputs(torch.tensor(student, dtype=torch.float64)),
        ModelOutputs(torch.tensor(teacher, dtype=torch.float64)),
        batch,
    )
