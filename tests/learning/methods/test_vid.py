"""VID (Ahn et al. 2019): weight * sum_pairs mean(0.5 * (log sigma_c^2 + (t - mu(s))^2 / sigma_c^2))."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.vid import VariationalInformationDistillation
from tests.method_checks import assert_gradients_flow, tiny_cnn

LOGITS = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
LABELS = torch.tensor([0, 0])


def _config(**overrides):
    raw = {"student_layers": ["s"], "teacher_layers": ["t"], **overrides}
    return parse_method_config("vid", raw, "methods.vid")


def _vid(student_shapes: dict, teacher_shapes: dict, **overrides) -> VariationalInformationDistillation:
    config = _config(student_layers=list(student_shapes), teacher_layers=list(teacher_shapes), **overrides)
    return VariationalInformationDistillation(config, MethodSetup(student_shapes, teacher_shapes, 2, 2))


def _identity_regressor(pair, channels: int) -> None:
    with torch.no_grad():
        for index in (0, 2, 4):
            pair.regressor[index].weight.copy_(torch.eye(channels)[:, :, None, None])


def _run(method, student: dict, teacher: dict):
    return method(ModelOutputs(LOGITS, student), ModelOutputs(LOGITS, teacher), Batch(LOGITS, LABELS, torch.arange(2)))


def test_initial_variance_is_init_pred_var():
    method = _vid({"s": (2, 1, 1)}, {"t": (3, 1, 1)}, init_pred_var=5.0)
    assert torch.allclose(method.pairs[0].variance(), torch.full((3,), 5.0))


def test_hand_value_single_channel():
    method = _vid({"s": (1, 1, 2)}, {"t": (1, 1, 2)}, weight=2.0)
    _identity_regressor(method.pairs[0], 1)  # mu(s) = relu(relu(s)) = s for s >= 0
    student = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 3.0]]]])
    teacher = torch.tensor([[[[2.0, 0.0]]], [[[1.0, 3.0]]]])
    # squared errors 1, 4, 1, 0 with sigma^2 = 5: mean of 0.5 * (ln 5 + e / 5)
    expected = 2.0 * (0.5 * math.log(5.0) + 0.5 * (1 + 4 + 1 + 0) / 5 / 4)
    terms = _run(method, {"s": student}, {"t": teacher})
    assert set(terms) == {"ce", "vid"}
    assert terms["vid"].item() == pytest.approx(expected, rel=1e-5)
    assert terms["ce"].item() == pytest.approx((0.3132617 + 2.1269280) / 2, rel=1e-6)


def test_hand_value_per_channel_variance():
    method = _vid({"s": (2, 1, 2)}, {"t": (2, 1, 2)}, eps=1e-3)
    pair = method.pairs[0]
    _identity_regressor(pair, 2)
    with torch.no_grad():
        pair.alpha.copy_(torch.tensor([0.0, 1.0]))
    var = [math.log(1 + math.exp(0.0)) + 1e-3, math.log(1 + math.exp(1.0)) + 1e-3]  # softplus + eps
    student = torch.tensor([[[[1.0, 2.0]], [[0.0, 3.0]]]])
    teacher = torch.tensor([[[[2.0, 0.0]], [[1.0, 3.0]]]])
    squared = [[1.0, 4.0], [1.0, 0.0]]  # channel 0, channel 1
    expected = sum(0.5 * (math.log(var[c]) + e / var[c]) for c in range(2) for e in squared[c]) / 4
    assert _run(method, {"s": student}, {"t": teacher})["vid"].item() == pytest.approx(expected, rel=1e-5)


def test_pairs_are_summed_and_flat_features_are_1x1_maps():
    method = _vid({"s": (1, 2, 2), "e": (2,)}, {"t": (1, 1, 1), "u": (2,)}, weight=1.0)
    _identity_regressor(method.pairs[0], 1)
    _identity_regressor(method.pairs[1], 2)
    # pair 1: student (1, 2, 2) average-pooled to the teacher's 1x1: mean(1, 3, 5, 7) = 4 vs teacher 2
    conv_student = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
    conv_teacher = torch.tensor([[[[2.0]]]])
    # pair 2: flat (2,) features: errors (1 - 0)^2, (2 - 4)^2
    flat_student, flat_teacher = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    half_log5 = 0.5 * math.log(5.0)
    expected = (half_log5 + 0.5 * 4 / 5) + (half_log5 + 0.5 * (1 + 4) / 5 / 2)
    terms = method(
        ModelOutputs(LOGITS[:1], {"s": conv_student, "e": flat_student}),
        ModelOutputs(LOGITS[:1], {"t": conv_teacher, "u": flat_teacher}),
        Batch(LOGITS[:1], LABELS[:1], torch.arange(1)),
    )
    assert terms["vid"].item() == pytest.approx(expected, rel=1e-5)


def test_parameters_are_regressors_and_variances():
    method = _vid({"s": (4, 2, 2)}, {"t": (8, 2, 2)})
    # 1x1 convs without bias: 4*8 + 8*8 + 8*8, plus 8 alphas
    assert sum(p.numel() for p in method.parameters()) == 4 * 8 + 8 * 8 + 8 * 8 + 8


def test_gradients_flow_over_several_layers():
    torch.manual_seed(0)
    layers = ["features.0", "features.1", "embed"]
    config = {"student_layers": layers, "teacher_layers": layers}
    assert_gradients_flow("vid", config, tiny_cnn(), tiny_cnn((8, 16), 32))


def test_build_method_from_real_models():
    torch.manual_seed(0)
    config = parse_method_config("vid", {"student_layers": ["features.1"], "teacher_layers": ["features.1"]}, "m.vid")
    method = build_method("vid", config, tiny_cnn(), tiny_cnn((8, 16), 32), num_train=8)
    assert (method.pairs[0].regressor[0].in_channels, method.pairs[0].regressor[-1].out_channels) == (8, 16)


def test_defaults_follow_repdistiller():
    config = _config()
    assert (config.weight, config.init_pred_var, config.eps) == (1.0, 5.0, 1e-5)


@pytest.mark.parametrize("key", ["student_layers", "teacher_layers"])
def test_layer_lists_are_required(key):
    with pytest.raises(ConfigError, match=rf"methods\.vid\.{key}: required"):
        _config(**{key: []})


def test_layer_lists_must_pair_up():
    with pytest.raises(ConfigError, match=r"methods\.vid\.teacher_layers: must pair one-to-one"):
        _config(student_layers=["a", "b"], teacher_layers=["c"])


def test_layer_entries_must_be_strings():
    with pytest.raises(ConfigError, match=r"methods\.vid\.student_layers: every entry"):
        _config(student_layers=[1])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("weight", 0, "must be > 0"), ("eps", 0, "must be > 0"), ("init_pred_var", 1e-6, "must be > eps")],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"methods\.vid\.{key}: {message}"):
        _config(**{key: value})


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"methods\.vid\.student_layer: unknown key"):
        _config(student_layer="a")


def test_unsupported_feature_shape_is_a_config_error():
    with pytest.raises(ConfigError, match=r"vid\.teacher_layers \('t'\): needs a conv map"):
        _vid({"s": (2, 2, 2)}, {"t": (2, 2)})
