"""Attention transfer: loss values from the paper's equation, config checks, gradient flow."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.at import AttentionTransfer, ATConfig, at_loss, attention_map
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from tests.method_checks import assert_gradients_flow, one_step, tiny_cnn

LAYERS = {"student_layers": ["features.0", "features.1"], "teacher_layers": ["features.0", "features.1"]}


def fmap(*channels):
    """(1, C, 1, W) map from per-channel rows."""
    return torch.tensor([[list(c)] for c in channels], dtype=torch.float32).unsqueeze(0)


def test_attention_map_is_normalised_channel_mean_of_squares():
    # channels [1, 2] and [1, 0]: mean of squares [1, 2], l2 norm sqrt(5)
    q = attention_map(fmap([1, 2], [1, 0]))
    assert torch.allclose(q, torch.tensor([[1 / math.sqrt(5), 2 / math.sqrt(5)]]))


def test_at_loss_matches_equation_by_hand():
    # student Q_hat = [1, 2]/sqrt(5); teacher one channel [2, 0]: Q_hat = [1, 0]
    # mean over the 2 elements of (Q_s - Q_t)^2 = ((1/sqrt5 - 1)^2 + 4/5) / 2 = 1 - 1/sqrt5
    loss = at_loss(fmap([1, 2], [1, 0]), fmap([2, 0]))
    assert loss.item() == pytest.approx(1 - 1 / math.sqrt(5), rel=1e-6)


def test_forward_sums_pairs_weighted_by_beta():
    # pair a (B = 2): sample 0 as in the hand example, sample 1 identical maps -> mean over 4 elements
    s_a = torch.cat([fmap([1, 2], [1, 0]), fmap([5, 1], [1, 1])])
    t_a = torch.cat([fmap([2, 0], [0, 0]), fmap([5, 1], [1, 1])])
    # pair b: sample 0 equal up to scale (diff 0), sample 1 Q_s = [1, 0] vs Q_t = [0, 1] (squared diff 2)
    s_b = torch.cat([fmap([0, 3]), fmap([1, 0])])
    t_b = torch.cat([fmap([0, 1]), fmap([0, 1])])
    expected_a = (2 - 2 / math.sqrt(5)) / 4
    expected_b = 2 / 4
    config = ATConfig(student_layers=("a", "b"), teacher_layers=("ta", "tb"), beta=10.0)
    setup = MethodSetup({"a": (2, 1, 2), "b": (1, 1, 2)}, {"ta": (2, 1, 2), "tb": (1, 1, 2)}, 10, 2)
    method = AttentionTransfer(config, setup)
    batch = Batch(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.arange(2))
    terms = method(
        ModelOutputs(torch.zeros(2, 10), {"a": s_a, "b": s_b}),
        ModelOutputs(torch.zeros(2, 10), {"ta": t_a, "tb": t_b}),
        batch,
    )
    assert set(terms) == {"ce", "at"}
    assert terms["at"].item() == pytest.approx(10.0 * (expected_a + expected_b), rel=1e-6)
    assert terms["ce"].item() == pytest.approx(math.log(10), rel=1e-6)


def test_zero_when_student_features_equal_teacher_features():
    x = torch.randn(4, 3, 5, 5)
    assert at_loss(x, x.clone()).item() == pytest.approx(0.0, abs=1e-12)


def test_defaults_follow_the_paper():
    config = parse_method_config("at", LAYERS, "methods.at")
    assert config.beta == 1000.0 and config.p == 2.0
    assert config.student_layers == ("features.0", "features.1")


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({}, "methods.at.student_layers"),
        ({"student_layers": ["features.0"]}, "methods.at.teacher_layers"),
        ({"student_layers": "features.0", "teacher_layers": ["features.0"]}, "methods.at.student_layers"),
        ({**LAYERS, "teacher_layers": ["features.0"]}, "methods.at.teacher_layers"),
        ({**LAYERS, "beta": 0}, "methods.at.beta"),
        ({**LAYERS, "beta": -5.0}, "methods.at.beta"),
        ({**LAYERS, "p": 0}, "methods.at.p"),
        ({**LAYERS, "beta": "big"}, "methods.at.beta"),
        ({**LAYERS, "gamma": 1.0}, "methods.at.gamma"),
    ],
)
def test_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_method_config("at", raw, "methods.at")


def test_spatial_mismatch_is_a_config_error_listing_shapes():
    config = parse_method_config(
        "at", {"student_layers": ["features.0"], "teacher_layers": ["features.1"]}, "methods.at"
    )
    with pytest.raises(ConfigError, match=r"teacher_layers.*\(4, 4, 4\).*\(16, 2, 2\)"):
        build_method("at", config, tiny_cnn(), tiny_cnn((8, 16), 32), 8)


def test_non_map_layer_is_a_config_error():
    config = parse_method_config("at", {"student_layers": ["embed"], "teacher_layers": ["embed"]}, "methods.at")
    with pytest.raises(ConfigError, match=r"student_layers.*'embed'"):
        build_method("at", config, tiny_cnn(), tiny_cnn((8, 16), 32), 8)


def test_unknown_layer_is_a_config_error():
    config = parse_method_config("at", {"student_layers": ["nope"], "teacher_layers": ["features.0"]}, "methods.at")
    with pytest.raises(ConfigError, match="nope"):
        build_method("at", config, tiny_cnn(), tiny_cnn((8, 16), 32), 8)


def test_gradients_flow_to_student_not_teacher():
    torch.manual_seed(0)
    assert_gradients_flow("at", LAYERS, tiny_cnn(), tiny_cnn((8, 16), 32))


def test_one_step_terms_are_positive():
    torch.manual_seed(0)
    terms, _ = one_step("at", LAYERS, tiny_cnn(), tiny_cnn((8, 16), 32))
    assert terms["at"].item() > 0
