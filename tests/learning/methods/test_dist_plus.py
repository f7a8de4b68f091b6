"""DIST+ (Huang et al., TPAMI 2025): logit and feature correlation distances against np.corrcoef."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.dist_plus import DISTPlus
from tests.method_checks import assert_gradients_flow, tiny_cnn, tiny_mlp

STUDENT = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 2.0, 0.5], [3.0, 0.0, 0.0, 1.0]]
TEACHER = [[4.0, 0.0, 1.0, -2.0], [0.5, 0.5, 1.5, 3.0], [6.0, -1.0, 2.0, 0.0]]
LABELS = [1, 3, 0]
GENERATOR = torch.Generator().manual_seed(0)
STUDENT_MAP = torch.randn(3, 3, 1, 2, generator=GENERATOR, dtype=torch.float64)  # (B, C, H, W)
TEACHER_MAP = torch.randn(3, 3, 1, 2, generator=GENERATOR, dtype=torch.float64)


def _rho(u, v) -> float:
    return float(np.corrcoef(u, v)[0, 1])


def _softmax(row, tau):
    exps = [math.exp(v / tau) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_terms(student_map, teacher_map, tau):
    ys, yt = np.array([_softmax(r, tau) for r in STUDENT]), np.array([_softmax(r, tau) for r in TEACHER])
    inter = np.mean([1 - _rho(ys[i], yt[i]) for i in range(len(ys))])
    intra = np.mean([1 - _rho(ys[:, j], yt[:, j]) for j in range(ys.shape[1])])
    s, t = student_map.numpy(), teacher_map.numpy()
    batch, _, height, width = s.shape
    positions = [(h, w) for h in range(height) for w in range(width)]
    channel = np.mean([1 - _rho(s[b, :, h, w], t[b, :, h, w]) for b in range(batch) for h, w in positions])
    spatial = np.mean([1 - _rho(s[:, :, h, w].sum(1), t[:, :, h, w].sum(1)) for h, w in positions])
    return tau**2 * inter, tau**2 * intra, channel, spatial


def _dist_plus(**settings) -> DISTPlus:
    config = parse_method_config("dist_plus", {"student_layer": "s", "teacher_layer": "t", **settings}, "methods.dist_plus")
    return DISTPlus(config, MethodSetup({"s": (3, 1, 2)}, {"t": (3, 1, 2)}, num_classes=4, num_train=3))


def _run(method, student_map=STUDENT_MAP, teacher_map=TEACHER_MAP):
    batch = Batch(torch.zeros(3, 1), torch.tensor(LABELS), torch.arange(3))
    return method(
        ModelOutputs(torch.tensor(STUDENT, dtype=torch.float64), {"s": student_map}),
        ModelOutputs(torch.tensor(TEACHER, dtype=torch.float64), {"t": teacher_map}),
        batch,
    )


def test_registered_with_defaults():
    assert METHODS["dist_plus"] is DISTPlus
    config = parse_method_config("dist_plus", {"student_layer": "a", "teacher_layer": "b"}, "methods.dist_plus")
    assert (config.beta, config.gamma, config.tau, config.ce_weight) == (1.0, 1.0, 1.0, 1.0)
    assert (config.channel_weight, config.spatial_weight) == (1.0, 1.0)
    assert DISTPlus.unlabelled_use(config)[0] == "learn"


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_terms_match_numpy_correlations(tau):
    method = _dist_plus(tau=tau, beta=2.0, gamma=0.5, channel_weight=3.0, spatial_weight=0.25)
    assert isinstance(method.adapter, nn.Identity)
    terms = _run(method)
    inter, intra, channel, spatial = _hand_terms(STUDENT_MAP, TEACHER_MAP, tau)
    assert set(terms) == {"ce", "dist_inter", "dist_intra", "channel", "spatial"}
    assert terms["dist_inter"].item() == pytest.approx(2.0 * inter, rel=1e-9)
    assert terms["dist_intra"].item() == pytest.approx(0.5 * intra, rel=1e-9)
    assert terms["channel"].item() == pytest.approx(3.0 * channel, rel=1e-9)
    assert terms["spatial"].item() == pytest.approx(0.25 * spatial, rel=1e-9)


def test_feature_terms_reward_correlation_not_anticorrelation():
    """The sign the paper's 1 - rho gives: 0 for the teacher's own map, 2 for its negation."""
    same = _run(_dist_plus(), student_map=TEACHER_MAP.clone())
    opposite = _run(_dist_plus(), student_map=-TEACHER_MAP)
    for key in ("channel", "spatial"):
        assert same[key].item() == pytest.approx(0.0, abs=1e-12)
        assert opposite[key].item() == pytest.approx(2.0, rel=1e-12)


def test_adapter_maps_student_channels_to_the_teacher():
    torch.manual_seed(0)
    config = parse_method_config("dist_plus", {"student_layer": "features.1", "teacher_layer": "features.1"}, "methods.dist_plus")
    method = build_method("dist_plus", config, tiny_cnn(), tiny_cnn((8, 16), 32), num_train=8)
    assert isinstance(method.adapter, nn.Conv2d) and (method.adapter.in_channels, method.adapter.out_channels) == (8, 16)


@pytest.mark.parametrize(("key", "value", "message"), [("tau", 0.0, "must be > 0"), ("channel_weight", -1.0, "must be >= 0")])
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"methods\.dist_plus\.{key}: {message}"):
        parse_method_config("dist_plus", {"student_layer": "a", "teacher_layer": "b", key: value}, "methods.dist_plus")


def test_layers_are_required():
    with pytest.raises(ConfigError, match=r"methods\.dist_plus\.student_layer: required"):
        parse_method_config("dist_plus", {}, "methods.dist_plus")


@pytest.mark.parametrize(
    ("student", "layers"),
    [(tiny_cnn, {"student_layer": "features.1", "teacher_layer": "features.1"}), (tiny_mlp, {"student_layer": "hidden.0", "teacher_layer": "embed"})],
)
def test_gradients_flow_through_the_adapter(student, layers):
    torch.manual_seed(0)
    assert_gradients_flow("dist_plus", layers, student(), tiny_cnn((8, 16), 32))
