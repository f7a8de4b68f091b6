"""DIST (Huang et al., NeurIPS 2022): inter/intra-class Pearson relations checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.dist import DIST
from tests.method_checks import assert_gradients_flow, hand_smoothed_ce, hand_zscore, tiny_cnn, run_on_logits

STUDENT = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 2.0, 0.5], [3.0, 0.0, 0.0, 1.0]]
TEACHER = [[4.0, 0.0, 1.0, -2.0], [0.5, 0.5, 1.5, 3.0], [6.0, -1.0, 2.0, 0.0]]
LABELS = [1, 3, 0]


def _softmax(row, temperature=1.0):
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _pearson(u, v, eps=1e-8):
    """As the authors' ``pearson_correlation``: eps added to the product of the centred norms."""
    mu, mv = sum(u) / len(u), sum(v) / len(v)
    cov = sum((a - mu) * (b - mv) for a, b in zip(u, v))
    return cov / (math.sqrt(sum((a - mu) ** 2 for a in u) * sum((b - mv) ** 2 for b in v)) + eps)


def _hand_dist(student, teacher, tau, eps=1e-8):
    """(L_inter, L_intra) = tau^2 * mean(1 - rho) over rows (samples) and over columns (classes)."""
    ys = [_softmax(r, tau) for r in student]
    yt = [_softmax(r, tau) for r in teacher]
    inter = sum(1 - _pearson(s, t, eps) for s, t in zip(ys, yt)) / len(ys)
    columns = range(len(ys[0]))
    intra = sum(1 - _pearson([r[j] for r in ys], [r[j] for r in yt], eps) for j in columns) / len(ys[0])
    return tau**2 * inter, tau**2 * intra


def _dist(**settings) -> DIST:
    config = parse_method_config("dist", settings, "methods.dist")
    return DIST(config, MethodSetup({}, {}, num_classes=4, num_train=len(LABELS)))


def _run(method, student=STUDENT, teacher=TEACHER, labels=LABELS):
    return run_on_logits(method, student, teacher, labels)


def test_registered_with_defaults():
    assert METHODS["dist"] is DIST
    config = parse_method_config("dist", {}, "methods.dist")
    # the authors' CIFAR-100 run: dist_t4 (tau 4, beta = gamma = 1) at kd_loss_weight 2, CE weight 1
    assert (config.beta, config.gamma, config.tau, config.ce_weight) == (2.0, 2.0, 4.0, 1.0)
    assert (config.logit_standardization, config.label_smoothing) == (False, 0.0)


@pytest.mark.parametrize(("beta", "gamma", "tau"), [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0)])
def test_terms_match_hand_formula(beta, gamma, tau):
    terms = _run(_dist(beta=beta, gamma=gamma, tau=tau))
    inter, intra = _hand_dist(STUDENT, TEACHER, tau)
    assert set(terms) == {"ce", "dist_inter", "dist_intra"}
    assert terms["dist_inter"].item() == pytest.approx(beta * inter, rel=1e-6)
    assert terms["dist_intra"].item() == pytest.approx(gamma * intra, rel=1e-6)
    ce = sum(-math.log(_softmax(r)[y]) for r, y in zip(STUDENT, LABELS)) / len(LABELS)
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-9)


def test_student_equal_to_teacher_leaves_only_the_eps_offset():
    terms = _run(_dist(tau=2.0, beta=1.0, gamma=1.0), student=TEACHER)
    inter, intra = _hand_dist(TEACHER, TEACHER, 2.0)  # 1 - n / (n + 1e-8) per row, not exactly 0
    assert terms["dist_inter"].item() == pytest.approx(inter, rel=1e-6)
    assert terms["dist_intra"].item() == pytest.approx(intra, rel=1e-6)
    assert 0 < terms["dist_inter"].item() < 1e-5


def test_pearson_denominator_is_offset_by_eps_as_the_authors_do():
    """A confident teacher at batch 8 whose labels leave classes 2 and 3 out: those classes' columns
    have centred norms near 1e-8, so '+ 1e-8' (the authors) and a clamp at 1e-8 differ (~0.9% here)."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(8) % 2
    teacher = 16.0 * torch.nn.functional.one_hot(labels, 4).double() + 0.5 * torch.randn(8, 4, generator=generator, dtype=torch.float64)
    student = torch.randn(8, 4, generator=generator, dtype=torch.float64)
    terms = _run(_dist(beta=1.0, gamma=1.0, tau=1.0), student.tolist(), teacher.tolist(), labels.tolist())
    _, offset = _hand_dist(student.tolist(), teacher.tolist(), 1.0, eps=1e-8)
    assert terms["dist_intra"].item() == pytest.approx(offset, rel=1e-6)

    def clamped(u, v):
        mu, mv = sum(u) / len(u), sum(v) / len(v)
        cov = sum((a - mu) * (b - mv) for a, b in zip(u, v))
        return cov / max(math.sqrt(sum((a - mu) ** 2 for a in u) * sum((b - mv) ** 2 for b in v)), 1e-8)

    ys, yt = [_softmax(r) for r in student.tolist()], [_softmax(r) for r in teacher.tolist()]
    clamp = sum(1 - clamped([r[j] for r in ys], [r[j] for r in yt]) for j in range(4)) / 4
    assert abs(offset - clamp) > 0.005 * abs(clamp)


def test_logit_standardization_switch_zscores_before_tau():
    terms = _run(_dist(logit_standardization=True))
    inter, intra = _hand_dist([hand_zscore(r) for r in STUDENT], [hand_zscore(r) for r in TEACHER], 4.0)
    assert terms["dist_inter"].item() == pytest.approx(2.0 * inter, rel=1e-6)
    assert terms["dist_intra"].item() == pytest.approx(2.0 * intra, rel=1e-6)


def test_label_smoothing_smooths_the_ce_term():
    eps = 0.3
    terms = _run(_dist(label_smoothing=eps))
    assert terms["ce"].item() == pytest.approx(hand_smoothed_ce(STUDENT, LABELS, eps), rel=1e-9)


def test_single_sample_batch_is_finite():
    terms = _run(_dist(), STUDENT[:1], TEACHER[:1], LABELS[:1])
    assert all(torch.isfinite(t) for t in terms.values())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tau", 0.0, "must be > 0"),
        ("beta", -1.0, "must be >= 0"),
        ("gamma", -1.0, "must be >= 0"),
        ("ce_weight", -0.1, "must be >= 0"),
        ("tau", "warm", "expected float"),
        ("label_smoothing", 1.5, r"must be in \[0.0, 1.0\]"),
        ("logit_standardization", "yes", "expected bool"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"methods\.dist\.{key}: {message}"):
        parse_method_config("dist", {key: value}, "methods.dist")


def test_gradients_flow():
    torch.manual_seed(0)
    assert_gradients_flow("dist", {}, tiny_cnn(), tiny_cnn((8, 16), 32))
