"""ReviewKD (Chen et al. 2021): ABF fusion deep to shallow, HCL per level, warm-up min(epoch / 20, 1)."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.reviewkd import ReviewKD, hcl_loss, warmup_factor
from tests.method_checks import assert_gradients_flow, tiny_cnn

BN = 1.0 / math.sqrt(1.0 + 1e-5)  # an eval-mode BatchNorm with fresh running stats scales by this
LOGITS = torch.tensor([[1.0, 0.0]])
LABELS = torch.tensor([0])


def _config(**overrides):
    raw = {"student_layers": ["s"], "teacher_layers": ["t"], **overrides}
    return parse_method_config("reviewkd", raw, "methods.reviewkd")


def _reviewkd(student_shapes: dict, teacher_shapes: dict, **overrides) -> ReviewKD:
    config = _config(student_layers=list(student_shapes), teacher_layers=list(teacher_shapes), **overrides)
    return ReviewKD(config, MethodSetup(student_shapes, teacher_shapes, 2, 1))


def _identity_abf(abf) -> None:
    """conv1 = 1x1 identity, conv2 = 3x3 kernel with only a centre 1 (single-channel maps)."""
    with torch.no_grad():
        abf.conv1[0].weight.fill_(1.0)
        abf.conv2[0].weight.zero_()
        abf.conv2[0].weight[0, 0, 1, 1] = 1.0


def _run(method, student: dict, teacher: dict):
    return method(ModelOutputs(LOGITS, student), ModelOutputs(LOGITS, teacher), Batch(LOGITS, LABELS, torch.arange(1)))


def test_hcl_hand_value_4x4():
    student = torch.zeros(1, 1, 4, 4)
    teacher = torch.zeros(1, 1, 4, 4)
    teacher[0, 0, :2, :2] = 4.0
    # full MSE 4*16/16 = 4; level 4 skipped (not < 4); 2x2 pool [[4,0],[0,0]] -> 16/4 = 4 (weight 1/2);
    # 1x1 pool 1 -> 1 (weight 1/4); normalised by 1 + 1/2 + 1/4
    expected = (4.0 + 0.5 * 4.0 + 0.25 * 1.0) / 1.75
    assert hcl_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_hcl_hand_value_8x8_uses_all_levels():
    student = torch.zeros(1, 1, 8, 8)
    teacher = torch.zeros(1, 1, 8, 8)
    teacher[0, 0, 0, 0] = 1.0
    # full 1/64; 4x4 cell 1/4 -> (1/16)/16; 2x2 cell 1/16 -> (1/256)/4; 1x1 1/64 -> 1/4096
    expected = (1 / 64 + 0.5 / 256 + 0.25 / 1024 + 0.125 / 4096) / (1 + 0.5 + 0.25 + 0.125)
    assert hcl_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_single_level_hand_value():
    method = _reviewkd({"s": (1, 2, 2)}, {"t": (1, 2, 2)}, weight=3.0).eval()
    _identity_abf(method.abfs[0])
    method.start_epoch(20, 40)
    student = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    teacher = torch.ones(1, 1, 2, 2)
    y = [v * BN * BN for v in (1.0, 2.0, 3.0, 4.0)]  # conv1 + BN, conv2 + BN
    full = sum((v - 1.0) ** 2 for v in y) / 4
    pooled = (sum(y) / 4 - 1.0) ** 2  # only the 1x1 level is smaller than 2x2
    expected = 3.0 * (full + 0.5 * pooled) / 1.5
    terms = _run(method, {"s": student}, {"t": teacher})
    assert set(terms) == {"ce", "reviewkd"}
    assert terms["reviewkd"].item() == pytest.approx(expected, rel=1e-5)
    assert terms["ce"].item() == pytest.approx(0.3132617, rel=1e-6)


def test_attention_fusion_hand_value():
    # shallow (1, 2, 2) map and deep flat (1,) feature, which counts as a (1, 1, 1) map
    method = _reviewkd({"s1": (1, 2, 2), "s2": (1,)}, {"t1": (1, 2, 2), "t2": (1,)}).eval()
    shallow, deep = method.abfs
    assert deep.att_conv is None and shallow.att_conv is not None
    _identity_abf(shallow)
    _identity_abf(deep)
    with torch.no_grad():  # attention logits 0 -> both gates sigmoid(0) = 1/2
        shallow.att_conv[0].weight.zero_()
        shallow.att_conv[0].bias.zero_()
    s1 = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    s2 = torch.tensor([[8.0]])
    y1, y2 = method.review([s1, s2[:, :, None, None]])
    z2 = 8.0 * BN
    assert y2.flatten().tolist() == pytest.approx([z2 * BN], rel=1e-6)
    z1 = [0.5 * v * BN + 0.5 * z2 for v in (1.0, 2.0, 3.0, 4.0)]  # residual upsampled to 2x2
    assert y1.flatten().tolist() == pytest.approx([v * BN for v in z1], rel=1e-6)


def test_warmup_factor_follows_epochs():
    assert warmup_factor(1, 20) == pytest.approx(0.05)
    assert warmup_factor(10, 20) == pytest.approx(0.5)
    assert warmup_factor(20, 20) == 1.0 and warmup_factor(35, 20) == 1.0
    assert warmup_factor(1, 0) == 1.0


def test_warmup_scales_the_loss_term():
    torch.manual_seed(0)
    method = _reviewkd({"s": (2, 2, 2)}, {"t": (3, 2, 2)}, warmup_epochs=20).eval()
    student, teacher = {"s": torch.randn(1, 2, 2, 2)}, {"t": torch.randn(1, 3, 2, 2)}
    values = {}
    for epoch in (5, 20, 30):
        method.start_epoch(epoch, 40)
        values[epoch] = _run(method, student, teacher)["reviewkd"].item()
    assert values[5] == pytest.approx(0.25 * values[20], rel=1e-6)
    assert values[30] == pytest.approx(values[20], rel=1e-6)
    assert _reviewkd({"s": (2, 2, 2)}, {"t": (3, 2, 2)}).warmup == pytest.approx(1 / 20)  # before start_epoch


def test_module_sizes():
    method = _reviewkd({"a": (4, 4, 4), "b": (8, 2, 2)}, {"c": (6, 4, 4), "d": (16, 2, 2)}, max_mid_channel=5)
    mid = min(5, 8)
    assert [abf.conv1[0].out_channels for abf in method.abfs] == [mid, mid]
    assert [abf.conv2[0].out_channels for abf in method.abfs] == [6, 16]  # teacher channels
    assert [abf.conv1[0].in_channels for abf in method.abfs] == [4, 8]


def test_spatial_mismatch_lists_shapes():
    message = r"reviewkd\.student_layers/teacher_layers: .*'s' \(4, 4, 4\) vs 't' \(16, 2, 2\)"
    with pytest.raises(ConfigError, match=message):
        _reviewkd({"s": (4, 4, 4)}, {"t": (16, 2, 2)})


def test_gradients_flow_over_three_levels():
    torch.manual_seed(0)
    layers = ["features.0", "features.1", "embed"]
    config = {"student_layers": layers, "teacher_layers": layers}
    assert_gradients_flow("reviewkd", config, tiny_cnn(), tiny_cnn((8, 16), 32))


def test_build_method_from_real_models():
    torch.manual_seed(0)
    layers = ["features.0", "features.1"]
    config = parse_method_config("reviewkd", {"student_layers": layers, "teacher_layers": layers}, "m.reviewkd")
    method = build_method("reviewkd", config, tiny_cnn(), tiny_cnn((8, 16), 32), num_train=8)
    assert [abf.conv2[0].out_channels for abf in method.abfs] == [8, 16]


def test_defaults():
    config = _config()
    assert (config.weight, config.warmup_epochs, config.max_mid_channel) == (1.0, 20, 512)


@pytest.mark.parametrize("key", ["student_layers", "teacher_layers"])
def test_layer_lists_are_required(key):
    with pytest.raises(ConfigError, match=rf"methods\.reviewkd\.{key}: required"):
        _config(**{key: []})


def test_layer_lists_must_pair_up():
    with pytest.raises(ConfigError, match=r"methods\.reviewkd\.teacher_layers: must pair one-to-one"):
        _config(student_layers=["a", "b"], teacher_layers=["c"])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("weight", 0, "must be > 0"), ("warmup_epochs", -1, "must be >= 0"), ("max_mid_channel", 0, "must be > 0")],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"methods\.reviewkd\.{key}: {message}"):
        _config(**{key: value})


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"methods\.reviewkd\.warmup: unknown key"):
        _config(warmup=5)
