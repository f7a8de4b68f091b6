"""Probabilistic knowledge transfer: value against the paper's equations, invariances, config, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.config import parse_dataclass
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.pkt import PKTConfig, ProbabilisticKnowledgeTransfer, pkt_loss
from tests.method_checks import assert_gradients_flow, tiny_cnn, tiny_mlp

LAYERS = {"student_layer": "embed.0", "teacher_layer": "embed.0"}


def test_pkt_loss_matches_hand_computed_kl_on_three_points():
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    student = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # cosine kernel K = (cos + 1) / 2; a = K at cos = 1/sqrt(2), 1/2 = K at cos = 0
    a = (1.0 + 1.0 / math.sqrt(2.0)) / 2.0
    u, v = 0.5 / (0.5 + a), a / (0.5 + a)
    # teacher rows p_{.|i} over j != i: [u, v], [u, v], [1/2, 1/2]
    # student rows q_{.|i}:             [v, u], [1/2, 1/2], [u, v]
    kl_row1 = u * math.log(u / v) + v * math.log(v / u)
    kl_row2 = u * math.log(u / 0.5) + v * math.log(v / 0.5)
    kl_row3 = 0.5 * math.log(0.5 / u) + 0.5 * math.log(0.5 / v)
    expected = (kl_row1 + kl_row2 + kl_row3) / 3**2
    assert pkt_loss(student, teacher).item() == pytest.approx(expected, rel=1e-4)


def test_pkt_is_kl_teacher_to_student_not_symmetric():
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    student = torch.tensor([[1.0, 0.0], [0.2, 1.0], [1.0, -0.3]])
    assert pkt_loss(student, teacher).item() != pytest.approx(pkt_loss(teacher, student).item(), rel=1e-3)


def test_pkt_is_zero_when_cosine_relations_match():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(6, 4, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=generator))
    scales = torch.rand(6, 1, generator=generator) + 0.5
    # per-sample scaling and a rotation keep every cosine; a wider student pads with zeros
    student = torch.cat([3.0 * scales * teacher @ rotation, torch.zeros(6, 3)], dim=1)
    assert pkt_loss(student, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert pkt_loss(student, teacher + 0.5 * torch.randn(6, 4, generator=generator)).item() > 1e-4


def test_pkt_term_is_weight_times_loss_plus_ce():
    teacher_f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    student_f = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    setup = MethodSetup({"s": (2,)}, {"t": (2,)}, num_classes=3, num_train=3)
    method = ProbabilisticKnowledgeTransfer(PKTConfig("s", "t"), setup)
    logits, labels = torch.zeros(3, 3), torch.tensor([0, 1, 2])
    terms = method(
        ModelOutputs(logits, {"s": student_f}), ModelOutputs(logits, {"t": teacher_f}), Batch(logits, labels, torch.arange(3))
    )
    assert set(terms) == {"ce", "pkt"}
    assert terms["ce"].item() == pytest.approx(math.log(3.0))
    assert terms["pkt"].item() == pytest.approx(30000.0 * pkt_loss(student_f, teacher_f).item(), rel=1e-5)
    assert not list(method.parameters())


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"teacher_layer": "embed.0"}, "student_layer"),
        ({"student_layer": "embed.0"}, "teacher_layer"),
        ({**LAYERS, "weight": 0}, "weight"),
        ({**LAYERS, "weight": "big"}, "weight"),
        ({**LAYERS, "temperature": 1.0}, "temperature"),
    ],
)
def test_pkt_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=rf"methods\.pkt\.{key}"):
        parse_dataclass(PKTConfig, raw, "methods.pkt")


def test_pkt_defaults_follow_repdistiller():
    assert parse_dataclass(PKTConfig, LAYERS, "methods.pkt").weight == 30000.0


def test_pkt_gradients_flow_to_student_only():
    assert_gradients_flow("pkt", LAYERS, tiny_cnn(), tiny_cnn((8, 16), 32))
    assert_gradients_flow("pkt", {"student_layer": "hidden.0", "teacher_layer": "features.1"}, tiny_mlp(), tiny_cnn((8, 16), 32))
