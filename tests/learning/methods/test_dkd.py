"""Decoupled KD (Zhao et al., CVPR 2022): TCKD and NCKD checked against the paper's definitions by hand."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.dkd import DecoupledKD
from tests.method_checks import assert_gradients_flow, hand_smoothed_ce, hand_zscore, tiny_cnn

STUDENT = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 2.0, 0.5], [3.0, 0.0, 0.0, 1.0]]
TEACHER = [[4.0, 0.0, 1.0, -2.0], [0.5, 0.5, 1.5, 3.0], [6.0, -1.0, 2.0, 0.0]]
LABELS = [1, 3, 0]


def _softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def _hand_dkd(student, teacher, labels, temperature):
    """(TCKD, NCKD) from the paper: b = [p_t, 1 - p_t], p_hat_i = p_i / (1 - p_t) for i != t; T^2 * batch mean."""
    tckd = nckd = 0.0
    for s_row, t_row, y in zip(student, teacher, labels):
        p_s, p_t = _softmax(s_row, temperature), _softmax(t_row, temperature)
        b_s, b_t = [p_s[y], 1 - p_s[y]], [p_t[y], 1 - p_t[y]]
        hat_s = [p / (1 - p_s[y]) for i, p in enumerate(p_s) if i != y]
        hat_t = [p / (1 - p_t[y]) for i, p in enumerate(p_t) if i != y]
        tckd += _kl(b_t, b_s)
        nckd += _kl(hat_t, hat_s)
    n = len(labels)
    return temperature**2 * tckd / n, temperature**2 * nckd / n


def _hand_ce(logits, labels) -> float:
    return sum(-math.log(_softmax(row)[y]) for row, y in zip(logits, labels)) / len(labels)


def _dkd(**settings) -> DecoupledKD:
    config = parse_method_config("dkd", settings, "methods.dkd")
    return DecoupledKD(config, MethodSetup({}, {}, num_classes=4, num_train=len(LABELS)))


def _run(method, student=STUDENT, teacher=TEACHER, labels=LABELS, epoch=None):
    if epoch is not None:
        method.start_epoch(epoch, 240)
    batch = Batch(torch.zeros(len(labels), 1), torch.tensor(labels), torch.arange(len(labels)))
    return method(
        ModelOutputs(torch.tensor(student, dtype=torch.float64)),
        ModelOutputs(torch.tensor(teacher, dtype=torch.float64)),
        batch,
    )


def test_registered_with_paper_defaults():
    assert METHODS["dkd"] is DecoupledKD
    config = parse_method_config("dkd", {}, "methods.dkd")
    assert (config.alpha, config.beta, config.temperature, config.warmup) == (1.0, 8.0, 4.0, 20)
    assert (config.ce_weight, config.logit_standardization, config.label_smoothing) == (1.0, False, 0.0)


def test_label_smoothing_smooths_the_ce_term_only():
    eps = 0.2
    smoothed = _run(_dkd(label_smoothing=eps), epoch=20)
    plain = _run(_dkd(), epoch=20)
    assert smoothed["ce"].item() == pytest.approx(hand_smoothed_ce(STUDENT, LABELS, eps), rel=1e-9)
    assert smoothed["nckd"].item() == plain["nckd"].item() and smoothed["tckd"].item() == plain["tckd"].item()


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_terms_match_hand_formula_after_warmup(temperature):
    alpha, beta = 0.5, 8.0
    terms = _run(_dkd(alpha=alpha, beta=beta, temperature=temperature), epoch=20)
    tckd, nckd = _hand_dkd(STUDENT, TEACHER, LABELS, temperature)
    assert set(terms) == {"ce", "tckd", "nckd"}
    assert terms["tckd"].item() == pytest.approx(alpha * tckd, rel=1e-9)
    assert terms["nckd"].item() == pytest.approx(beta * nckd, rel=1e-9)
    assert terms["ce"].item() == pytest.approx(_hand_ce(STUDENT, LABELS), rel=1e-9)


def test_kd_decomposes_into_tckd_plus_weighted_nckd():
    # The paper's reformulation, per sample: KL(p^T || p^S) = TCKD + (1 - p_t^T) * NCKD
    temperature = 2.0
    for s_row, t_row, y in zip(STUDENT, TEACHER, LABELS):
        terms = _run(_dkd(temperature=temperature, beta=1.0), [s_row], [t_row], [y], epoch=20)
        full = temperature**2 * _kl(_softmax(t_row, temperature), _softmax(s_row, temperature))
        p_target = _softmax(t_row, temperature)[y]
        assert terms["tckd"].item() + (1 - p_target) * terms["nckd"].item() == pytest.approx(full, rel=1e-9)


def test_nckd_is_zero_when_non_target_distributions_match():
    # changing only the target logit leaves the non-target distribution unchanged
    teacher = [[v if i != y else v + 3.0 for i, v in enumerate(row)] for row, y in zip(STUDENT, LABELS)]
    terms = _run(_dkd(), teacher=teacher, epoch=20)
    assert terms["nckd"].item() == pytest.approx(0.0, abs=1e-12)
    assert terms["tckd"].item() > 0.01


def test_tckd_is_zero_when_target_probabilities_match():
    # permuting the non-target logits keeps p_t (and so b) but changes p_hat
    def permute(row, y):
        others = [v for i, v in enumerate(row) if i != y][::-1]
        out = list(others)
        out.insert(y, row[y])
        return out

    teacher = [permute(row, y) for row, y in zip(STUDENT, LABELS)]
    terms = _run(_dkd(), teacher=teacher, epoch=20)
    assert terms["tckd"].item() == pytest.approx(0.0, abs=1e-12)
    assert terms["nckd"].item() > 0.01


def test_warmup_scales_distillation_terms_linearly():
    full = _run(_dkd(), epoch=20)
    first = _run(_dkd(), epoch=1)
    tenth = _run(_dkd(), epoch=10)
    later = _run(_dkd(), epoch=200)
    for key in ("tckd", "nckd"):
        assert first[key].item() == pytest.approx(full[key].item() / 20, rel=1e-9)
        assert tenth[key].item() == pytest.approx(full[key].item() / 2, rel=1e-9)
        assert later[key].item() == pytest.approx(full[key].item(), rel=1e-9)
    assert first["ce"].item() == pytest.approx(full["ce"].item(), rel=1e-12)


def test_zero_warmup_means_full_weight_from_epoch_one():
    assert _run(_dkd(warmup=0), epoch=1)["nckd"].item() == pytest.approx(_run(_dkd(), epoch=20)["nckd"].item())


def test_logit_standardization_option_matches_hand_zscore():
    terms = _run(_dkd(logit_standardization=True, temperature=2.0), epoch=20)
    tckd, nckd = _hand_dkd([hand_zscore(r) for r in STUDENT], [hand_zscore(r) for r in TEACHER], LABELS, 2.0)
    assert terms["tckd"].item() == pytest.approx(tckd, rel=1e-6)
    assert terms["nckd"].item() == pytest.approx(8.0 * nckd, rel=1e-6)
    # an affinely rescaled copy of the teacher is a perfect student under standardisation
    student = [[0.5 * v - 2.0 for v in row] for row in TEACHER]
    terms = _run(_dkd(logit_standardization=True), student=student, epoch=20)
    assert terms["tckd"].item() == pytest.approx(0.0, abs=1e-10)
    assert terms["nckd"].item() == pytest.approx(0.0, abs=1e-10)


def test_large_logits_stay_finite():
    student = [[100.0 * v for v in row] for row in STUDENT]
    teacher = [[300.0 * v for v in row] for row in TEACHER]
    terms = _run(_dkd(temperature=1.0), student, teacher, epoch=20)
    assert all(torch.isfinite(t) for t in terms.values())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("temperature", 0.0, "must be > 0"),
        ("alpha", -1.0, "must be >= 0"),
        ("beta", -0.5, "must be >= 0"),
        ("warmup", -1, "must be >= 0"),
        ("ce_weight", -1.0, "must be >= 0"),
        ("warmup", 2.5, "expected int"),
        ("logit_standardization", 1, "expected bool"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"methods\.dkd\.{key}: {message}"):
        parse_method_config("dkd", {key: value}, "methods.dkd")


@pytest.mark.parametrize("settings", [{}, {"logit_standardization": True}])
def test_gradients_flow(settings):
    torch.manual_seed(0)
    assert_gradients_flow("dkd", settings, tiny_cnn(), tiny_cnn((8, 16), 32))
