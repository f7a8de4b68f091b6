"""FSP: Gram-matrix values from the paper's equation, adapters, two-stage option, config checks, gradients."""

from __future__ import annotations

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.fsp import FlowOfSolutionProcedure, FSPConfig, fsp_loss, fsp_matrix
from tests.method_checks import assert_gradients_flow, one_step, tiny_cnn

LAYERS = {"student_layers": ["features.0", "features.1"], "teacher_layers": ["features.0", "features.1"]}
STUDENT_NARROW, TEACHER_WIDE = (4, 8), (8, 16)


def fmap(*channels):
    """(1, C, 1, W) map from per-channel rows."""
    return torch.tensor([[list(c)] for c in channels], dtype=torch.float32).unsqueeze(0)


def scalar_map(value):
    return torch.tensor([[[[float(value)]]]])


# student: F1 one channel [1, 2]; F2 channels [3, 0] and [1, 1]
S1, S2 = fmap([1, 2]), fmap([3, 0], [1, 1])
# teacher: F1 [0, 2]; F2 channels [1, 1] and [0, 0]
T1, T2 = fmap([0, 2]), fmap([1, 1], [0, 0])


def test_fsp_matrix_matches_equation_by_hand():
    # G_{1,j} = sum_positions F1 * F2_j / (h * w): (1*3 + 2*0)/2 = 1.5, (1*1 + 2*1)/2 = 1.5
    assert torch.allclose(fsp_matrix(S1, S2), torch.tensor([[[1.5, 1.5]]]))
    assert torch.allclose(fsp_matrix(T1, T2), torch.tensor([[[1.0, 0.0]]]))


def test_fsp_matrix_pools_the_larger_map_to_the_smaller():
    first = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])  # 2x2 -> average 3
    assert fsp_matrix(first, scalar_map(2)).item() == pytest.approx(6.0)
    assert fsp_matrix(scalar_map(2), first).item() == pytest.approx(6.0)


def test_fsp_loss_matches_equation_by_hand():
    # mean over the 1x2 matrix of (G_S - G_T)^2 = ((1.5 - 1)^2 + (1.5 - 0)^2) / 2 = 1.25
    assert fsp_loss([S1, S2], [T1, T2]).item() == pytest.approx(1.25)


def run_forward(method, student_features, teacher_features, epoch=1, epochs=1):
    method.start_epoch(epoch, epochs)
    batch = Batch(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), torch.arange(1))
    return method(
        ModelOutputs(torch.zeros(1, 10), student_features), ModelOutputs(torch.zeros(1, 10), teacher_features), batch
    )


def three_layer_method(beta=2.0, stage1_epochs=0):
    config = FSPConfig(("a", "b", "c"), ("ta", "tb", "tc"), beta=beta, stage1_epochs=stage1_epochs)
    shapes = {"a": (1, 1, 2), "b": (2, 1, 2), "c": (1, 1, 1)}
    setup = MethodSetup(shapes, {"t" + k: v for k, v in shapes.items()}, 10, 1)
    return FlowOfSolutionProcedure(config, setup)


THREE_STUDENT = {"a": S1, "b": S2, "c": scalar_map(2)}
THREE_TEACHER = {"ta": T1, "tb": T2, "tc": scalar_map(1)}
# second matrix, b pooled to 1x1: student b -> (1.5, 1), c = 2: G = (3, 2); teacher b -> (1, 0), c = 1: G = (1, 0)
# mean((3 - 1)^2, (2 - 0)^2) = 4
THREE_EXPECTED = 1.25 + 4.0


def test_forward_sums_consecutive_pairs_weighted_by_beta():
    terms = run_forward(three_layer_method(beta=2.0), THREE_STUDENT, THREE_TEACHER)
    assert set(terms) == {"ce", "fsp"}
    assert terms["fsp"].item() == pytest.approx(2.0 * THREE_EXPECTED)
    assert terms["ce"].item() > 0


def test_two_stage_schedule_follows_the_paper():
    method = three_layer_method(beta=2.0, stage1_epochs=1)
    stage1 = run_forward(method, THREE_STUDENT, THREE_TEACHER, epoch=1, epochs=3)
    assert stage1["ce"].item() == 0.0
    assert stage1["fsp"].item() == pytest.approx(2.0 * THREE_EXPECTED)
    stage2 = run_forward(method, THREE_STUDENT, THREE_TEACHER, epoch=2, epochs=3)
    assert stage2["fsp"].item() == 0.0
    assert stage2["ce"].item() > 0


def test_stage1_covering_all_epochs_is_a_config_error():
    method = three_layer_method(stage1_epochs=2)
    with pytest.raises(ConfigError, match=r"fsp\.stage1_epochs"):
        method.start_epoch(1, 2)


def test_adapter_maps_student_channels_before_the_gram_matrix():
    config = FSPConfig(("a", "b"), ("ta", "tb"), beta=1.0, adapter=True)
    setup = MethodSetup({"a": (1, 1, 2), "b": (1, 1, 2)}, {"ta": (2, 1, 2), "tb": (1, 1, 2)}, 10, 1)
    method = FlowOfSolutionProcedure(config, setup)
    assert isinstance(method.adapters[0], torch.nn.Conv2d) and isinstance(method.adapters[1], torch.nn.Identity)
    with torch.no_grad():
        method.adapters[0].weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
    # adapted a = [2, 4] and [-1, -2]; b = [3, 1]: G_S = ((6 + 4)/2, (-3 - 2)/2) = (5, -2.5)
    # teacher a = [1, 0], [0, 1]; b = [2, 2]: G_T = (1, 1); mean(16, 12.25) = 14.125
    terms = run_forward(
        method, {"a": fmap([1, 2]), "b": fmap([3, 1])}, {"ta": fmap([1, 0], [0, 1]), "tb": fmap([2, 2])}
    )
    assert terms["fsp"].item() == pytest.approx(14.125)


def test_zero_when_student_features_equal_teacher_features():
    x1, x2 = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)
    assert fsp_loss([x1, x2], [x1.clone(), x2.clone()]).item() == pytest.approx(0.0, abs=1e-12)


def test_defaults():
    config = parse_method_config("fsp", LAYERS, "methods.fsp")
    assert (config.beta, config.adapter, config.stage1_epochs) == (50.0, False, 0)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({}, "methods.fsp.student_layers"),
        ({"student_layers": ["features.0"], "teacher_layers": ["features.0"]}, "methods.fsp.student_layers"),
        ({**LAYERS, "teacher_layers": ["features.0", "features.1", "features.1"]}, "methods.fsp.teacher_layers"),
        ({**LAYERS, "beta": 0}, "methods.fsp.beta"),
        ({**LAYERS, "beta": -1.0}, "methods.fsp.beta"),
        ({**LAYERS, "adapter": "yes"}, "methods.fsp.adapter"),
        ({**LAYERS, "stage1_epochs": -1}, "methods.fsp.stage1_epochs"),
        ({**LAYERS, "lambda": 1.0}, "methods.fsp.lambda"),
    ],
)
def test_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_method_config("fsp", raw, "methods.fsp")


def test_channel_mismatch_without_adapter_is_a_config_error():
    config = parse_method_config("fsp", LAYERS, "methods.fsp")
    with pytest.raises(ConfigError, match=r"teacher_layers.*4 channels.*8.*adapter"):
        build_method("fsp", config, tiny_cnn(STUDENT_NARROW), tiny_cnn(TEACHER_WIDE, 32), 8)


def test_non_map_layer_is_a_config_error():
    config = parse_method_config(
        "fsp", {"student_layers": ["features.0", "embed"], "teacher_layers": ["features.0", "embed"]}, "methods.fsp"
    )
    with pytest.raises(ConfigError, match=r"student_layers.*'embed'"):
        build_method("fsp", config, tiny_cnn(TEACHER_WIDE), tiny_cnn(TEACHER_WIDE, 32), 8)


def test_gradients_flow_with_equal_channels():
    torch.manual_seed(0)
    assert_gradients_flow("fsp", LAYERS, tiny_cnn(TEACHER_WIDE), tiny_cnn(TEACHER_WIDE, 32))


def test_gradients_flow_to_student_and_adapters_not_teacher():
    torch.manual_seed(0)
    assert_gradients_flow("fsp", {**LAYERS, "adapter": True}, tiny_cnn(STUDENT_NARROW), tiny_cnn(TEACHER_WIDE, 32))
    terms, method = one_step("fsp", {**LAYERS, "adapter": True}, tiny_cnn(STUDENT_NARROW), tiny_cnn(TEACHER_WIDE, 32))
    assert len(list(method.parameters())) == 2 and terms["fsp"].item() > 0
