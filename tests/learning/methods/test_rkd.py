"""Relational KD (Park et al. 2019): distance and angle potentials checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.rkd import (
    RelationalKD,
    normalised_distances,
    rkd_angle_loss,
    rkd_distance_loss,
    triplet_angles,
)
from tests.method_checks import assert_gradients_flow, tiny_cnn, tiny_mlp

# A 3-4-5 right triangle (teacher) and a unit right isosceles triangle (student).
TEACHER = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
STUDENT = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])


def _random(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_normalised_distances_hand_value():
    # Teacher distances 3, 4, 5: mean over distinct pairs is 4, so psi = 0.75, 1.0, 1.25.
    expected = torch.tensor([[0.0, 0.75, 1.0], [0.75, 0.0, 1.25], [1.0, 1.25, 0.0]])
    assert torch.allclose(normalised_distances(TEACHER), expected, atol=1e-6)


def test_distance_loss_zero_for_scaled_copy():
    teacher = _random(6, 5, 0)
    assert rkd_distance_loss(teacher * 7.5, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_distance_loss(teacher * 0.01 + 3.0, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_distance_loss_hand_value_for_three_points():
    mu = (2 + math.sqrt(2)) / 3  # student distances 1, 1, sqrt(2)
    squared = (1 / mu - 0.75) ** 2 + (1 / mu - 1.0) ** 2 + (math.sqrt(2) / mu - 1.25) ** 2
    # smooth-L1 with |d| < 1 is d^2 / 2; each pair appears twice in the 3x3 matrix, mean over 9 entries.
    expected = 2 * 0.5 * squared / 9
    assert expected == pytest.approx(0.00348125, abs=1e-8)
    assert rkd_distance_loss(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-5)


def test_triplet_angles_hand_value():
    angles = triplet_angles(TEACHER)
    # [j, i, k] is the cosine of the angle at vertex j between i and k.
    assert angles[0, 1, 2].item() == pytest.approx(0.0, abs=1e-6)  # right angle at the origin
    assert angles[1, 0, 2].item() == pytest.approx(3 / 5, abs=1e-6)
    assert angles[2, 0, 1].item() == pytest.approx(4 / 5, abs=1e-6)
    assert angles[1, 0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(angles, angles.transpose(1, 2))


def test_angle_loss_hand_value_for_three_points():
    c = 1 / math.sqrt(2)  # student's two 45-degree angles against the teacher's cosines 0.6 and 0.8
    expected = 2 * 0.5 * ((c - 0.6) ** 2 + (c - 0.8) ** 2) / 27
    assert rkd_angle_loss(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("scale, shift", [(3.0, 0.0), (0.2, -5.0), (1.0, 10.0)])
def test_angle_loss_invariant_to_scale_and_translation(scale, shift):
    teacher = _random(5, 4, 1)
    assert rkd_angle_loss(teacher * scale + shift, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_losses_positive_for_unrelated_embeddings():
    student, teacher = _random(6, 3, 2), _random(6, 7, 3)
    assert rkd_distance_loss(student, teacher).item() > 1e-4
    assert rkd_angle_loss(student, teacher).item() > 1e-4


def test_forward_terms_are_weighted():
    config = parse_method_config(
        "rkd",
        {"student_layer": "s", "teacher_layer": "t", "distance_weight": 2.0, "angle_weight": 3.0},
        "methods.rkd",
    )
    method = RelationalKD(config, MethodSetup({"s": (2,)}, {"t": (2,)}, num_classes=2, num_train=3))
    logits = torch.zeros(3, 2)
    terms = method(
        ModelOutputs(logits, {"s": STUDENT}),
        ModelOutputs(logits, {"t": TEACHER}),
        Batch(torch.zeros(3, 1), torch.tensor([0, 1, 0]), torch.arange(3)),
    )
    assert set(terms) == {"ce", "rkd_distance", "rkd_angle"}
    assert terms["ce"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert terms["rkd_distance"].item() == pytest.approx(2.0 * rkd_distance_loss(STUDENT, TEACHER).item(), rel=1e-6)
    assert terms["rkd_angle"].item() == pytest.approx(3.0 * rkd_angle_loss(STUDENT, TEACHER).item(), rel=1e-6)


def test_gradients_flow():
    torch.manual_seed(0)
    config = {"student_layer": "hidden.0", "teacher_layer": "embed.0"}
    assert_gradients_flow("rkd", config, tiny_mlp(hidden=(16,)), tiny_cnn(embed=32))


@pytest.mark.parametrize("n", [8, 40])
def test_gradients_are_finite(n):
    # Self-distances are zero; the gradient there must not turn into NaN (40 > 25 rows uses the matmul path).
    student = _random(n, 6, 4).requires_grad_(True)
    teacher = _random(n, 9, 5)
    (rkd_distance_loss(student, teacher) + rkd_angle_loss(student, teacher)).backward()
    assert torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"methods\.rkd\.dist_weight: unknown key"):
        parse_method_config("rkd", {"student_layer": "a", "teacher_layer": "b", "dist_weight": 1.0}, "methods.rkd")


@pytest.mark.parametrize("key", ["distance_weight", "angle_weight"])
def test_negative_weight_is_rejected(key):
    with pytest.raises(ConfigError, match=rf"methods\.rkd\.{key}: must be >= 0"):
        parse_method_config("rkd", {"student_layer": "a", "teacher_layer": "b", key: -1.0}, "methods.rkd")


def test_layers_are_required():
    with pytest.raises(ConfigError, match=r"methods\.rkd\.student_layer: required"):
        parse_method_config("rkd", {"teacher_layer": "b"}, "methods.rkd")
