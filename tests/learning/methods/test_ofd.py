"""OFD: margins, partial L2 values from the paper's equation, config checks, gradient flow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.ofd import OFDConfig, OverhaulFeatureDistillation, negative_mean, partial_l2
from distillation_studies.learning.training import predict
from tests.method_checks import assert_gradients_flow, one_step, tiny_batch, tiny_cnn

PRE_RELU = ["features.0.1", "features.1.1"]
LAYERS = {"student_layers": PRE_RELU, "teacher_layers": PRE_RELU}


def row(*values):
    """(1, 1, 1, W) map."""
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_negative_mean_is_the_per_channel_mean_of_negative_values():
    # channel 0 values -1, 3, -2, 4 -> E[x | x < 0] = -1.5; channel 1 has no negative value -> 0
    x = torch.tensor([[[[-1.0, 3.0]], [[1.0, 2.0]]], [[[-2.0, 4.0]], [[0.0, 5.0]]]])
    assert torch.allclose(negative_mean(x, chunk=1), torch.tensor([-1.5, 0.0]))


def test_partial_l2_matches_equation_by_hand():
    # margin -1.5: target [-2, -1, 0.5, -3] -> max(t, m) = [-1.5, -1, 0.5, -1.5]; source [-2, 0, 0, -1]
    # pos 0: S <= T <= 0 -> 0; pos 1: (0 + 1)^2 = 1; pos 2: T > 0 -> 0.5^2; pos 3: S > T -> 0.5^2
    margin = torch.tensor(-1.5).view(1, 1, 1, 1)
    assert partial_l2(row(-2, 0, 0, -1), row(-2, -1, 0.5, -3), margin).item() == pytest.approx(1.5)


def test_zero_when_student_matches_the_transformed_teacher_or_lies_below_it():
    margin = torch.full((1, 3, 1, 1), -0.7)
    target = torch.randn(2, 3, 4, 4)
    transformed = torch.maximum(target, margin)
    assert partial_l2(transformed.clone(), target, margin).item() == 0.0
    below = torch.where(transformed <= 0, transformed - 1.0, transformed)  # further below non-positive targets
    assert partial_l2(below, target, margin).item() == 0.0


def test_forward_decays_early_pairs_divides_by_batch_and_weights():
    config = OFDConfig(student_layers=("a", "b"), teacher_layers=("ta", "tb"), weight=0.5)
    setup = MethodSetup({"a": (1, 1, 4), "b": (1, 1, 4)}, {"ta": (1, 1, 4), "tb": (1, 1, 4)}, 10, 2)
    method = OverhaulFeatureDistillation(config, setup)
    method.connectors = nn.ModuleList([nn.Identity(), nn.Identity()])  # isolate the loss from r
    teacher_a = torch.cat([row(-2, -1, 0.5, -3), row(-4, -1, 1, 0)])
    teacher_b = torch.cat([row(0, 0, 0, 0), row(1, 1, 1, 1)])
    method.prepare(ModelOutputs(torch.zeros(2, 10), {"ta": teacher_a, "tb": teacher_b}), {})
    # margins: ta negatives -2, -1, -3, -4, -1 -> -2.2; tb none -> 0
    assert method.margin0.item() == pytest.approx(-2.2) and method.margin1.item() == 0.0
    student_a = torch.cat([row(-2, 0, 0, -1), row(-5, 0, 1, 0)])
    student_b = torch.cat([row(1, -1, 0, 2), row(1, 1, 1, 1)])
    # pair a, targets max(t, -2.2): [-2, -1, 0.5, -2.2], [-2.2, -1, 1, 0]
    #   sample 0: 0 + 1 + 0.25 + (-1 + 2.2)^2 = 1.25 + 1.44; sample 1: 0 + 1 + 0 + 0 = 1
    d_a = 1.25 + 1.44 + 1.0
    # pair b, targets [0, 0, 0, 0] and [1, 1, 1, 1]: 1 (S > T) + 0 (S <= T <= 0) + 0 + 4; sample 1 equal -> 0
    d_b = 5.0
    batch = Batch(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.arange(2))
    terms = method(
        ModelOutputs(torch.zeros(2, 10), {"a": student_a, "b": student_b}),
        ModelOutputs(torch.zeros(2, 10), {"ta": teacher_a, "tb": teacher_b}),
        batch,
    )
    assert set(terms) == {"ce", "ofd"}
    assert terms["ofd"].item() == pytest.approx(0.5 * (d_a / 2 + d_b) / 2, rel=1e-6)


def test_connector_is_1x1_conv_and_bn_to_teacher_channels():
    config = parse_method_config("ofd", LAYERS, "methods.ofd")
    method = build_method("ofd", config, tiny_cnn(), tiny_cnn((8, 16), 32), 8)
    conv, bn = method.connectors[0]
    assert conv.kernel_size == (1, 1) and (conv.in_channels, conv.out_channels) == (4, 8) and conv.bias is None
    assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == 8
    assert method.connectors[1][0].out_channels == 16


def test_prepare_sets_margins_from_teacher_training_features():
    torch.manual_seed(0)
    teacher = tiny_cnn((8, 16), 32)
    _, method = one_step("ofd", LAYERS, tiny_cnn(), teacher)
    feats = predict(teacher, tiny_batch().inputs, PRE_RELU).features
    for margin, layer in zip((method.margin0, method.margin1), PRE_RELU):
        assert torch.allclose(margin.flatten(), negative_mean(feats[layer]))
        assert (margin < 0).all()


def test_defaults_follow_the_official_cifar_code():
    assert parse_method_config("ofd", LAYERS, "methods.ofd").weight == 1e-3


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({}, "methods.ofd.student_layers"),
        ({"student_layers": PRE_RELU}, "methods.ofd.teacher_layers"),
        ({**LAYERS, "teacher_layers": PRE_RELU[:1]}, "methods.ofd.teacher_layers"),
        ({**LAYERS, "weight": 0}, "methods.ofd.weight"),
        ({**LAYERS, "weight": -1e-3}, "methods.ofd.weight"),
        ({**LAYERS, "margin": 0.0}, "methods.ofd.margin"),
    ],
)
def test_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_method_config("ofd", raw, "methods.ofd")


def test_spatial_mismatch_is_a_config_error_listing_shapes():
    config = parse_method_config(
        "ofd", {"student_layers": ["features.0.1"], "teacher_layers": ["features.1.1"]}, "methods.ofd"
    )
    with pytest.raises(ConfigError, match=r"teacher_layers.*\(4, 8, 8\).*\(16, 4, 4\)"):
        build_method("ofd", config, tiny_cnn(), tiny_cnn((8, 16), 32), 8)


def test_non_map_layer_is_a_config_error():
    config = parse_method_config("ofd", {"student_layers": ["embed.0"], "teacher_layers": ["embed.0"]}, "methods.ofd")
    with pytest.raises(ConfigError, match=r"student_layers.*'embed\.0'"):
        build_method("ofd", config, tiny_cnn(), tiny_cnn((8, 16), 32), 8)


def test_gradients_flow_to_student_and_connectors_not_teacher():
    torch.manual_seed(0)
    assert_gradients_flow("ofd", LAYERS, tiny_cnn(), tiny_cnn((8, 16), 32))
