"""Quality and cost metrics of a trained model, computed the same way for teacher and students."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def expected_calibration_error(logits: Tensor, labels: Tensor, bins: int = 15) -> float:
    """Guo et al. 2017: sum over equal-width confidence bins of |accuracy - confidence| weighted by bin mass."""
    confidence, predicted = F.softmax(logits, dim=1).max(dim=1)
    correct = (predicted == labels).float()
    bin_index = torch.clamp((confidence * bins).long(), max=bins - 1)
    ece = torch.zeros(())
    for b in range(bins):
        in_bin = bin_index == b
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
    return ece.item()


def classification_metrics(
    logits: Tensor, labels: Tensor, teacher_logits: Tensor | None = None, ece_bins: int = 15
) -> dict[str, float]:
    """Accuracy, NLL and ECE; agreement and KL(teacher || model) when teacher logits are given."""
    metrics = {
        "accuracy": (logits.argmax(1) == labels).double().mean().item(),
        "nll": F.cross_entropy(logits, labels).item(),
        "ece": expected_calibration_error(logits, labels, ece_bins),
    }
    if teacher_logits is not None:
        metrics["teacher_agreement"] = (logits.argmax(1) == teacher_logits.argmax(1)).double().mean().item()
        metrics["kl_to_teacher"] = F.kl_div(
            F.log_softmax(logits, 1), F.log_softmax(teacher_logits, 1), reduction="batchmean", log_target=True
        ).item()
    return metrics


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(model: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Forward FLOPs for one input, from torch's own operator-level flop counter."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, *in_shape))
    return int(counter.get_total_flops())


@torch.no_grad()
def cpu_latency(
    model: nn.Module, in_shape: tuple[int, ...], repeats: int = 50, warmup: int = 5, throughput_batch: int = 256
) -> dict[str, float]:
    """Median milliseconds per single-image forward pass, and images per second at a large batch
    (from the median batch time: one pause of the machine during a handful of sub-millisecond calls
    moved the mean-based figure a thousandfold between runs)."""
    model.eval()
    single = torch.zeros(1, *in_shape)
    for _ in range(warmup):
        model(single)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        model(single)
        timings.append(time.perf_counter() - started)
    batch = torch.zeros(throughput_batch, *in_shape)
    model(batch)
    batch_timings = []
    for _ in range(max(5, repeats // 10)):
        started = time.perf_counter()
        model(batch)
        batch_timings.append(time.perf_counter() - started)
    return {
        "latency_ms": 1000.0 * statistics.median(timings),
        "throughput_per_s": throughput_batch / statistics.median(batch_timings),
    }


def _confidence_and_correct(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    confidence, predicted = F.softmax(logits.float(), dim=1).max(dim=1)
    return confidence, (predicted == labels).float()


def reliability_bins(logits: Tensor, labels: Tensor, bins: int = 15) -> dict[str, Any]:
    """Per equal-width confidence bin: edges, sample count, mean confidence and accuracy.

    Binned exactly as :func:`expected_calibration_error`. JSON-safe: plain lists of Python numbers;
    an empty bin has count 0 and ``None`` for confidence and accuracy.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    confidence, correct = _confidence_and_correct(logits, labels)
    bin_index = torch.clamp((confidence * bins).long(), max=bins - 1)
    counts: list[int] = []
    mean_confidence: list[float | None] = []
    accuracy: list[float | None] = []
    for b in range(bins):
        in_bin = bin_index == b
        count = int(in_bin.sum().item())
        counts.append(count)
        mean_confidence.append(confidence[in_bin].mean().item() if count else None)
        accuracy.append(correct[in_bin].mean().item() if count else None)
    return {
        "bins": bins,
        "lower": [b / bins for b in range(bins)],
        "upper": [(b + 1) / bins for b in range(bins)],
        "count": counts,
        "confidence": mean_confidence,
        "accuracy": accuracy,
    }


def per_class_accuracy(logits: Tensor, labels: Tensor, num_classes: int) -> list[float | None]:
    """Recall of each class (share of its test samples predicted as it); ``None`` for absent classes."""
    predicted = logits.argmax(1)
    result: list[float | None] = []
    for c in range(num_classes):
        of_class = labels == c
        result.append((predicted[of_class] == c).float().mean().item() if of_class.any() else None)
    return result


def confusion_matrix(logits: Tensor, labels: Tensor, num_classes: int) -> list[list[int]]:
    """Counts, rows = true class, columns = predicted class, every class present (JSON-safe)."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    matrix = sk_confusion_matrix(
        labels.cpu().numpy(), logits.argmax(1).cpu().numpy(), labels=list(range(num_classes))
    )
    return [[int(v) for v in row] for row in matrix]
