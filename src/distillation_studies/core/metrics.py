"""Quality and cost metrics of a trained model, computed the same way for teacher and students."""

from __future__ import annotations

import statistics
import time

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
        "accuracy": (logits.argmax(1) == labels).float().mean().item(),
        "nll": F.cross_entropy(logits, labels).item(),
        "ece": expected_calibration_error(logits, labels, ece_bins),
    }
    if teacher_logits is not None:
        metrics["teacher_agreement"] = (logits.argmax(1) == teacher_logits.argmax(1)).float().mean().item()
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
    """Median milliseconds per single-image forward pass, and images per second at a large batch."""
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
    batch_repeats = max(3, repeats // 10)
    started = time.perf_counter()
    for _ in range(batch_repeats):
        model(batch)
    elapsed = time.perf_counter() - started
    return {
        "latency_ms": 1000.0 * statistics.median(timings),
        "throughput_per_s": throughput_batch * batch_repeats / elapsed,
    }
