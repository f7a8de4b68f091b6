"""AB (Heo et al., AAAI 2019): the alternative activation-boundary loss element by element, stages, connectors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, parse_method_config
from distillation_studies.learning.methods.ab import ActivationBoundaries, ab_loss
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import ConvRegressor
from tests.method_checks import assert_gradients_flow, tiny_cnn

LAYERS = {"student_layers": ["features.0.1", "features.1.1"], "teacher_layers": ["features.0.1", "features.1.1"]}


def _element(s: float, t: float, margin: float = 1.0) -> float:
    """Eq. 6 of the paper read case by case."""
    if t > 0:  # teacher neuron on: the student must reach +margin
        return (s - margin) ** 2 if s <= margin else 0.0
    return (s + margin) ** 2 if s > -margin else 0.0  # off: the student must fall below -margin


def test_element_cases_by_hand():
    # student values against an "on" teacher (t = 2) and an "off" teacher (t = -1), margin 1, batch 1
    student = torch.tensor([[0.5, 1.5, -0.5, -2.0, 1.0, -1.0]])
    teacher = torch.tensor([[2.0, 2.0, -1.0, -1.0, 0.0, 3.0]])
    # on, s=0.5: (0.5-1)^2 = 0.25 | on, s=1.5: 0 | off, s=-0.5: (0.5)^2 = 0.25 | off, s=-2: 0
    # off (t = 0 counts as off), s=1: (2)^2 = 4 | on, s=-1: (-2)^2 = 4
    expected = 0.25 + 0 + 0.25 + 0 + 4 + 4
    assert ab_loss([student], [teacher], 1.0).item() == pytest.approx(expected)
    assert expected == sum(_element(s, t) for s, t in zip(student[0].tolist(), teacher[0].tolist()))


def test_layers_weigh_two_to_the_depth_and_sums_are_per_sample():
    generator = torch.Generator().manual_seed(0)
    s = [torch.randn(4, 2, 3, 3, generator=generator) for _ in range(3)]
    t = [torch.randn(4, 2, 3, 3, generator=generator) for _ in range(3)]
    per_layer = [sum(_element(a, b, 0.5) for a, b in zip(x.flatten().tolist(), y.flatten().tolist())) / 4 for x, y in zip(s, t)]
    expected = 0.25 * per_layer[0] + 0.5 * per_layer[1] + 1.0 * per_layer[2]  # 2^(i - n + 1), n = 3
    assert ab_loss(s, t, 0.5).item() == pytest.approx(expected, rel=1e-5)


def _ab(student_shapes, teacher_shapes, **settings) -> ActivationBoundaries:
    names = [f"l{i}" for i in range(len(student_shapes))]
    raw = {"student_layers": names, "teacher_layers": names, **settings}
    config = parse_method_config("ab", raw, "methods.ab")
    setup = MethodSetup(dict(zip(names, student_shapes)), dict(zip(names, teacher_shapes)), num_classes=2, num_train=2)
    return ActivationBoundaries(config, setup)


def test_connector_is_identity_when_channels_and_size_match_else_conv_bn_without_relu():
    method = _ab([(2, 4, 4), (2, 4, 4)], [(2, 4, 4), (3, 2, 2)])
    same, different = method.connectors
    assert isinstance(same, nn.Identity)
    assert isinstance(different, ConvRegressor) and isinstance(different.relu, nn.Identity)
    assert different.conv.stride == (2, 2)  # 4 x 4 -> 2 x 2: RepDistiller's 3x3 stride-2 ConvReg


def test_weight_scales_the_term_and_stages_follow_init_epochs():
    method = _ab([(1, 1, 2)], [(1, 1, 2)], weight=0.5, init_epochs=2)
    student = {"l0": torch.tensor([[[[0.5, -0.5]]]])}
    teacher = {"l0": torch.tensor([[[[1.0, -1.0]]]])}
    logits, labels = torch.zeros(1, 2), torch.tensor([0])
    batch = Batch(logits, labels, torch.arange(1))
    ab_value = 0.5 * ((0.5 - 1) ** 2 + (-0.5 + 1) ** 2)
    for epoch, (ce_on, ab_on) in {1: (False, True), 2: (False, True), 3: (True, False)}.items():
        method.start_epoch(epoch, 4)
        terms = method(ModelOutputs(logits, student), ModelOutputs(logits, teacher), batch)
        assert terms["ab"].item() == pytest.approx(ab_value if ab_on else 0.0)
        assert terms["ce"].item() == pytest.approx(0.6931472 if ce_on else 0.0, rel=1e-6)
    with pytest.raises(ConfigError, match=r"ab\.init_epochs: 2 AB-only epochs leave none of the 2"):
        method.start_epoch(1, 2)


def test_registered_with_repdistillers_settings():
    assert METHODS["ab"] is ActivationBoundaries
    config = parse_method_config("ab", LAYERS, "methods.ab")
    assert (config.weight, config.margin, config.init_epochs) == (3e-3, 1.0, 0)


@pytest.mark.parametrize(
    ("raw", "key"),
    [({"teacher_layers": ["a"]}, "student_layers"), ({**LAYERS, "margin": 0}, "margin"), ({**LAYERS, "init_epochs": -1}, "init_epochs")],
)
def test_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=rf"methods\.ab\.{key}"):
        parse_method_config("ab", raw, "methods.ab")


def test_gradients_flow_to_student_and_connectors():
    torch.manual_seed(0)
    assert_gradients_flow("ab", {**LAYERS, "weight": 1.0}, tiny_cnn(), tiny_cnn((8, 16), 32))
