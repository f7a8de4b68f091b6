"""Neuron selectivity transfer: MMD^2 values from the paper's equation, config checks, gradient flow."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.nst import NeuronSelectivityTransfer, NSTConfig, mmd2
from tests.method_checks import assert_gradients_flow, one_step, tiny_cnn

LAYERS = {"student_layers": ["features.0", "features.1"], "teacher_layers": ["features.0", "features.1"]}


def fmap(*channels):
    """(1, C, 1, W) map from per-channel rows."""
    return torch.tensor([[list(c)] for c in channels], dtype=torch.float32).unsqueeze(0)


# student channels [1, 0] and [1, 1] -> unit f_S^1 = (1, 0), f_S^2 = (1, 1)/sqrt2; teacher [3, 4] -> (0.6, 0.8)
STUDENT = fmap([1, 0], [1, 1])
TEACHER = fmap([3, 4])


def test_mmd2_polynomial_kernel_matches_equation_by_hand():
    # k(x, y) = (x^T y)^2
    # 1/C_T^2 sum k(t, t) = 1
    # 1/C_S^2 sum k(s, s') = (1 + 1/2 + 1/2 + 1) / 4 = 0.75
    # 1/(C_T C_S) sum k(s, t) = (0.6^2 + (1.4/sqrt2)^2) / 2 = (0.36 + 0.98) / 2 = 0.67
    expected = 1 + 0.75 - 2 * 0.67
    assert mmd2(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-5)


def test_mmd2_general_polynomial_kernel_by_hand():
    # d = 1, c = 1: k(x, y) = x^T y + 1
    kss = (2 + 2 * (1 + 1 / math.sqrt(2)) + 2) / 4
    ktt = 0.36 + 0.64 + 1
    kst = ((0.6 + 1) + (1.4 / math.sqrt(2) + 1)) / 2
    assert mmd2(STUDENT, TEACHER, degree=1, offset=1.0).item() == pytest.approx(ktt + kss - 2 * kst, rel=1e-5)


def test_forward_averages_batch_sums_layers_and_weights_by_beta():
    # pair a: sample 0 the hand example, sample 1 identical maps (MMD^2 = 0) -> batch mean = example / 2
    s_a = torch.cat([STUDENT, fmap([1, 2], [2, 4])])
    t_a = torch.cat([TEACHER, fmap([3, 6])])  # every normalised channel map is (1, 2)/sqrt5 -> 0
    # pair b: one channel each, orthogonal unit maps: 1 + 1 - 2 * 0 = 2 for both samples
    s_b = torch.cat([fmap([1, 0]), fmap([0, 2])])
    t_b = torch.cat([fmap([0, 1]), fmap([5, 0])])
    expected = (1 + 0.75 - 2 * 0.67) / 2 + 2.0
    config = NSTConfig(student_layers=("a", "b"), teacher_layers=("ta", "tb"), beta=3.0)
    setup = MethodSetup({"a": (2, 1, 2), "b": (1, 1, 2)}, {"ta": (1, 1, 2), "tb": (1, 1, 2)}, 10, 2)
    method = NeuronSelectivityTransfer(config, setup)
    batch = Batch(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.arange(2))
    terms = method(
        ModelOutputs(torch.zeros(2, 10), {"a": s_a, "b": s_b}),
        ModelOutputs(torch.zeros(2, 10), {"ta": t_a, "tb": t_b}),
        batch,
    )
    assert set(terms) == {"ce", "nst"}
    assert terms["nst"].item() == pytest.approx(3.0 * expected, rel=1e-5)


def test_zero_when_student_features_equal_teacher_features():
    x = torch.randn(3, 4, 5, 5)
    assert mmd2(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_zero_for_permuted_and_rescaled_channels():
    # MMD compares the distributions of normalised channel maps: order and scale do not matter
    x = torch.randn(3, 4, 5, 5)
    y = x[:, [2, 0, 3, 1]] * torch.tensor([1.0, 3.0, 0.5, 2.0]).view(1, 4, 1, 1)
    assert mmd2(y, x).item() == pytest.approx(0.0, abs=1e-6)


def test_defaults_follow_repdistiller():
    config = parse_method_config("nst", LAYERS, "methods.nst")
    assert (config.beta, config.degree, config.offset) == (50.0, 2, 0.0)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({}, "methods.nst.student_layers"),
        ({"student_layers": ["features.0"]}, "methods.nst.teacher_layers"),
        ({**LAYERS, "teacher_layers": ["features.0"]}, "methods.nst.teacher_layers"),
        ({**LAYERS, "beta": 0}, "methods.nst.beta"),
        ({**LAYERS, "beta": -1.0}, "methods.nst.beta"),
        ({**LAYERS, "degree": 0}, "methods.nst.degree"),
        ({**LAYERS, "degree": 2.5}, "methods.nst.degree"),
        ({**LAYERS, "offset": -1.0}, "methods.nst.offset"),
        ({**LAYERS, "kernel": "rbf"}, "methods.nst.kernel"),
    ],
)
def test_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_method_config("nst", raw, "methods.nst")


def test_spatial_mismatch_is_a_config_error_listing_shapes():
    config = parse_method_config(
        "nst", {"student_layers": ["features.1"], "teacher_layers": ["features.0"]}, "methods.nst"
    )
    with pytest.raises(ConfigError, match=r"teacher_layers.*\(8, 2, 2\).*\(8, 4, 4\)"):
        build_method("nst", config, tiny_cnn(), tiny_cnn((8, 16), 32), 8)


def test_non_map_layer_is_a_config_error():
    config = parse_method_config("nst", {"student_layers": ["features.0"], "teacher_layers": ["embed"]}, "methods.nst")
    with pytest.raises(ConfigError, match=r"teacher_layers.*'embed'"):
        build_method("nst", config, tiny_cnn(), tiny_cnn((8, 16), 32), 8)


def test_gradients_flow_to_student_not_teacher():
    torch.manual_seed(0)
    assert_gradients_flow("nst", LAYERS, tiny_cnn(), tiny_cnn((8, 16), 32))


def test_one_step_terms_are_positive():
    torch.manual_seed(0)
    terms, _ = one_step("nst", LAYERS, tiny_cnn(), tiny_cnn((8, 16), 32))
    assert terms["nst"].item() > 0
