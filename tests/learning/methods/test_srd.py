"""SRD (Miles & Mikolajczyk, AAAI 2024): projector, batch norm and log-sum distance re-derived in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.srd import SimpleRecipeDistillation
from tests.method_checks import assert_gradients_flow, tiny_cnn, tiny_mlp

STUDENT = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 2.0, 0.5], [3.0, 0.0, 0.0, 1.0]]
TEACHER = [[4.0, 0.0, 1.0, -2.0], [0.5, 0.5, 1.5, 3.0], [6.0, -1.0, 2.0, 0.0]]
LABELS = [1, 3, 0]
GENERATOR = torch.Generator().manual_seed(0)
STUDENT_MAP = torch.randn(3, 2, 2, 2, generator=GENERATOR, dtype=torch.float64)  # (B, C, H, W)
TEACHER_FLAT = torch.randn(3, 3, generator=GENERATOR, dtype=torch.float64)


def _softmax(row, temperature):
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _numpy_feature_term(method, student_map, teacher_flat, exponent):
    weight = method.projector.weight.detach().numpy()
    bias = method.projector.bias.detach().numpy()
    projected = student_map.numpy().mean(axis=(2, 3)) @ weight.T + bias

    def batch_norm(x):  # training mode: the batch's mean and biased variance, eps 1e-4
        return (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-4)

    return math.log((np.abs(batch_norm(projected) - batch_norm(teacher_flat.numpy())) ** exponent).sum())


def _srd(**settings) -> SimpleRecipeDistillation:
    config = parse_method_config("srd", {"student_layer": "s", "teacher_layer": "t", **settings}, "methods.srd")
    method = SimpleRecipeDistillation(config, MethodSetup({"s": (2, 2, 2)}, {"t": (3,)}, num_classes=4, num_train=3))
    return method.double()


def _run(method, student_map=STUDENT_MAP, teacher_flat=TEACHER_FLAT, n=3):
    batch = Batch(torch.zeros(n, 1), torch.tensor(LABELS[:n]), torch.arange(n))
    return method(
        ModelOutputs(torch.tensor(STUDENT[:n], dtype=torch.float64), {"s": student_map[:n]}),
        ModelOutputs(torch.tensor(TEACHER[:n], dtype=torch.float64), {"t": teacher_flat[:n]}),
        batch,
    )


def test_registered_with_the_authors_defaults():
    assert METHODS["srd"] is SimpleRecipeDistillation
    config = parse_method_config("srd", {"student_layer": "a", "teacher_layer": "b"}, "methods.srd")
    assert (config.feature_weight, config.exponent, config.kd_weight, config.temperature, config.ce_weight) == (2.0, 4.0, 1.0, 1.0, 1.0)
    assert SimpleRecipeDistillation.unlabelled_use(config)[0] == "learn"


@pytest.mark.parametrize(("exponent", "temperature"), [(4.0, 1.0), (2.0, 3.0)])
def test_terms_match_numpy_formulation(exponent, temperature):
    torch.manual_seed(0)
    method = _srd(exponent=exponent, temperature=temperature, feature_weight=1.5, kd_weight=0.5)
    assert (method.projector.in_features, method.projector.out_features) == (2, 3)
    terms = _run(method)
    assert set(terms) == {"ce", "feature", "kd"}
    expected = _numpy_feature_term(method, STUDENT_MAP, TEACHER_FLAT, exponent)
    assert terms["feature"].item() == pytest.approx(1.5 * expected, rel=1e-9)
    kl = sum(
        sum(t * math.log(t / s) for s, t in zip(_softmax(s_row, temperature), _softmax(t_row, temperature)))
        for s_row, t_row in zip(STUDENT, TEACHER)
    )
    assert terms["kd"].item() == pytest.approx(0.5 * temperature**2 * kl / 3, rel=1e-9)


def test_one_sample_batch_skips_the_feature_term():
    terms = _run(_srd(), n=1)
    assert terms["feature"].item() == 0.0 and all(torch.isfinite(t) for t in terms.values())


def test_build_method_sizes_the_projector_from_pooled_channels():
    torch.manual_seed(0)
    config = parse_method_config("srd", {"student_layer": "features.1", "teacher_layer": "features.1"}, "methods.srd")
    method = build_method("srd", config, tiny_cnn(), tiny_cnn((8, 16), 32), num_train=8)
    assert isinstance(method.projector, nn.Linear) and (method.projector.in_features, method.projector.out_features) == (8, 16)
    assert sum(p.numel() for p in method.parameters()) == 8 * 16 + 16  # the norms have no affine parameters


@pytest.mark.parametrize(("key", "value", "message"), [("exponent", 0.0, "must be > 0"), ("feature_weight", -1.0, "must be >= 0")])
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"methods\.srd\.{key}: {message}"):
        parse_method_config("srd", {"student_layer": "a", "teacher_layer": "b", key: value}, "methods.srd")


@pytest.mark.parametrize(
    ("student", "layers"),
    [(tiny_cnn, {"student_layer": "features.1", "teacher_layer": "features.1"}), (tiny_mlp, {"student_layer": "hidden.0", "teacher_layer": "embed"})],
)
def test_gradients_flow_through_the_projector(student, layers):
    torch.manual_seed(0)
    assert_gradients_flow("srd", layers, student(), tiny_cnn((8, 16), 32))
