"""WTTM (Zheng & Yang, ICLR 2024): U_gamma-weighted KL to the power-transformed teacher, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.wttm import WeightedTransformedTeacherMatching
from tests.method_checks import assert_gradients_flow, hand_smoothed_ce, hand_zscore, tiny_cnn

STUDENT = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 2.0, 0.5], [3.0, 0.0, 0.0, 1.0]]
TEACHER = [[4.0, 0.0, 1.0, -2.0], [0.5, 0.5, 1.5, 3.0], [6.0, -1.0, 2.0, 0.0]]
LABELS = [1, 3, 0]


def _softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_wttm(student, teacher, gamma, weighted=True):
    """The paper's power transform written literally: p_t^gamma, its sum U, then U * KL(p_t^gamma / U || p_s)."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        powered = [p**gamma for p in _softmax(t_row)]
        power_sum = sum(powered)
        target = [p / power_sum for p in powered]
        kl = sum(q * math.log(q / p) for q, p in zip(target, _softmax(s_row)))
        total += (power_sum if weighted else 1.0) * kl
    return total / len(student)


def _wttm(**settings) -> WeightedTransformedTeacherMatching:
    config = parse_method_config("wttm", settings, "methods.wttm")
    return WeightedTransformedTeacherMatching(config, MethodSetup({}, {}, num_classes=4, num_train=3))


def _run(method, student=STUDENT, teacher=TEACHER):
    batch = Batch(torch.zeros(3, 1), torch.tensor(LABELS), torch.arange(3))
    return method(
        ModelOutputs(torch.tensor(student, dtype=torch.float64)),
        ModelOutputs(torch.tensor(teacher, dtype=torch.float64)),
        batch,
    )


def test_registered_with_the_authors_readme_settings():
    assert METHODS["wttm"] is WeightedTransformedTeacherMatching
    config = parse_method_config("wttm", {}, "methods.wttm")
    assert (config.exponent, config.weight, config.ce_weight) == (0.2, 4.0, 1.0)
    assert (config.logit_standardization, config.label_smoothing) == (False, 0.0)


@pytest.mark.parametrize("gamma", [0.1, 0.2, 0.5, 1.0])
def test_term_matches_the_power_transform_by_hand(gamma):
    terms = _run(_wttm(exponent=gamma, weight=3.0))
    assert set(terms) == {"ce", "wttm"}
    assert terms["wttm"].item() == pytest.approx(3.0 * _hand_wttm(STUDENT, TEACHER, gamma), rel=1e-9)
    ce = sum(-math.log(_softmax(r)[y]) for r, y in zip(STUDENT, LABELS)) / len(LABELS)
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-9)


def test_weighting_differs_from_plain_ttm_and_gamma_one_is_kd_at_t1():
    weighted, plain = _hand_wttm(STUDENT, TEACHER, 0.2), _hand_wttm(STUDENT, TEACHER, 0.2, weighted=False)
    assert abs(weighted - plain) > 0.1  # U_gamma > 1 for gamma < 1: the weight matters
    # gamma = 1: U = 1 and the target is p_t, so WTTM is KD's KL at T = 1 (no T^2)
    assert _run(_wttm(exponent=1.0, weight=1.0))["wttm"].item() == pytest.approx(_hand_wttm(STUDENT, TEACHER, 1.0), rel=1e-9)


def test_switches_logit_standardization_and_label_smoothing():
    eps = 0.2
    terms = _run(_wttm(logit_standardization=True, label_smoothing=eps))
    expected = _hand_wttm([hand_zscore(r) for r in STUDENT], [hand_zscore(r) for r in TEACHER], 0.2)
    assert terms["wttm"].item() == pytest.approx(4.0 * expected, rel=1e-6)
    assert terms["ce"].item() == pytest.approx(hand_smoothed_ce(STUDENT, LABELS, eps), rel=1e-9)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("exponent", 0.0, "must be > 0"), ("weight", -1.0, "must be >= 0"), ("label_smoothing", 2.0, r"must be in \[0.0, 1.0\]")],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"methods\.wttm\.{key}: {message}"):
        parse_method_config("wttm", {key: value}, "methods.wttm")


def test_gradients_flow():
    torch.manual_seed(0)
    assert_gradients_flow("wttm", {}, tiny_cnn(), tiny_cnn((8, 16), 32))
