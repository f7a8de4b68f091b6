"""Correlation congruence: value against the paper's Taylor-RBF kernel, invariances, adapter, config, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from distillation_studies.common.config import parse_dataclass
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.cc import CCConfig, CorrelationCongruence, cc_loss, taylor_rbf_correlation
from tests.method_checks import assert_gradients_flow, one_step, tiny_cnn, tiny_mlp

LAYERS = {"student_layer": "embed.0", "teacher_layer": "embed.0"}


def kernel(cosine: float, gamma: float = 0.4) -> float:
    """P = 2 Taylor expansion: e^{-2g} (1 + 2g c + (2g c)^2 / 2)."""
    return math.exp(-2 * gamma) * (1 + 2 * gamma * cosine + (2 * gamma * cosine) ** 2 / 2)


def test_cc_loss_matches_hand_computed_taylor_kernel():
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # cosines 12: 0, 13: 1/sqrt2, 23: 1/sqrt2
    student = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])  # cosines 12: 1/sqrt2, 13: -1, 23: -1/sqrt2
    r = 1 / math.sqrt(2.0)
    # diagonals agree (cos = 1); each off-diagonal pair appears twice in the b x b matrices
    differences = [kernel(0.0) - kernel(r), kernel(r) - kernel(-1.0), kernel(r) - kernel(-r)]
    expected = 2 * sum(d * d for d in differences) / 3**2
    assert cc_loss(student, teacher, gamma=0.4, order=2).item() == pytest.approx(expected, rel=1e-5)


def test_taylor_kernel_tends_to_the_gaussian_rbf_on_unit_vectors():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=generator)
    unit = x / x.norm(dim=1, keepdim=True)
    exact = torch.exp(-0.4 * torch.cdist(unit, unit) ** 2)
    assert torch.allclose(taylor_rbf_correlation(x, gamma=0.4, order=12), exact, atol=1e-6)
    assert not torch.allclose(taylor_rbf_correlation(x, gamma=0.4, order=1), exact, atol=1e-3)


def test_cc_is_zero_when_correlations_match():
    generator = torch.Generator().manual_seed(1)
    teacher = torch.randn(6, 4, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=generator))
    student = (torch.rand(6, 1, generator=generator) + 0.5) * teacher @ rotation
    assert cc_loss(student, teacher, 0.4, 2).item() == pytest.approx(0.0, abs=1e-10)
    assert cc_loss(torch.randn(6, 4, generator=generator), teacher, 0.4, 2).item() > 1e-5


def test_cc_term_applies_the_linear_embedding_then_weight():
    setup = MethodSetup({"s": (2,)}, {"t": (3,)}, num_classes=3, num_train=3)
    method = CorrelationCongruence(CCConfig("s", "t"), setup)
    assert isinstance(method.embed, nn.Linear) and (method.embed.in_features, method.embed.out_features) == (2, 3)
    with torch.no_grad():
        method.embed.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        method.embed.bias.zero_()
    student_f = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    teacher_f = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    logits, labels = torch.zeros(3, 3), torch.tensor([0, 1, 2])
    terms = method(
        ModelOutputs(logits, {"s": student_f}), ModelOutputs(logits, {"t": teacher_f}), Batch(logits, labels, torch.arange(3))
    )
    assert set(terms) == {"ce", "cc"}
    expected = cc_loss(student_f, teacher_f[:, :2], 0.4, 2).item()
    assert terms["cc"].item() == pytest.approx(33.0 * expected, rel=1e-5)


def test_cc_adapter_maps_student_width_to_teacher_width():
    _, method = one_step("cc", LAYERS, tiny_cnn(), tiny_cnn((8, 16), 32))
    assert (method.embed.in_features, method.embed.out_features) == (16, 32)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"teacher_layer": "embed.0"}, "student_layer"),
        ({"student_layer": "embed.0"}, "teacher_layer"),
        ({**LAYERS, "weight": 0.0}, "weight"),
        ({**LAYERS, "gamma": 0.0}, "gamma"),
        ({**LAYERS, "order": 0}, "order"),
        ({**LAYERS, "order": 2.5}, "order"),
    ],
)
def test_cc_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=rf"methods\.cc\.{key}"):
        parse_dataclass(CCConfig, raw, "methods.cc")


def test_cc_defaults():
    """weight 33 (benchmarks/cc_weight.py): RepDistiller's 0.02 belongs to its own, ~1.6e3 times larger loss form."""
    config = parse_dataclass(CCConfig, LAYERS, "methods.cc")
    assert (config.weight, config.gamma, config.order, config.label_smoothing) == (33.0, 0.4, 2, 0.0)


def test_repdistillers_weight_on_its_own_form_is_far_larger_than_on_the_paper_form():
    """Why 0.02 does not carry over: on the same embeddings RepDistiller's Correlation (mean over i of
    sum_d |d_i,d| |d_i+1,d|, d = f_s - f_t) is orders of magnitude above the paper-form cc_loss."""
    generator = torch.Generator().manual_seed(0)
    teacher = torch.relu(torch.randn(16, 32, generator=generator))
    student = torch.relu(torch.randn(16, 32, generator=generator))
    delta = (student - teacher).abs().tolist()
    repdistiller = sum(sum(a * b for a, b in zip(delta[i], delta[i + 1])) for i in range(15)) / 15
    paper = cc_loss(student, teacher, 0.4, 2).item()
    assert repdistiller / paper > 100


def test_cc_gradients_flow_to_student_and_embedding():
    assert_gradients_flow("cc", LAYERS, tiny_cnn(), tiny_cnn((8, 16), 32))
    assert_gradients_flow("cc", {"student_layer": "hidden.0", "teacher_layer": "features.1"}, tiny_mlp(), tiny_cnn((8, 16), 32))
