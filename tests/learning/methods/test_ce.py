"""Cross-entropy baseline: hand-computed values, config checks and gradient flow."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.ce import CrossEntropy
from tests.method_checks import assert_gradients_flow, tiny_cnn, tiny_mlp

LOGITS = [[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]
LABELS = [0, 1]


def _ce(label_smoothing: float = 0.0) -> CrossEntropy:
    config = parse_method_config("ce", {"label_smoothing": label_smoothing}, "methods.ce")
    return CrossEntropy(config, MethodSetup({}, {}, num_classes=3, num_train=2))


def _batch() -> Batch:
    return Batch(torch.zeros(2, 1), torch.tensor(LABELS), torch.arange(2))


def _log_softmax(row: list[float]) -> list[float]:
    log_z = math.log(sum(math.exp(v) for v in row))
    return [v - log_z for v in row]


def test_ce_matches_hand_computed_value():
    terms = _ce()(ModelOutputs(torch.tensor(LOGITS)), None, _batch())
    expected = -sum(_log_softmax(row)[y] for row, y in zip(LOGITS, LABELS)) / 2
    # sample 0: -log(e^2 / (e^2 + e + 1)) = 0.40761; sample 1: -log(e^0 / (2 + e^3)) = 3.09492
    assert expected == pytest.approx((0.4076059644 + 3.0949229564) / 2, rel=1e-8)
    assert set(terms) == {"ce"}
    assert terms["ce"].item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_matches_hand_computed_value():
    eps = 0.2
    terms = _ce(eps)(ModelOutputs(torch.tensor(LOGITS)), None, _batch())
    expected = 0.0
    for row, y in zip(LOGITS, LABELS):
        log_p = _log_softmax(row)
        expected += (1 - eps) * -log_p[y] + eps * -sum(log_p) / len(row)
    assert terms["ce"].item() == pytest.approx(expected / 2, rel=1e-6)


def test_ce_needs_no_teacher():
    student = tiny_mlp()
    method = build_method("ce", parse_method_config("ce", {}, "methods.ce"), student, None, num_train=8)
    assert not method.needs_teacher
    assert sum(p.numel() for p in method.parameters()) == 0


@pytest.mark.parametrize("student", [tiny_mlp, tiny_cnn])
def test_gradients_flow(student):
    torch.manual_seed(0)
    assert_gradients_flow("ce", {}, student(), None)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"methods\.ce\.smoothing: unknown key.*label_smoothing"):
        parse_method_config("ce", {"smoothing": 0.1}, "methods.ce")


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_label_smoothing_out_of_range(value):
    with pytest.raises(ConfigError, match=r"methods\.ce\.label_smoothing: must be in \[0.0, 1.0\]"):
        parse_method_config("ce", {"label_smoothing": value}, "methods.ce")


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"methods\.ce\.label_smoothing: expected float"):
        parse_method_config("ce", {"label_smoothing": "some"}, "methods.ce")
