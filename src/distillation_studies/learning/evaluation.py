"""Evaluate a trained model once on the test split: quality, agreement with the teacher, and costs."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from distillation_studies.learning.metrics import (
    classification_metrics,
    count_flops,
    count_parameters,
    cpu_latency,
    per_class_accuracy,
    reliability_bins,
)
from distillation_studies.learning.streaming import labels_of
from distillation_studies.learning.training import TrainingData, predict, resolve_device


def evaluate_model(
    best: nn.Module,
    last: nn.Module,
    test: TrainingData,
    teacher: nn.Module | None,
    training_summary: dict[str, Any],
    ece_bins: int = 15,
    latency_repeats: int = 50,
    throughput_batch: int = 256,
    device: str = "cpu",
    workers: int = 0,
) -> dict[str, Any]:
    """Flat metric dict: ``test_*`` for the best-on-validation weights, ``last_test_accuracy``, costs.

    ``parameters`` counts the deployed model alone; ``training_parameters`` adds the method's
    adapters, which are trained but not deployed; ``optimizer_steps`` and ``samples_seen`` are the
    training budget the run spent. The one non-scalar key, ``details``, holds the
    JSON-safe reliability bins and per-class accuracy of the best weights, for plots.
    """
    labels = labels_of(test)
    on = resolve_device(device)
    teacher_logits = _test_logits(teacher, test, on, workers) if teacher is not None else None
    best_logits = _test_logits(best, test, on, workers)
    quality = classification_metrics(best_logits, labels, teacher_logits, ece_bins)
    last_quality = classification_metrics(_test_logits(last, test, on, workers), labels, None, ece_bins)
    in_shape = tuple(best.spec["in_shape"])
    parameters = count_parameters(best)
    return {
        **{f"test_{k}": v for k, v in quality.items()},
        "last_test_accuracy": last_quality["accuracy"],
        "best_epoch": training_summary["best_epoch"],
        "best_val_accuracy": training_summary["best_val_accuracy"],
        "parameters": parameters,
        "training_parameters": parameters + training_summary.get("method_parameters", 0),
        "flops": count_flops(best, in_shape),
        **cpu_latency(best, in_shape, latency_repeats, throughput_batch=throughput_batch),
        "train_time_s": training_summary["wall_time_s"],
        # The training budget spent (nan for a history written before it was counted).
        "optimizer_steps": training_summary.get("optimizer_steps", math.nan),
        "samples_seen": training_summary.get("samples_seen", math.nan),
        "details": {
            "reliability": reliability_bins(best_logits, labels, ece_bins),
            "per_class_accuracy": per_class_accuracy(best_logits, labels, best_logits.shape[1]),
        },
    }


def _test_logits(model: nn.Module, test: TrainingData, device: torch.device, workers: int) -> Tensor:
    """fp32 logits on the CPU, computed on ``device``; the model is back on the CPU afterwards."""
    model.to(device)
    try:
        return predict(model, test, workers=workers).logits.float().cpu()
    finally:
        model.to("cpu")
