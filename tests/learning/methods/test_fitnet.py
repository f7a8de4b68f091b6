"""FitNets hints (Romero et al. 2015): weight * MSE(adapter(student feature), teacher feature)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.fitnet import FitNet
from tests.method_checks import assert_gradients_flow, tiny_cnn, tiny_mlp

LOGITS = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
LABELS = torch.tensor([0, 0])


def _fitnet(student_shape, teacher_shape, weight: float = 2.0, regressor: str = "conv") -> FitNet:
    config = parse_method_config(
        "fitnet", {"student_layer": "s", "teacher_layer": "t", "weight": weight, "regressor": regressor}, "methods.fitnet"
    )
    return FitNet(config, MethodSetup({"s": student_shape}, {"t": teacher_shape}, num_classes=2, num_train=2))


def _run(method: FitNet, student_feature, teacher_feature):
    batch = Batch(torch.zeros(2, 1), LABELS, torch.arange(2))
    return method(
        ModelOutputs(LOGITS, {"s": student_feature}), ModelOutputs(LOGITS.clone(), {"t": teacher_feature}), batch
    )


def test_conv_regressor_is_identity_when_shapes_match_and_hand_value():
    method = _fitnet((3,), (3,), weight=2.0)
    assert isinstance(method.adapter, nn.Identity)
    assert sum(p.numel() for p in method.parameters()) == 0
    student = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0, 3.0], [1.0, -1.0, 0.0]])
    # squared errors: 0, 4, 0, 1, 1, 0 -> mean 1.0; weight 2 -> 2.0
    terms = _run(method, student, teacher)
    assert set(terms) == {"ce", "hint"}
    assert terms["hint"].item() == pytest.approx(2.0, rel=1e-6)


def test_hint_is_zero_when_features_equal():
    method = _fitnet((2, 3, 3), (2, 3, 3), regressor="none")
    feature = torch.randn(2, 2, 3, 3)
    assert _run(method, feature, feature.clone())["hint"].item() == 0.0


def test_ce_term_is_plain_cross_entropy():
    method = _fitnet((3,), (3,))
    terms = _run(method, torch.zeros(2, 3), torch.zeros(2, 3))
    # -log softmax([1, 0])[0] = log(1 + e^-1) = 0.313262; -log softmax([0, 2])[0] = log(1 + e^2) = 2.126928
    assert terms["ce"].item() == pytest.approx((0.3132617 + 2.1269280) / 2, rel=1e-6)


def test_conv_1x1_adapter_when_channels_differ():
    method = _fitnet((2, 3, 3), (4, 3, 3), weight=1.5)
    adapter = method.adapter
    assert isinstance(adapter, nn.Conv2d)
    assert adapter.kernel_size == (1, 1)
    assert (adapter.in_channels, adapter.out_channels) == (2, 4)
    student = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    teacher = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    # A 1x1 conv without bias mixes channels per pixel: out[b, o, h, w] = sum_i W[o, i] * in[b, i, h, w].
    weight = adapter.weight.detach()[:, :, 0, 0]
    mapped = torch.einsum("oi,bihw->bohw", weight, student)
    expected = 1.5 * ((mapped - teacher) ** 2).mean()
    assert _run(method, student, teacher)["hint"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_linear_adapter_for_flat_features_of_different_width():
    method = _fitnet((3,), (5,))
    assert sum(p.numel() for p in method.parameters()) == 3 * 5 + 5
    hint = _run(method, torch.randn(2, 3), torch.randn(2, 5))["hint"]
    assert hint.dim() == 0 and hint.item() > 0


def test_spatial_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match=r"different spatial sizes"):
        _fitnet((2, 4, 4), (2, 2, 2))
    with pytest.raises(ConfigError, match=r"ConvReg regressor cannot map a student map of H x W 2 x 2 to a teacher map of 5 x 5"):
        _fitnet((2, 2, 2), (2, 5, 5), regressor="published")
    with pytest.raises(ConfigError, match=r"regressor: none needs equal feature shapes"):
        _fitnet((2, 2, 2), (3, 2, 2), regressor="none")


def test_published_regressor_is_conv_bn_relu_even_when_shapes_match():
    config = parse_method_config("fitnet", {"student_layer": "s", "teacher_layer": "t"}, "methods.fitnet")
    assert config.regressor == "published"
    method = FitNet(config, MethodSetup({"s": (2, 3, 3)}, {"t": (2, 3, 3)}, num_classes=2, num_train=2))
    conv, bn = method.adapter.conv, method.adapter.bn
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.bias is not None
    assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == 2
    # conv 2x2 + bias 2, BatchNorm weight and bias 2 each: trained and counted
    assert sum(p.numel() for p in method.parameters()) == 4 + 2 + 2 + 2


@pytest.mark.parametrize(
    ("student_shape", "teacher_shape", "kind", "kernel", "stride"),
    [
        ((2, 8, 8), (4, 4, 4), nn.Conv2d, (3, 3), (2, 2)),  # student twice the teacher's size
        ((2, 4, 4), (4, 8, 8), nn.ConvTranspose2d, (4, 4), (2, 2)),  # half
        ((2, 5, 5), (4, 3, 3), nn.Conv2d, (3, 3), (1, 1)),  # larger: kernel 1 + Hs - Ht
    ],
)
def test_published_regressor_follows_the_spatial_sizes_as_convreg(student_shape, teacher_shape, kind, kernel, stride):
    method = _fitnet(student_shape, teacher_shape, regressor="published")
    conv = method.adapter.conv
    assert type(conv) is kind and conv.kernel_size == kernel and conv.stride == stride
    out = method.adapter(torch.randn(3, *student_shape))
    assert out.shape == (3, *teacher_shape)


def test_published_regressor_hand_value_batch_norm_then_relu():
    """conv weight set to the identity: hint = mean((relu(batch-normalised student) - teacher)^2)."""
    method = _fitnet((1, 1, 2), (1, 1, 2), weight=1.0, regressor="published")
    with torch.no_grad():
        method.adapter.conv.weight.fill_(1.0)
        method.adapter.conv.bias.zero_()
    student = torch.tensor([[[[1.0, 3.0]]], [[[5.0, 7.0]]]])  # channel values 1, 3, 5, 7: mean 4, biased var 5
    teacher = torch.tensor([[[[0.0, 0.0]]], [[[1.0, 1.0]]]])
    eps = 1e-5
    normalised = [(v - 4.0) / (5.0 + eps) ** 0.5 for v in (1.0, 3.0, 5.0, 7.0)]
    guided = [max(v, 0.0) for v in normalised]
    expected = sum((g - t) ** 2 for g, t in zip(guided, [0.0, 0.0, 1.0, 1.0])) / 4
    assert _run(method, student, teacher)["hint"].item() == pytest.approx(expected, rel=1e-5)


def test_published_regressor_on_flat_features_and_a_batch_of_one():
    method = _fitnet((3,), (5,), regressor="published")
    assert method.adapter(torch.randn(4, 3)).shape == (4, 5)
    method.train()
    assert torch.isfinite(method.adapter(torch.randn(1, 3))).all()  # running statistics, no error


def test_gradients_flow_through_conv_adapter():
    torch.manual_seed(0)
    student, teacher = tiny_cnn(channels=(4, 4)), tiny_cnn(channels=(4, 8))
    config = {"student_layer": "features.1", "teacher_layer": "features.1"}
    assert_gradients_flow("fitnet", config, student, teacher)


def test_gradients_flow_mlp_student_cnn_teacher():
    torch.manual_seed(0)
    config = {"student_layer": "hidden.0", "teacher_layer": "embed.0"}
    assert_gradients_flow("fitnet", config, tiny_mlp(hidden=(16,)), tiny_cnn(embed=32))


def test_build_method_sizes_adapter_from_real_models():
    torch.manual_seed(0)
    config = parse_method_config(
        "fitnet", {"student_layer": "features.1", "teacher_layer": "features.1"}, "methods.fitnet"
    )
    method = build_method("fitnet", config, tiny_cnn(channels=(4, 4)), tiny_cnn(channels=(4, 8)), num_train=8)
    assert isinstance(method.adapter.conv, nn.Conv2d)
    assert (method.adapter.conv.in_channels, method.adapter.conv.out_channels) == (4, 8)


@pytest.mark.parametrize("regressor", ["published", "conv"])
def test_gradients_flow_through_each_regressor(regressor):
    torch.manual_seed(0)
    config = {"student_layer": "features.1", "teacher_layer": "features.1", "regressor": regressor}
    assert_gradients_flow("fitnet", config, tiny_cnn(channels=(4, 4)), tiny_cnn(channels=(4, 8)))


def test_unknown_regressor_is_named():
    with pytest.raises(ConfigError, match=r"methods\.fitnet\.regressor: unknown value 'linear'; allowed values: \['published', 'conv', 'none'\]"):
        parse_method_config("fitnet", {"student_layer": "a", "teacher_layer": "b", "regressor": "linear"}, "methods.fitnet")


def test_unknown_layer_names_available_layers():
    config = parse_method_config("fitnet", {"student_layer": "hidden.7", "teacher_layer": "embed.0"}, "methods.fitnet")
    with pytest.raises(ConfigError, match=r"methods\.fitnet\.student_layer: layer 'hidden\.7' does not exist in the student.*hidden\.0"):
        build_method("fitnet", config, tiny_mlp(), tiny_cnn(), num_train=8, where="methods.fitnet")


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"methods\.fitnet\.hint_weight: unknown key"):
        parse_method_config(
            "fitnet", {"student_layer": "a", "teacher_layer": "b", "hint_weight": 1.0}, "methods.fitnet"
        )


@pytest.mark.parametrize("missing", ["student_layer", "teacher_layer"])
def test_layers_are_required(missing):
    raw = {"student_layer": "a", "teacher_layer": "b"}
    del raw[missing]
    with pytest.raises(ConfigError, match=rf"methods\.fitnet\.{missing}: required"):
        parse_method_config("fitnet", raw, "methods.fitnet")


@pytest.mark.parametrize("weight", [0, -1.0])
def test_weight_must_be_positive(weight):
    with pytest.raises(ConfigError, match=r"methods\.fitnet\.weight: must be > 0"):
        parse_method_config("fitnet", {"student_layer": "a", "teacher_layer": "b", "weight": weight}, "methods.fitnet")
