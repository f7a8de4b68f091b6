"""Similarity-preserving KD: value against the paper's equations, invariances, config, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.config import parse_dataclass
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.sp import SimilarityPreserving, SPConfig, sp_loss
from tests.method_checks import assert_gradients_flow, tiny_cnn, tiny_mlp

LAYERS = {"student_layer": "features.1", "teacher_layer": "features.1"}


def test_sp_loss_matches_hand_computed_gram_matrices():
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    # student Q Q^T = [[1,0,1],[0,1,1],[1,1,2]], row norms sqrt2, sqrt2, sqrt6
    r2, r6, r5 = math.sqrt(2.0), math.sqrt(6.0), math.sqrt(5.0)
    g_s = [[1 / r2, 0.0, 1 / r2], [0.0, 1 / r2, 1 / r2], [1 / r6, 1 / r6, 2 / r6]]
    # teacher Q Q^T = [[1,2,0],[2,4,0],[0,0,1]], row norms sqrt5, 2 sqrt5, 1
    g_t = [[1 / r5, 2 / r5, 0.0], [2 / (2 * r5), 4 / (2 * r5), 0.0], [0.0, 0.0, 1.0]]
    expected = sum((g_t[i][j] - g_s[i][j]) ** 2 for i in range(3) for j in range(3)) / 3**2
    assert sp_loss(student, teacher).item() == pytest.approx(expected, rel=1e-5)


def test_sp_is_invariant_to_feature_scaling_and_width():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(5, 3, 2, 2, generator=generator)  # conv maps are flattened per sample
    rotation, _ = torch.linalg.qr(torch.randn(12, 12, generator=generator))
    student = torch.cat([7.5 * teacher.flatten(1) @ rotation, torch.zeros(5, 4)], dim=1)
    assert sp_loss(student, teacher).item() == pytest.approx(0.0, abs=1e-10)
    assert sp_loss(0.01 * teacher, teacher).item() == pytest.approx(0.0, abs=1e-10)
    assert sp_loss(torch.randn(5, 16, generator=generator), teacher).item() > 1e-3


def test_sp_term_is_gamma_times_loss_plus_ce():
    student_f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    teacher_f = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    setup = MethodSetup({"s": (2,)}, {"t": (2,)}, num_classes=3, num_train=3)
    method = SimilarityPreserving(SPConfig("s", "t", gamma=10.0), setup)
    logits, labels = torch.zeros(3, 3), torch.tensor([0, 1, 2])
    terms = method(
        ModelOutputs(logits, {"s": student_f}), ModelOutputs(logits, {"t": teacher_f}), Batch(logits, labels, torch.arange(3))
    )
    assert set(terms) == {"ce", "sp"}
    assert terms["sp"].item() == pytest.approx(10.0 * sp_loss(student_f, teacher_f).item(), rel=1e-6)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"teacher_layer": "features.1"}, "student_layer"),
        ({"student_layer": "features.1", "teacher_layer": ""}, "teacher_layer"),
        ({**LAYERS, "gamma": -1.0}, "gamma"),
        ({**LAYERS, "weight": 1.0}, "weight"),
    ],
)
def test_sp_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=rf"methods\.sp\.{key}"):
        parse_dataclass(SPConfig, raw, "methods.sp")


def test_sp_defaults_follow_the_paper():
    assert parse_dataclass(SPConfig, LAYERS, "methods.sp").gamma == 3000.0


def test_sp_gradients_flow_to_student_only():
    assert_gradients_flow("sp", LAYERS, tiny_cnn(), tiny_cnn((8, 16), 32))
    assert_gradients_flow("sp", {"student_layer": "hidden.0", "teacher_layer": "embed.0"}, tiny_mlp(), tiny_cnn((8, 16), 32))
