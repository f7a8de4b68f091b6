"""Knowledge distillation (Hinton et al. 2015): soft-target KL * T^2 checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.kd import KnowledgeDistillation
from distillation_studies.learning.methods.shared import soft_target_kl
from tests.method_checks import assert_gradients_flow, hand_smoothed_ce, tiny_cnn, tiny_mlp

STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 2.0]]
TEACHER = [[3.0, 0.0, 1.0], [0.5, 0.5, 1.5]]
LABELS = [1, 2]


def _softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_kl_t2(student: list[list[float]], teacher: list[list[float]], temperature: float) -> float:
    """T^2 * mean over samples of sum_c p_t,c * log(p_t,c / p_s,c), in plain floats."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = _softmax(s_row, temperature), _softmax(t_row, temperature)
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    return temperature**2 * total / len(student)


def _hand_ce(logits: list[list[float]], labels: list[int]) -> float:
    return sum(-math.log(_softmax(row)[y]) for row, y in zip(logits, labels)) / len(labels)


def _kd(temperature: float, alpha: float) -> KnowledgeDistillation:
    """KD weighted CE (1 - alpha), KD alpha, through the new keys."""
    return _kd_with(temperature=temperature, ce_weight=1.0 - alpha, kd_weight=alpha)


def _kd_with(**settings) -> KnowledgeDistillation:
    config = parse_method_config("kd", settings, "methods.kd")
    return KnowledgeDistillation(config, MethodSetup({}, {}, num_classes=3, num_train=2))


def _run(method, student=STUDENT, teacher=TEACHER):
    batch = Batch(torch.zeros(2, 1), torch.tensor(LABELS), torch.arange(2))
    return method(ModelOutputs(torch.tensor(student)), ModelOutputs(torch.tensor(teacher)), batch)


def test_soft_target_kl_is_zero_when_logits_equal():
    logits = torch.tensor(STUDENT)
    assert soft_target_kl(logits, logits.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-7)
    terms = _run(_kd(4.0, 1.0), STUDENT, STUDENT)
    assert terms["kd"].item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_target_kl_matches_hand_computed_value(temperature):
    expected = _hand_kl_t2(STUDENT, TEACHER, temperature)
    value = soft_target_kl(torch.tensor(STUDENT), torch.tensor(TEACHER), temperature).item()
    assert value == pytest.approx(expected, rel=1e-5)


def test_soft_target_kl_hand_value_literal():
    # Independently evaluated: T = 2, the 2-sample 3-class example above.
    # sample 0: p_t = softmax([1.5, 0, 0.5]), p_s = softmax([0.5, 1, 0.25]) -> KL = 0.313562
    # sample 1: p_t = softmax([0.25, 0.25, 0.75]), p_s = softmax([0, -0.5, 1]) -> KL = 0.081095
    # T^2 * mean = 4 * 0.197329 = 0.789314
    value = soft_target_kl(torch.tensor(STUDENT), torch.tensor(TEACHER), 2.0).item()
    assert value == pytest.approx(0.789314, abs=2e-5)


def test_kd_terms_weighted_by_alpha():
    alpha, temperature = 0.7, 2.0
    terms = _run(_kd(temperature, alpha))
    assert set(terms) == {"ce", "kd"}
    assert terms["ce"].item() == pytest.approx((1 - alpha) * _hand_ce(STUDENT, LABELS), rel=1e-5)
    assert terms["kd"].item() == pytest.approx(alpha * _hand_kl_t2(STUDENT, TEACHER, temperature), rel=1e-5)


def test_alpha_zero_is_pure_cross_entropy():
    terms = _run(_kd(4.0, 0.0))
    assert terms["kd"].item() == 0.0
    assert terms["ce"].item() == pytest.approx(_hand_ce(STUDENT, LABELS), rel=1e-6)


def test_alpha_one_is_pure_soft_targets():
    terms = _run(_kd(3.0, 1.0))
    assert terms["ce"].item() == 0.0
    assert terms["kd"].item() == pytest.approx(_hand_kl_t2(STUDENT, TEACHER, 3.0), rel=1e-5)


@pytest.mark.parametrize("teacher", [tiny_cnn, tiny_mlp])
def test_gradients_flow(teacher):
    torch.manual_seed(0)
    assert_gradients_flow("kd", {"temperature": 4.0, "ce_weight": 0.5, "kd_weight": 0.5}, tiny_mlp(), teacher())


def test_kd_requires_teacher():
    config = parse_method_config("kd", {}, "methods.kd")
    with pytest.raises(ConfigError, match=r"methods\.kd: method 'kd' needs a teacher"):
        build_method("kd", config, tiny_mlp(), None, num_train=8, where="methods.kd")


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"methods\.kd\.temprature: unknown key.*temperature"):
        parse_method_config("kd", {"temprature": 2.0}, "methods.kd")


@pytest.mark.parametrize("value", [0, -1.0])
def test_temperature_must_be_positive(value):
    with pytest.raises(ConfigError, match=r"methods\.kd\.temperature: must be > 0"):
        parse_method_config("kd", {"temperature": value}, "methods.kd")


@pytest.mark.parametrize("value", [-0.01, 1.01, 2])
def test_alpha_must_be_in_unit_interval(value):
    with pytest.raises(ConfigError, match=r"methods\.kd\.alpha: must be in \[0.0, 1.0\]"):
        parse_method_config("kd", {"alpha": value}, "methods.kd")


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_alpha_bounds_are_allowed(value):
    with pytest.warns(FutureWarning):
        assert parse_method_config("kd", {"alpha": value}, "methods.kd").weights() == (1.0 - value, value)


def test_defaults_are_repdistillers_cifar_weights():
    config = parse_method_config("kd", {}, "methods.kd")
    assert (config.temperature, config.weights(), config.label_smoothing) == (4.0, (0.1, 0.9), 0.0)


def test_ce_and_kd_weights_are_independent():
    """The authors' LS-KD CIFAR weights (CE 0.1, KD 9) do not sum to one: no alpha can write them."""
    terms = _run(_kd_with(temperature=2.0, ce_weight=0.1, kd_weight=9.0))
    assert terms["ce"].item() == pytest.approx(0.1 * _hand_ce(STUDENT, LABELS), rel=1e-6)
    assert terms["kd"].item() == pytest.approx(9.0 * _hand_kl_t2(STUDENT, TEACHER, 2.0), rel=1e-5)


def test_alpha_is_deprecated_naming_the_new_keys_and_still_works():
    with pytest.warns(FutureWarning, match=r"methods\.kd\.alpha is deprecated.*ce_weight: 0\.3 and kd_weight: 0\.7"):
        method = _kd_with(temperature=2.0, alpha=0.7)
    terms = _run(method)
    assert terms["ce"].item() == pytest.approx(0.3 * _hand_ce(STUDENT, LABELS), rel=1e-5)
    assert terms["kd"].item() == pytest.approx(0.7 * _hand_kl_t2(STUDENT, TEACHER, 2.0), rel=1e-5)


@pytest.mark.parametrize("key", ["ce_weight", "kd_weight"])
def test_alpha_with_the_new_keys_is_a_config_error(key):
    with pytest.raises(ConfigError, match=r"methods\.kd\.alpha: deprecated and cannot be combined with ce_weight/kd_weight"):
        parse_method_config("kd", {"alpha": 0.5, key: 1.0}, "methods.kd")


@pytest.mark.parametrize("key", ["ce_weight", "kd_weight"])
def test_weights_must_be_non_negative(key):
    with pytest.raises(ConfigError, match=rf"methods\.kd\.{key}: must be >= 0"):
        parse_method_config("kd", {key: -0.1}, "methods.kd")


def test_label_smoothing_smooths_the_ce_term():
    eps = 0.1
    terms = _run(_kd_with(temperature=2.0, ce_weight=1.0, kd_weight=1.0, label_smoothing=eps))
    assert terms["ce"].item() == pytest.approx(hand_smoothed_ce(STUDENT, LABELS, eps), rel=1e-6)
    assert terms["kd"].item() == pytest.approx(_hand_kl_t2(STUDENT, TEACHER, 2.0), rel=1e-5)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_label_smoothing_range_is_named(value):
    with pytest.raises(ConfigError, match=r"methods\.kd\.label_smoothing: must be in \[0.0, 1.0\]"):
        parse_method_config("kd", {"label_smoothing": value}, "methods.kd")


def test_non_numeric_temperature_is_named():
    with pytest.raises(ConfigError, match=r"methods\.kd\.temperature: expected float"):
        parse_method_config("kd", {"temperature": "hot"}, "methods.kd")
