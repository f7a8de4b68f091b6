"""Curriculum temperature KD (Li et al., AAAI 2023): learnable temperature behind a gradient reversal layer."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.ctkd import CurriculumTemperatureKD, cosine_curriculum, reverse_gradient
from tests.method_checks import assert_gradients_flow, hand_smoothed_ce, hand_zscore, one_step, tiny_cnn

STUDENT = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 2.0, 0.5], [3.0, 0.0, 0.0, 1.0]]
TEACHER = [[4.0, 0.0, 1.0, -2.0], [0.5, 0.5, 1.5, 3.0], [6.0, -1.0, 2.0, 0.0]]
LABELS = [1, 3, 0]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _softmax(row, temperature=1.0):
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_kl_t2(student, teacher, temperature):
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = _softmax(s_row, temperature), _softmax(t_row, temperature)
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    return temperature**2 * total / len(student)


def _torch_kl_t2(student: torch.Tensor, teacher: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """The same formula written out in torch ops (differentiable in T), independent of the method's helpers."""
    p_t = torch.exp(teacher / temperature) / torch.exp(teacher / temperature).sum(1, keepdim=True)
    p_s = torch.exp(student / temperature) / torch.exp(student / temperature).sum(1, keepdim=True)
    return temperature**2 * (p_t * (p_t.log() - p_s.log())).sum(1).mean()


def _ctkd(**settings) -> CurriculumTemperatureKD:
    config = parse_method_config("ctkd", settings, "methods.ctkd")
    return CurriculumTemperatureKD(config, MethodSetup({}, {}, num_classes=4, num_train=len(LABELS)))


def _run(method, student=None, epoch=None):
    if epoch is not None:
        method.start_epoch(epoch, 240)
    student = torch.tensor(STUDENT, dtype=torch.float64) if student is None else student
    batch = Batch(torch.zeros(len(LABELS), 1), torch.tensor(LABELS), torch.arange(len(LABELS)))
    return method(ModelOutputs(student), ModelOutputs(torch.tensor(TEACHER, dtype=torch.float64)), batch)


def test_registered_with_paper_defaults():
    assert METHODS["ctkd"] is CurriculumTemperatureKD
    c = parse_method_config("ctkd", {}, "methods.ctkd")
    assert (c.alpha, c.min_temperature, c.temperature_range, c.init_logit) == (0.9, 1.0, 20.0, 1.0)
    assert (c.lambda_min, c.lambda_max, c.curriculum_epochs) == (0.0, 1.0, 10)


def test_temperature_is_a_counted_bounded_parameter():
    method = _ctkd()
    assert sum(p.numel() for p in method.parameters()) == 1
    assert method.temperature().item() == pytest.approx(1.0 + 20.0 * _sigmoid(1.0), rel=1e-6)
    with torch.no_grad():
        method.temperature_logit.fill_(-50.0)
    assert method.temperature().item() == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        method.temperature_logit.fill_(50.0)
    assert method.temperature().item() == pytest.approx(21.0, rel=1e-6)


def test_cosine_curriculum_follows_paper_schedule():
    # lambda_n = l_min + 1/2 (l_max - l_min)(1 + cos((1 + min(n, E)/E) pi)), E = 10
    def paper(n, low=0.0, high=1.0, loops=10):
        return low + 0.5 * (high - low) * (1 + math.cos((1 + min(n, loops) / loops) * math.pi))

    for n in [0, 1, 3, 5, 9, 10, 11, 100]:
        assert cosine_curriculum(n, 10, 0.0, 1.0) == pytest.approx(paper(n), abs=1e-12)
    assert cosine_curriculum(5, 10, 0.0, 1.0) == pytest.approx(0.5)
    assert cosine_curriculum(3, 0, 0.2, 0.7) == 0.7
    assert cosine_curriculum(4, 8, 0.2, 0.6) == pytest.approx(paper(4, 0.2, 0.6, 8))


def test_reversal_strength_follows_start_epoch():
    method = _ctkd()
    method.start_epoch(1, 240)
    assert method.reversal_strength() == pytest.approx((1 - math.cos(math.pi / 10)) / 2)
    method.start_epoch(10, 240)
    assert method.reversal_strength() == pytest.approx(1.0)
    method.start_epoch(50, 240)
    assert method.reversal_strength() == pytest.approx(1.0)


def test_loss_matches_hand_kd_at_current_temperature():
    alpha = 0.9
    terms = _run(_ctkd(), epoch=1)
    temperature = 1.0 + 20.0 * _sigmoid(1.0)
    assert set(terms) == {"ce", "kd"}
    assert terms["kd"].item() == pytest.approx(alpha * _hand_kl_t2(STUDENT, TEACHER, temperature), rel=1e-6)
    ce = sum(-math.log(_softmax(r)[y]) for r, y in zip(STUDENT, LABELS)) / len(LABELS)
    assert terms["ce"].item() == pytest.approx((1 - alpha) * ce, rel=1e-9)


def test_logit_standardization_and_label_smoothing_switches():
    eps = 0.1
    terms = _run(_ctkd(logit_standardization=True, label_smoothing=eps), epoch=1)
    temperature = 1.0 + 20.0 * _sigmoid(1.0)
    zs, zt = [hand_zscore(r) for r in STUDENT], [hand_zscore(r) for r in TEACHER]
    assert terms["kd"].item() == pytest.approx(0.9 * _hand_kl_t2(zs, zt, temperature), rel=1e-6)
    assert terms["ce"].item() == pytest.approx(0.1 * hand_smoothed_ce(STUDENT, LABELS, eps), rel=1e-9)  # raw logits


def test_gradient_reversal_function():
    x = torch.tensor([1.5, -2.0], requires_grad=True)
    y = reverse_gradient(x, 0.25)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == pytest.approx([-0.5, -0.75])


@pytest.mark.parametrize(("epoch", "strength"), [(10, 1.0), (5, 0.5)])
def test_temperature_gradient_is_reversed_plain_gradient(epoch, strength):
    # plain minimisation gradient of alpha * T^2 KL w.r.t. theta, computed independently
    theta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    temperature = 1.0 + 20.0 * torch.sigmoid(theta)
    plain_loss = 0.9 * _torch_kl_t2(
        torch.tensor(STUDENT, dtype=torch.float64), torch.tensor(TEACHER, dtype=torch.float64), temperature
    )
    (plain,) = torch.autograd.grad(plain_loss, theta)
    assert abs(plain.item()) > 1e-6

    method = _ctkd().double()
    terms = _run(method, epoch=epoch)
    terms["kd"].backward()
    reversed_grad = method.temperature_logit.grad.item()
    assert reversed_grad == pytest.approx(-strength * plain.item(), rel=1e-6)
    assert math.copysign(1.0, reversed_grad) == -math.copysign(1.0, plain.item())


def test_student_gradient_is_not_reversed():
    student = torch.tensor(STUDENT, dtype=torch.float64, requires_grad=True)
    method = _ctkd().double()
    _run(method, student=student, epoch=10)["kd"].backward()
    expected_student = torch.tensor(STUDENT, dtype=torch.float64, requires_grad=True)
    temperature = torch.tensor(1.0 + 20.0 * _sigmoid(1.0), dtype=torch.float64)
    (0.9 * _torch_kl_t2(expected_student, torch.tensor(TEACHER, dtype=torch.float64), temperature)).backward()
    assert torch.allclose(student.grad, expected_student.grad, rtol=1e-9, atol=1e-12)


def test_optimiser_step_moves_temperature_to_increase_kd_loss():
    method = _ctkd().double()
    before = _run(method, epoch=10)
    before["kd"].backward()
    with torch.no_grad():
        method.temperature_logit -= 0.5 * method.temperature_logit.grad  # plain SGD step on the total loss
    after = _run(method, epoch=10)
    assert after["kd"].item() > before["kd"].item()


@pytest.mark.parametrize(
    ("settings", "key", "message"),
    [
        ({"alpha": 1.5}, "alpha", r"must be in \[0.0, 1.0\]"),
        ({"min_temperature": 0.0}, "min_temperature", "must be > 0"),
        ({"temperature_range": -1.0}, "temperature_range", "must be > 0"),
        ({"lambda_min": -0.1}, "lambda_min", "must be >= 0"),
        ({"lambda_min": 0.8, "lambda_max": 0.5}, "lambda_max", "must be >= lambda_min"),
        ({"curriculum_epochs": -1}, "curriculum_epochs", "must be >= 0"),
        ({"curriculum_epochs": 2.5}, "curriculum_epochs", "expected int"),
        ({"init_logit": float("nan")}, "init_logit", "must be finite"),
    ],
)
def test_bad_values_name_the_key(settings, key, message):
    with pytest.raises(ConfigError, match=rf"methods\.ctkd\.{key}: {message}"):
        parse_method_config("ctkd", settings, "methods.ctkd")


def test_gradients_flow():
    torch.manual_seed(0)
    assert_gradients_flow("ctkd", {}, tiny_cnn(), tiny_cnn((8, 16), 32))


def test_temperature_gets_reversed_gradient_in_a_real_step():
    torch.manual_seed(0)
    terms, method = one_step("ctkd", {"curriculum_epochs": 0}, tiny_cnn(), tiny_cnn((8, 16), 32))
    assert method.temperature_logit.grad is not None and method.temperature_logit.grad.abs().item() > 0
