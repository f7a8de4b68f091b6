"""Refined logit distillation (Sun et al., ICCV 2025): SCD and MCD checked by hand on explicit class sets."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.rld import RefinedLogitDistillation
from tests.method_checks import assert_gradients_flow, tiny_cnn

STUDENT = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 2.0, 0.5], [3.0, 0.0, 0.0, 1.0], [0.5, 1.0, -0.5, 0.0]]
TEACHER = [[4.0, 0.0, 1.0, -2.0], [0.5, 0.5, 1.5, 3.0], [6.0, -1.0, 2.0, 0.0], [1.0, -2.0, 0.0, 0.5]]
LABELS = [2, 3, 0, 1]
# Teacher ranks: sample 0's label (class 2, logit 1.0) is below class 0 only -> kept {1, 3};
# sample 1's label is the top class -> kept {0, 1, 2}; sample 2 likewise -> kept {1, 2, 3};
# sample 3's label (class 1, logit -2) is the teacher's lowest -> nothing kept, no MCD.
KEPT = [[1, 3], [0, 1, 2], [1, 2, 3], []]


def _softmax(values, temperature=1.0):
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def _hand_rld(temperature, alpha_temperature):
    """(SCD, MCD) from the paper's definitions, batch means, scaled by the temperatures squared."""
    scd = mcd = 0.0
    for s_row, t_row, y, kept in zip(STUDENT, TEACHER, LABELS, KEPT):
        p_s, p_t = _softmax(s_row, alpha_temperature), _softmax(t_row, alpha_temperature)
        top = max(range(len(t_row)), key=t_row.__getitem__)
        scd += _kl([p_t[top], 1 - p_t[top]], [p_s[y], 1 - p_s[y]])
        if kept:
            q_s = _softmax([s_row[j] for j in kept], temperature)
            q_t = _softmax([t_row[j] for j in kept], temperature)
            mcd += _kl(q_t, q_s)
    n = len(LABELS)
    return alpha_temperature**2 * scd / n, temperature**2 * mcd / n


def _rld(**settings) -> RefinedLogitDistillation:
    config = parse_method_config("rld", settings, "methods.rld")
    return RefinedLogitDistillation(config, MethodSetup({}, {}, num_classes=4, num_train=len(LABELS)))


def _run(method, student=STUDENT, teacher=TEACHER, epoch=20):
    method.start_epoch(epoch, 240)
    batch = Batch(torch.zeros(len(LABELS), 1), torch.tensor(LABELS), torch.arange(len(LABELS)))
    return method(
        ModelOutputs(torch.tensor(student, dtype=torch.float64)),
        ModelOutputs(torch.tensor(teacher, dtype=torch.float64)),
        batch,
    )


def test_registered_with_the_authors_defaults_and_refuses_unlabelled_samples():
    assert METHODS["rld"] is RefinedLogitDistillation
    config = parse_method_config("rld", {}, "methods.rld")
    assert (config.alpha, config.beta, config.temperature, config.alpha_temperature) == (1.0, 8.0, 4.0, 1.0)
    assert (config.warmup, config.ce_weight, config.logit_standardization) == (20, 1.0, False)
    use, reason = RefinedLogitDistillation.unlabelled_use(config)
    assert use == "refuse" and "true label" in reason


@pytest.mark.parametrize(("temperature", "alpha_temperature"), [(4.0, 1.0), (2.0, 3.0)])
def test_terms_match_hand_formula(temperature, alpha_temperature):
    terms = _run(_rld(alpha=0.5, beta=8.0, temperature=temperature, alpha_temperature=alpha_temperature))
    scd, mcd = _hand_rld(temperature, alpha_temperature)
    assert set(terms) == {"ce", "scd", "mcd"}
    assert terms["scd"].item() == pytest.approx(0.5 * scd, rel=1e-9)
    assert terms["mcd"].item() == pytest.approx(8.0 * mcd, rel=1e-9)
    ce = sum(-math.log(_softmax(r)[y]) for r, y in zip(STUDENT, LABELS)) / len(LABELS)
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-9)


def test_mcd_ignores_the_classes_the_teacher_ranks_at_or_above_the_label():
    # raising the student's logits of the masked classes (label and above) leaves MCD unchanged
    student = [[v + (5.0 if t >= t_row[y] else 0.0) for v, t in zip(s_row, t_row)] for s_row, t_row, y in zip(STUDENT, TEACHER, LABELS)]
    assert _run(_rld(), student=student)["mcd"].item() == pytest.approx(_run(_rld())["mcd"].item(), rel=1e-12)


def test_warmup_scales_distillation_terms_and_large_logits_stay_finite():
    full, tenth = _run(_rld()), _run(_rld(), epoch=2)
    for key in ("scd", "mcd"):
        assert tenth[key].item() == pytest.approx(full[key].item() / 10, rel=1e-9)
    assert tenth["ce"].item() == pytest.approx(full["ce"].item(), rel=1e-12)
    terms = _run(_rld(), [[100 * v for v in r] for r in STUDENT], [[300 * v for v in r] for r in TEACHER])
    assert all(torch.isfinite(t) for t in terms.values())


def test_logit_standardization_makes_an_affine_copy_of_the_teacher_perfect():
    terms = _run(_rld(logit_standardization=True), student=[[0.5 * v - 2.0 for v in r] for r in TEACHER])
    # MCD vanishes; SCD does not, since it compares the student's label with the teacher's top class
    assert terms["mcd"].item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("temperature", 0.0, "must be > 0"), ("alpha_temperature", -1.0, "must be > 0"), ("beta", -1.0, "must be >= 0"), ("warmup", 1.5, "expected int")],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"methods\.rld\.{key}: {message}"):
        parse_method_config("rld", {key: value}, "methods.rld")


def test_gradients_flow():
    torch.manual_seed(0)
    assert_gradients_flow("rld", {}, tiny_cnn(), tiny_cnn((8, 16), 32))
