"""Reliability bins, per-class accuracy, confusion matrix, and the ``details`` key of evaluate_model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from distillation_studies.learning.evaluation import evaluate_model
from distillation_studies.learning.metrics import (
    confusion_matrix,
    expected_calibration_error,
    per_class_accuracy,
    reliability_bins,
)
from distillation_studies.learning.models import build_model, make_spec
from tests.labelled_tensors import LabelledTensors


def _binary_logits(confidences: list[float]) -> torch.Tensor:
    """Two-class logits whose softmax puts probability ``c`` on class 0."""
    return torch.tensor([[math.log(c), math.log(1 - c)] for c in confidences], dtype=torch.float64)


def test_reliability_bins_hand_computed():
    # Four samples at 0.75 (2 right), two at 0.95 (both right), with 4 bins of width 0.25.
    logits = _binary_logits([0.75] * 4 + [0.95] * 2)
    labels = torch.tensor([0, 0, 1, 1, 0, 0])
    bins = reliability_bins(logits, labels, bins=4)
    assert bins["bins"] == 4
    assert bins["lower"] == [0.0, 0.25, 0.5, 0.75]
    assert bins["upper"] == [0.25, 0.5, 0.75, 1.0]
    assert bins["count"] == [0, 0, 0, 6]  # 0.75 * 4 = 3 -> last bin, as in expected_calibration_error
    assert bins["confidence"][:3] == [None, None, None]
    assert bins["accuracy"][:3] == [None, None, None]
    assert bins["confidence"][3] == pytest.approx((4 * 0.75 + 2 * 0.95) / 6, abs=1e-6)
    assert bins["accuracy"][3] == pytest.approx(4 / 6, abs=1e-6)


def test_reliability_bins_split_and_consistent_with_ece():
    logits = _binary_logits([0.6] * 3 + [0.9] * 2)
    labels = torch.tensor([0, 1, 1, 0, 0])
    bins = reliability_bins(logits, labels, bins=10)
    assert bins["count"][6] == 3 and bins["count"][9] == 2 and sum(bins["count"]) == 5
    assert bins["accuracy"][6] == pytest.approx(1 / 3, abs=1e-6)
    assert bins["confidence"][6] == pytest.approx(0.6, abs=1e-6)
    assert bins["accuracy"][9] == pytest.approx(1.0)
    assert bins["confidence"][9] == pytest.approx(0.9, abs=1e-6)
    ece = sum(
        c / 5 * abs(a - p) for c, a, p in zip(bins["count"], bins["accuracy"], bins["confidence"]) if c
    )
    assert ece == pytest.approx(expected_calibration_error(logits, labels, bins=10), abs=1e-6)
    json.dumps(bins)  # JSON-safe


def test_per_class_accuracy_with_absent_class():
    # Predictions: 0, 0, 1, 2 ; labels: 0, 1, 1, 1 -> class 0: 1/1, class 1: 1/3, class 2 absent, 3 absent.
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 2]), 4).float()
    labels = torch.tensor([0, 1, 1, 1])
    result = per_class_accuracy(logits, labels, 4)
    assert result[0] == pytest.approx(1.0)
    assert result[1] == pytest.approx(1 / 3)
    assert result[2] is None and result[3] is None
    json.dumps(result)


def test_confusion_matrix_counts():
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 2]), 3).float()
    assert confusion_matrix(logits, torch.tensor([0, 1, 1, 1]), 3) == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]


def test_evaluate_model_keeps_flat_keys_and_adds_details():
    torch.manual_seed(0)
    spec = make_spec({"name": "mlp", "hidden": [8]}, (1, 8, 8), 10)
    best, last, teacher = build_model(spec), build_model(spec), build_model(spec)
    test = {"x": torch.randn(32, 1, 8, 8), "y": torch.randint(0, 10, (32,))}
    summary = {"best_epoch": 3, "best_val_accuracy": 0.5, "wall_time_s": 1.0, "method_parameters": 7}
    summary |= {"optimizer_steps": 12, "samples_seen": 384}
    metrics = evaluate_model(best, last, test, teacher, summary, ece_bins=5, latency_repeats=2, throughput_batch=4)
    flat = {
        "test_accuracy", "test_nll", "test_ece", "test_teacher_agreement", "test_kl_to_teacher",
        "last_test_accuracy", "best_epoch", "best_val_accuracy", "parameters", "training_parameters",
        "flops", "latency_ms", "throughput_per_s", "train_time_s", "optimizer_steps", "samples_seen",
    }
    assert set(metrics) == flat | {"details"}
    assert (metrics["optimizer_steps"], metrics["samples_seen"]) == (12, 384)  # the training budget, as trained
    assert all(isinstance(metrics[k], (int, float)) for k in flat)
    details = metrics["details"]
    assert set(details) == {"reliability", "per_class_accuracy"}
    assert details["reliability"]["bins"] == 5 and sum(details["reliability"]["count"]) == 32
    assert len(details["per_class_accuracy"]) == 10
    present = set(test["y"].tolist())
    assert all((v is None) == (c not in present) for c, v in enumerate(details["per_class_accuracy"]))
    json.dumps(details)


def test_evaluate_model_reads_a_dataset_test_split_like_tensors():
    torch.manual_seed(1)
    spec = make_spec({"name": "mlp", "hidden": [8]}, (1, 8, 8), 10)
    best, last, teacher = build_model(spec), build_model(spec), build_model(spec)
    test = {"x": torch.randn(40, 1, 8, 8), "y": torch.randint(0, 10, (40,))}
    summary = {"best_epoch": 1, "best_val_accuracy": 0.5, "wall_time_s": 1.0}
    quality = {"ece_bins": 5, "latency_repeats": 2, "throughput_batch": 4, "device": "cpu"}
    from_tensors = evaluate_model(best, last, test, teacher, summary, **quality)
    from_dataset = evaluate_model(best, last, LabelledTensors(test), teacher, summary, **quality, workers=1)
    for key in ("test_accuracy", "test_nll", "test_ece", "test_teacher_agreement", "test_kl_to_teacher", "last_test_accuracy"):
        assert from_dataset[key] == pytest.approx(from_tensors[key], rel=1e-6), key
    assert from_dataset["details"] == from_tensors["details"]
    assert next(best.parameters()).device.type == "cpu"
