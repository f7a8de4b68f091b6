"""Quality and cost metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from distillation_studies.learning.metrics import (
    classification_metrics,
    count_flops,
    count_parameters,
    cpu_latency,
    expected_calibration_error,
)


def _binary_logits(confidences: list[float]) -> torch.Tensor:
    """Two-class logits whose softmax puts probability ``c`` on class 0."""
    return torch.tensor([[math.log(c), math.log(1 - c)] for c in confidences], dtype=torch.float64)


def test_ece_zero_when_confident_and_right():
    logits = torch.tensor([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0], [0.0, 0.0, 50.0]])
    assert expected_calibration_error(logits, torch.tensor([0, 1, 2])) == pytest.approx(0.0, abs=1e-6)


def test_ece_one_when_confident_and_wrong():
    logits = torch.tensor([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0]])
    assert expected_calibration_error(logits, torch.tensor([1, 0])) == pytest.approx(1.0, abs=1e-6)


def test_ece_zero_when_calibrated():
    # Confidence 0.75 on class 0 for four samples, three of which are class 0: accuracy = confidence.
    logits = _binary_logits([0.75] * 4)
    assert expected_calibration_error(logits, torch.tensor([0, 0, 0, 1])) == pytest.approx(0.0, abs=1e-6)


def test_ece_hand_computed_two_bins():
    # Bin of 0.75 (4 samples, 2 right): |0.5 - 0.75| = 0.25; bin of 0.95 (4 samples, all right): 0.05.
    # ECE = 4/8 * 0.25 + 4/8 * 0.05 = 0.15
    logits = _binary_logits([0.75] * 4 + [0.95] * 4)
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 0, 0])
    assert expected_calibration_error(logits, labels) == pytest.approx(0.15, abs=1e-6)
    # One bin holding everything: |6/8 - (0.75 + 0.95) / 2| = |0.75 - 0.85| = 0.10
    assert expected_calibration_error(logits, labels, bins=1) == pytest.approx(0.10, abs=1e-6)


def test_accuracy_and_nll_known_values():
    probabilities = [[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]]
    logits = torch.tensor(probabilities).log()
    labels = torch.tensor([0, 1, 0, 1])
    metrics = classification_metrics(logits, labels)
    assert set(metrics) == {"accuracy", "nll", "ece"}
    assert metrics["accuracy"] == pytest.approx(0.5)
    expected_nll = -(math.log(0.5) + math.log(0.8) + math.log(0.2) + math.log(0.2)) / 4
    assert metrics["nll"] == pytest.approx(expected_nll, rel=1e-5)


def test_agreement_and_kl_zero_when_logits_equal_teacher():
    logits = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    metrics = classification_metrics(logits, torch.zeros(16, dtype=torch.long), teacher_logits=logits.clone())
    assert metrics["teacher_agreement"] == 1.0
    assert metrics["kl_to_teacher"] == pytest.approx(0.0, abs=1e-6)


def test_agreement_and_kl_hand_values():
    student = torch.tensor([[0.5, 0.5], [0.9, 0.1]]).log()
    teacher = torch.tensor([[0.25, 0.75], [0.6, 0.4]]).log()
    metrics = classification_metrics(student, torch.tensor([0, 0]), teacher_logits=teacher)
    # argmax: student [0 (tie -> first), 0], teacher [1, 0]
    assert metrics["teacher_agreement"] == pytest.approx(0.5)
    kl = (0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5) + 0.6 * math.log(0.6 / 0.9) + 0.4 * math.log(0.4 / 0.1)) / 2
    assert metrics["kl_to_teacher"] == pytest.approx(kl, rel=1e-5)


def test_count_flops_of_a_linear_layer():
    assert count_flops(nn.Linear(10, 5), (10,)) == 2 * 10 * 5 == 100


def test_count_flops_adds_layers():
    model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 3))
    assert count_flops(model, (10,)) == 2 * 10 * 5 + 2 * 5 * 3


def test_count_parameters():
    assert count_parameters(nn.Linear(10, 5)) == 55


def test_cpu_latency_positive():
    result = cpu_latency(nn.Linear(10, 5), (10,), repeats=3, warmup=1, throughput_batch=4)
    assert set(result) == {"latency_ms", "throughput_per_s"}
    assert result["latency_ms"] > 0
    assert result["throughput_per_s"] > 0 and math.isfinite(result["throughput_per_s"])


def test_throughput_is_the_batch_over_its_median_time_so_one_pause_does_not_move_it(monkeypatch):
    """A fake clock: each batch forward takes 10 ms, except one that the machine pauses for 2 s."""
    clock = {"now": 0.0, "batch_calls": 0}

    class Clocked(nn.Module):
        def forward(self, x):
            if x.shape[0] == 8:
                clock["batch_calls"] += 1
                clock["now"] += 2.0 if clock["batch_calls"] == 3 else 0.010
            else:
                clock["now"] += 0.001
            return x

    monkeypatch.setattr("distillation_studies.learning.metrics.time.perf_counter", lambda: clock["now"])
    result = cpu_latency(Clocked(), (3,), repeats=10, warmup=1, throughput_batch=8)
    assert result["latency_ms"] == pytest.approx(1.0)
    assert result["throughput_per_s"] == pytest.approx(8 / 0.010)  # the mean over the 5 timed calls gives 19.6/s
