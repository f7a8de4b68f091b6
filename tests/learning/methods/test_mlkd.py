"""Multi-level logit distillation (Jin et al., CVPR 2023), one view: instance, batch and class terms by hand."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.mlkd import MultiLevelLogitDistillation
from tests.learning.methods.test_skd import LABELS, STUDENT, TEACHER, _shares, _softmax
from tests.method_checks import assert_gradients_flow, tiny_cnn


def _hand_levels(temperature):
    """(instance, batch, class) at one temperature, each Gram entry summed explicitly."""
    ps = [_softmax(r, temperature) for r in STUDENT]
    pt = [_softmax(r, temperature) for r in TEACHER]
    n, c = len(ps), len(ps[0])
    instance = temperature**2 * sum(sum(t * math.log(t / s) for s, t in zip(a, b)) for a, b in zip(ps, pt)) / n

    def dot(u, v):
        return sum(x * y for x, y in zip(u, v))

    batch = sum((dot(pt[i], pt[j]) - dot(ps[i], ps[j])) ** 2 for i in range(n) for j in range(n)) / n
    columns_s = [[row[k] for row in ps] for k in range(c)]
    columns_t = [[row[k] for row in pt] for k in range(c)]
    klass = sum((dot(columns_t[a], columns_t[b]) - dot(columns_s[a], columns_s[b])) ** 2 for a in range(c) for b in range(c)) / c
    return instance, batch, klass


def _mlkd(**settings) -> MultiLevelLogitDistillation:
    config = parse_method_config("mlkd", settings, "methods.mlkd")
    return MultiLevelLogitDistillation(config, MethodSetup({}, {}, num_classes=4, num_train=len(LABELS)))


def _run(method, student=STUDENT):
    batch = Batch(torch.zeros(len(LABELS), 1), torch.tensor(LABELS), torch.arange(len(LABELS)))
    return method(
        ModelOutputs(torch.tensor(student, dtype=torch.float64)), ModelOutputs(torch.tensor(TEACHER, dtype=torch.float64)), batch
    )


def test_registered_with_the_authors_defaults():
    assert METHODS["mlkd"] is MultiLevelLogitDistillation
    config = parse_method_config("mlkd", {}, "methods.mlkd")
    assert (sorted(config.temperatures), config.ce_weight, config.kd_weight) == ([2.0, 3.0, 4.0, 5.0, 6.0], 0.1, 0.9)
    assert MultiLevelLogitDistillation.unlabelled_use(config)[0] == "learn"


@pytest.mark.parametrize("temperatures", [[4.0], [2.0, 3.0, 4.0, 5.0, 6.0]])
def test_terms_match_hand_formula(temperatures):
    terms = _run(_mlkd(temperatures=temperatures, kd_weight=0.5, ce_weight=0.25))
    levels = [_hand_levels(t) for t in temperatures]
    sample_share, class_share = _shares(TEACHER)
    assert (sample_share, class_share) == (0.6, 0.5)
    assert set(terms) == {"ce", "instance", "batch", "class"}
    assert terms["instance"].item() == pytest.approx(0.5 * 0.6 * sum(l[0] for l in levels), rel=1e-9)
    assert terms["batch"].item() == pytest.approx(0.5 * 0.6 * sum(l[1] for l in levels), rel=1e-9)
    assert terms["class"].item() == pytest.approx(0.5 * 0.5 * sum(l[2] for l in levels), rel=1e-9)
    ce = sum(-math.log(_softmax(r)[y]) for r, y in zip(STUDENT, LABELS)) / len(LABELS)
    assert terms["ce"].item() == pytest.approx(0.25 * ce, rel=1e-9)


def test_distillation_terms_vanish_on_the_teacher():
    terms = _run(_mlkd(), student=TEACHER)
    for key in ("instance", "batch", "class"):
        assert terms[key].item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("temperatures", [], "non-empty list"), ("temperatures", [4.0, 0.0], "temperatures > 0"), ("temperatures", 4.0, "expected a list"), ("kd_weight", -1.0, "must be >= 0")],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"methods\.mlkd\.{key}: .*{message}"):
        parse_method_config("mlkd", {key: value}, "methods.mlkd")


def test_batch_memory_estimate_counts_the_gram_matrices():
    setup = MethodSetup({}, {}, num_classes=100, num_train=10**6)
    config = parse_method_config("mlkd", {}, "methods.mlkd")
    assert MultiLevelLogitDistillation.batch_elements(config, setup, 64) == 5 * 2 * (64 * 64 + 100 * 100)


def test_gradients_flow():
    torch.manual_seed(0)
    assert_gradients_flow("mlkd", {}, tiny_cnn(), tiny_cnn((8, 16), 32))
