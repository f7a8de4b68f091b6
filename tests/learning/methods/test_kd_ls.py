"""KD with logit standardisation (Sun et al., CVPR 2024): Z(x; T) = (x - mean) / sigma / T, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.kd import KnowledgeDistillation
from distillation_studies.learning.methods.shared import standardize_logits
from tests.method_checks import assert_gradients_flow, hand_zscore, tiny_cnn

STUDENT = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 2.0, 4.0]]
TEACHER = [[6.0, 0.0, 1.0, -3.0], [0.5, 0.5, 1.5, 9.0]]
LABELS = [1, 3]


def _softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_kl_t2(student, teacher, temperature: float) -> float:
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = _softmax(s_row, temperature), _softmax(t_row, temperature)
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    return temperature**2 * total / len(student)


def _hand_ce(logits, labels) -> float:
    return sum(-math.log(_softmax(row)[y]) for row, y in zip(logits, labels)) / len(labels)


def _kd(**settings) -> KnowledgeDistillation:
    config = parse_method_config("kd", settings, "methods.kd")
    return KnowledgeDistillation(config, MethodSetup({}, {}, num_classes=4, num_train=2))


def _run(method, student=STUDENT, teacher=TEACHER):
    batch = Batch(torch.zeros(2, 1), torch.tensor(LABELS), torch.arange(2))
    return method(
        ModelOutputs(torch.tensor(student, dtype=torch.float64)),
        ModelOutputs(torch.tensor(teacher, dtype=torch.float64)),
        batch,
    )


def test_default_is_off_and_keeps_plain_kd():
    method = _kd()
    assert method.config.logit_standardization is False
    assert (method.config.temperature, method.config.weights()) == (4.0, (0.1, 0.9))
    terms = _run(method)
    assert terms["kd"].item() == pytest.approx(0.9 * _hand_kl_t2(STUDENT, TEACHER, 4.0), rel=1e-9)


def test_standardize_logits_matches_the_authorshand_zscore():
    value = standardize_logits(torch.tensor(STUDENT, dtype=torch.float64))
    for row, expected in zip(value.tolist(), [hand_zscore(r) for r in STUDENT]):
        assert row == pytest.approx(expected, rel=1e-9)
    # zero mean and unit Bessel-corrected std per sample: sum of squares K - 1, not K
    assert value.mean(dim=1).abs().max().item() < 1e-12
    assert value.pow(2).sum(dim=1).tolist() == pytest.approx([3.0, 3.0], rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_ls_kd_matches_hand_formula(temperature):
    terms = _run(_kd(temperature=temperature, ce_weight=0.5, kd_weight=0.5, logit_standardization=True))
    zs, zt = [hand_zscore(r) for r in STUDENT], [hand_zscore(r) for r in TEACHER]
    assert terms["kd"].item() == pytest.approx(0.5 * _hand_kl_t2(zs, zt, temperature), rel=1e-9)
    # the cross-entropy term keeps the raw logits (Algorithm 2, q'(z) = softmax(z))
    assert terms["ce"].item() == pytest.approx(0.5 * _hand_ce(STUDENT, LABELS), rel=1e-9)


def test_ls_kd_ignores_logit_scale_and_shift():
    # a student whose logits are an affine copy of the teacher's (positive scale) is perfect under LS
    student = [[3.0 * v + 5.0 for v in row] for row in TEACHER]
    with_ls = _run(_kd(logit_standardization=True), student=student)["kd"].item()
    without = _run(_kd(), student=student)["kd"].item()
    assert with_ls == pytest.approx(0.0, abs=1e-10)
    assert without > 0.1


def test_constant_logits_stay_finite():
    terms = _run(_kd(logit_standardization=True), student=[[2.0] * 4, [0.0] * 4])
    assert all(torch.isfinite(t) for t in terms.values())
    assert torch.isfinite(standardize_logits(torch.full((2, 5), 3.0))).all()


def test_flag_must_be_boolean():
    with pytest.raises(ConfigError, match=r"methods\.kd\.logit_standardization: expected bool"):
        parse_method_config("kd", {"logit_standardization": "yes"}, "methods.kd")


def test_gradients_flow_with_ls():
    torch.manual_seed(0)
    assert_gradients_flow("kd", {"logit_standardization": True}, tiny_cnn(), tiny_cnn((8, 16), 32))


def test_the_authors_cifar_run_is_writable():
    """``--logit-stand --base-temp 2 --kd-weight 9`` on mdistiller's CE weight 0.1."""
    terms = _run(_kd(temperature=2.0, ce_weight=0.1, kd_weight=9.0, logit_standardization=True))
    zs, zt = [hand_zscore(r) for r in STUDENT], [hand_zscore(r) for r in TEACHER]
    assert terms["kd"].item() == pytest.approx(9.0 * _hand_kl_t2(zs, zt, 2.0), rel=1e-9)
    assert terms["ce"].item() == pytest.approx(0.1 * _hand_ce(STUDENT, LABELS), rel=1e-9)
