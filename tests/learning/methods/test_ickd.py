"""ICKD (Liu et al., ICCV 2021): row-normalised inter-channel Gram matrices, against a loop-by-loop formula."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.ickd import InterChannelCorrelationKD, ickd_loss
from tests.method_checks import assert_gradients_flow, tiny_cnn

LAYERS = {"student_layer": "features.1", "teacher_layer": "features.1"}


def _hand_icc(feature: list) -> list:
    """Per sample: G[c][d] = sum over positions of F[c][p] * F[d][p], each row divided by its L2 norm."""
    out = []
    for sample in feature:
        flat = [[v for row in channel for v in row] for channel in sample]
        gram = [[sum(a * b for a, b in zip(fc, fd)) for fd in flat] for fc in flat]
        out.append([[g / math.sqrt(sum(x * x for x in row)) for g in row] for row in gram])
    return out


def _hand_ickd(student: list, teacher: list) -> float:
    gs, gt = _hand_icc(student), _hand_icc(teacher)
    batch, channels = len(gs), len(gs[0])
    total = sum((a - b) ** 2 for s, t in zip(gs, gt) for rs, rt in zip(s, t) for a, b in zip(rs, rt))
    return total / (batch * channels)


def _features(seed: int, shape=(2, 3, 2, 2)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_loss_matches_loop_formula():
    student, teacher = _features(0), _features(1, (2, 3, 4, 4))  # H x W may differ: G is C x C
    assert ickd_loss(student, teacher).item() == pytest.approx(_hand_ickd(student.tolist(), teacher.tolist()), rel=1e-9)


def test_loss_ignores_each_samples_scale_and_is_zero_on_equal_features():
    student, teacher = _features(2), _features(3)
    scaled = student * torch.tensor([3.0, 0.5], dtype=torch.float64)[:, None, None, None]
    assert ickd_loss(scaled, teacher).item() == pytest.approx(ickd_loss(student, teacher).item(), rel=1e-9)
    assert ickd_loss(teacher, teacher.clone()).item() == 0.0


def test_method_embeds_the_student_with_conv_then_batch_norm():
    config = parse_method_config("ickd", {"student_layer": "s", "teacher_layer": "t", "weight": 2.0}, "methods.ickd")
    method = InterChannelCorrelationKD(config, MethodSetup({"s": (2, 2, 2)}, {"t": (3, 2, 2)}, num_classes=2, num_train=2))
    conv, bn = method.embed
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.bias is None
    assert isinstance(bn, nn.BatchNorm2d) and (conv.in_channels, conv.out_channels) == (2, 3)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    with torch.no_grad():
        conv.weight.copy_(weight[:, :, None, None])
    student, teacher = _features(4, (2, 2, 2, 2)).float(), _features(5, (2, 3, 2, 2)).float()
    # by hand: channel mix, then per channel (x - batch mean) / sqrt(biased batch var + 1e-5)
    mixed = [[[[sum(weight[o][i].item() * student[b, i, h, w].item() for i in range(2)) for w in range(2)]
               for h in range(2)] for o in range(3)] for b in range(2)]
    normalised = []
    for b in range(2):
        sample = []
        for o in range(3):
            values = [mixed[bb][o][h][w] for bb in range(2) for h in range(2) for w in range(2)]
            mean = sum(values) / len(values)
            var = sum((v - mean) ** 2 for v in values) / len(values)
            sample.append([[(mixed[b][o][h][w] - mean) / math.sqrt(var + 1e-5) for w in range(2)] for h in range(2)])
        normalised.append(sample)
    logits, labels = torch.zeros(2, 2), torch.tensor([0, 1])
    terms = method(ModelOutputs(logits, {"s": student}), ModelOutputs(logits, {"t": teacher}), Batch(logits, labels, torch.arange(2)))
    assert set(terms) == {"ce", "ickd"}
    assert terms["ickd"].item() == pytest.approx(2.0 * _hand_ickd(normalised, teacher.tolist()), rel=1e-4)
    assert terms["ce"].item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_registered_with_the_authors_cifar_weight():
    assert METHODS["ickd"] is InterChannelCorrelationKD
    config = parse_method_config("ickd", LAYERS, "methods.ickd")
    assert (config.weight, config.ce_weight, config.label_smoothing) == (2.5, 1.0, 0.0)


def test_flat_layer_is_a_config_error():
    config = parse_method_config("ickd", {"student_layer": "embed", "teacher_layer": "features.1"}, "methods.ickd")
    with pytest.raises(ConfigError, match=r"methods\.ickd: ickd\.student_layer: needs a conv feature map"):
        build_method("ickd", config, tiny_cnn(), tiny_cnn((8, 16), 32), num_train=8, where="methods.ickd")


@pytest.mark.parametrize(("raw", "key"), [({"teacher_layer": "a"}, "student_layer"), ({**LAYERS, "weight": 0}, "weight")])
def test_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=rf"methods\.ickd\.{key}"):
        parse_method_config("ickd", raw, "methods.ickd")


def test_gradients_flow_to_student_and_embedding():
    torch.manual_seed(0)
    assert_gradients_flow("ickd", LAYERS, tiny_cnn(), tiny_cnn((8, 16), 32))
