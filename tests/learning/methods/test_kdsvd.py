"""KD-SVD (Lee et al., ECCV 2018): with 2 channels the singular vectors have a closed form, so the loss
is computed here from 2 x 2 eigenvectors by hand, without any SVD."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, build_method, parse_method_config
from distillation_studies.learning.methods.kdsvd import KDSVD, kdsvd_loss
from tests.method_checks import assert_gradients_flow, tiny_cnn


def _eigenvectors_2x2(sample: list) -> tuple[list[float], list[float]]:
    """(top, second) eigenvectors of X^T X for X = positions x 2 channels: the right singular vectors."""
    flat = [[v for row in channel for v in row] for channel in sample]  # 2 x HW
    a = sum(x * x for x in flat[0])
    b = sum(x * y for x, y in zip(flat[0], flat[1]))
    d = sum(y * y for y in flat[1])
    theta = 0.5 * math.atan2(2 * b, a - d)  # angle of the major axis of [[a, b], [b, d]]
    return [math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]


def _canonical(v: list[float]) -> list[float]:
    big = max(v, key=abs)
    return [x if big > 0 else -x for x in v]


def _hand_kdsvd(students: list, teachers: list) -> float:
    total, previous = 0.0, None
    for layer_s, layer_t in zip(students, teachers):
        current = []
        for sample_s, sample_t in zip(layer_s, layer_t):
            v_t = _canonical(_eigenvectors_2x2(sample_t)[0])
            candidates = _eigenvectors_2x2(sample_s)
            dots = [sum(x * y for x, y in zip(c, v_t)) for c in candidates]
            best = max(range(2), key=lambda i: abs(dots[i]))
            v_s = [math.copysign(1.0, dots[best]) * x for x in candidates[best]]
            current.append((v_s, v_t))  # k = 1: the normalised teacher singular value is 1
        if previous is not None:
            for (v_s, v_t), (p_s, p_t) in zip(current, previous):
                for c in range(2):
                    for c2 in range(2):
                        rbf_s = math.exp(-((v_s[c] - p_s[c2]) ** 2) / 8)
                        rbf_t = math.exp(-((v_t[c] - p_t[c2]) ** 2) / 8)
                        total += (rbf_s - rbf_t) ** 2 / len(layer_s)
        previous = current
    return total


def _maps(seed: int, shapes) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator, dtype=torch.float64) for shape in shapes]


def test_loss_matches_closed_form_singular_vectors():
    shapes = [(3, 2, 4, 4), (3, 2, 2, 2), (3, 2, 2, 2)]
    students, teachers = _maps(0, shapes), _maps(1, shapes)
    expected = _hand_kdsvd([s.tolist() for s in students], [t.tolist() for t in teachers])
    assert expected > 1e-4
    assert kdsvd_loss(students, teachers, k=1).item() == pytest.approx(expected, rel=1e-6)


def test_zero_when_student_equals_teacher_and_independent_of_the_svd_sign():
    teachers = _maps(2, [(2, 2, 3, 3), (2, 2, 3, 3)])
    assert kdsvd_loss([t.clone() for t in teachers], teachers, k=1).item() == pytest.approx(0.0, abs=1e-12)
    flipped = [-teachers[0], teachers[1]]  # same subspaces, so the same canonical directions
    students = _maps(3, [(2, 2, 3, 3), (2, 2, 3, 3)])
    assert kdsvd_loss(students, flipped, 1).item() == pytest.approx(kdsvd_loss(students, teachers, 1).item(), rel=1e-9)


def test_registered_and_channel_mismatch_is_a_config_error():
    assert METHODS["kdsvd"] is KDSVD
    raw = {"student_layers": ["features.0", "features.1"], "teacher_layers": ["features.0", "features.1"]}
    config = parse_method_config("kdsvd", raw, "methods.kdsvd")
    assert (config.k, config.weight) == (1, 1.0)
    with pytest.raises(ConfigError, match=r"student 'features\.0' has 4 channels and teacher 'features\.0' 8"):
        build_method("kdsvd", config, tiny_cnn(), tiny_cnn((8, 16), 32), num_train=8, where="methods.kdsvd")


def test_one_pair_is_a_config_error():
    with pytest.raises(ConfigError, match=r"methods\.kdsvd\.student_layers: required, a list of at least 2"):
        parse_method_config("kdsvd", {"student_layers": ["a"], "teacher_layers": ["b"]}, "methods.kdsvd")


def test_gradients_flow():
    torch.manual_seed(0)
    layers = {"student_layers": ["features.1.1", "features.1"], "teacher_layers": ["features.0.1", "features.0"]}
    assert_gradients_flow("kdsvd", layers, tiny_cnn(), tiny_cnn((8, 16), 32))
