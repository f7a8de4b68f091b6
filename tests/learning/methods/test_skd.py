"""Streamlined KD (Jeong et al., CVPR 2026): KL and the Mahalanobis Gram term against a numpy re-derivation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.skd import StreamlinedKD
from tests.method_checks import assert_gradients_flow, tiny_cnn, run_on_logits

STUDENT = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 2.0, 0.5], [3.0, 0.0, 0.0, 1.0], [0.2, 0.1, -0.3, 0.4], [-1.0, 1.5, 0.0, 2.0]]
TEACHER = [[4.0, 0.0, 1.0, -2.0], [0.5, 0.5, 1.5, 3.0], [6.0, -1.0, 2.0, 0.0], [1.0, 2.0, 0.0, 0.5], [0.0, 0.0, 3.0, 1.0]]
LABELS = [1, 3, 0, 2, 2]


def _softmax(row, temperature=1.0):
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_kl(student, teacher, temperature):
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = _softmax(s_row, temperature), _softmax(t_row, temperature)
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    return temperature**2 * total / len(student)


def _numpy_gram_term(student, teacher, tikhonov):
    """Row-wise Mahalanobis distances of the Gram difference, whitened by np.cov + lambda I (a linear solve)."""
    s, t = np.array(student), np.array(teacher)
    classes = s.shape[1]
    s = s / np.linalg.norm(s, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    diff = (s @ s.T - t @ t.T) / classes
    sigma = np.cov(diff, rowvar=False) + tikhonov * np.eye(len(diff))
    return float(np.mean([math.sqrt(row @ np.linalg.solve(sigma, row)) for row in diff]))


def _shares(teacher):
    probs = np.array([_softmax(row) for row in teacher])
    top1, per_class = probs.max(axis=1), probs.sum(axis=0)
    return np.mean(top1 <= np.percentile(top1, 50)), np.mean(per_class <= np.percentile(per_class, 50))


def _skd(**settings) -> StreamlinedKD:
    config = parse_method_config("skd", settings, "methods.skd")
    return StreamlinedKD(config, MethodSetup({}, {}, num_classes=4, num_train=len(LABELS)))


def _run(method, student=STUDENT, teacher=TEACHER, labels=LABELS):
    return run_on_logits(method, student, teacher, labels)


def test_registered_with_the_authors_defaults():
    assert METHODS["skd"] is StreamlinedKD
    config = parse_method_config("skd", {}, "methods.skd")
    assert (config.temperature, config.tikhonov, config.ce_weight, config.kd_weight) == (4.0, 0.1, 0.1, 0.9)
    assert StreamlinedKD.unlabelled_use(config)[0] == "learn"


@pytest.mark.parametrize(("temperature", "tikhonov"), [(4.0, 0.1), (2.0, 0.01)])
def test_terms_match_numpy_formulation(temperature, tikhonov):
    terms = _run(_skd(temperature=temperature, tikhonov=tikhonov, ce_weight=0.5, kd_weight=0.7))
    sample_share, class_share = _shares(TEACHER)
    assert (sample_share, class_share) == (0.6, 0.5)  # 3 of 5 samples, 2 of 4 classes at or below the median
    assert set(terms) == {"ce", "kd", "gram"}
    assert terms["kd"].item() == pytest.approx(0.7 * 0.6 * _hand_kl(STUDENT, TEACHER, temperature), rel=1e-9)
    assert terms["gram"].item() == pytest.approx(0.7 * 0.5 * _numpy_gram_term(STUDENT, TEACHER, tikhonov), rel=1e-5)
    ce = sum(-math.log(_softmax(r)[y]) for r, y in zip(STUDENT, LABELS)) / len(LABELS)
    assert terms["ce"].item() == pytest.approx(0.5 * ce, rel=1e-9)


def test_gram_term_ignores_logit_scale_and_vanishes_on_the_teacher():
    # the Gram matrix of L2-normalised logits does not change when a row is rescaled
    rescaled = [[3.0 * v for v in row] for row in TEACHER]
    terms = _run(_skd(), student=rescaled)
    assert terms["gram"].item() == pytest.approx(0.0, abs=1e-5)
    assert terms["kd"].item() > 0.01
    assert _run(_skd(), student=TEACHER)["kd"].item() == pytest.approx(0.0, abs=1e-12)


def test_one_sample_batch_has_no_gram_term():
    terms = _run(_skd(), STUDENT[:1], TEACHER[:1], LABELS[:1])
    assert terms["gram"].item() == 0.0 and all(torch.isfinite(t) for t in terms.values())


def test_gradient_is_finite_when_student_matches_teacher():
    student = torch.tensor(TEACHER, requires_grad=True)
    batch = Batch(torch.zeros(5, 1), torch.tensor(LABELS), torch.arange(5))
    terms = _skd()(ModelOutputs(student), ModelOutputs(torch.tensor(TEACHER)), batch)
    terms["gram"].backward()
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("temperature", 0.0, "must be > 0"), ("tikhonov", 0.0, "must be > 0"), ("kd_weight", -1.0, "must be >= 0"), ("ce_weight", "x", "expected float")],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"methods\.skd\.{key}: {message}"):
        parse_method_config("skd", {key: value}, "methods.skd")


def test_batch_memory_estimate_counts_the_b_by_b_matrices():
    setup = MethodSetup({}, {}, num_classes=100, num_train=10**6)
    assert StreamlinedKD.batch_elements(parse_method_config("skd", {}, "methods.skd"), setup, 1000) == 6 * 1000 * 1000


def test_gradients_flow():
    torch.manual_seed(0)
    assert_gradients_flow("skd", {}, tiny_cnn(), tiny_cnn((8, 16), 32))
