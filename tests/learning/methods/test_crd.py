"""Contrastive representation distillation: NCE value by hand, memory bank updates, sampling, config, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from distillation_studies.common.config import parse_dataclass
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.crd import (
    ContrastiveRepresentationDistillation,
    CRDConfig,
    memory_scores,
    sample_contrast_indices,
)
from distillation_studies.learning.training import forward_with_features, predict
from tests.method_checks import assert_gradients_flow, tiny_batch, tiny_cnn, tiny_mlp

LAYERS = {"student_layer": "embed.0", "teacher_layer": "embed.0"}


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def unit(v):
    n = math.sqrt(dot(v, v))
    return [x / n for x in v]


def anchored_nce(anchors, memory, tau, num_train):
    """Eqs. 18-19 by hand for num_train = 2: sample i's positive is row i, its one negative row 1 - i."""
    scores = [[math.exp(dot(anchors[i], memory[j]) / tau) for j in range(2)] for i in range(2)]
    z = num_train * sum(sum(row) for row in scores) / 4  # Z = M * mean over the 2 x (1 + K) drawn scores
    noise = 1 / num_train  # K / M with K = 1
    total = 0.0
    for i in range(2):
        p_pos, p_neg = scores[i][i] / z, scores[i][1 - i] / z
        total += math.log(p_pos / (p_pos + noise)) + math.log(1 - p_neg / (p_neg + noise))
    return -total / 2


def identity_heads(method):
    with torch.no_grad():
        for head in (method.embed_student, method.embed_teacher):
            head.linear.weight.copy_(torch.eye(2))
            head.linear.bias.zero_()


def test_crd_loss_matches_hand_computed_nce_and_updates_memory():
    setup = MethodSetup({"s": (2,)}, {"t": (2,)}, num_classes=2, num_train=2)
    method = ContrastiveRepresentationDistillation(CRDConfig("s", "t", feat_dim=2, nce_t=0.5), setup)
    assert method.negatives == 1  # 16384 clamped to num_train - 1
    identity_heads(method)
    memory_s, memory_t = [[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [-0.8, 0.6]]
    method.memory_student.copy_(torch.tensor(memory_s))
    method.memory_teacher.copy_(torch.tensor(memory_t))
    student_f, teacher_f = [[1.0, 0.0], [1.0, 1.0]], [[0.0, 2.0], [3.0, 4.0]]
    logits, labels = torch.zeros(2, 2), torch.tensor([0, 1])
    terms = method(
        ModelOutputs(logits, {"s": torch.tensor(student_f)}),
        ModelOutputs(logits, {"t": torch.tensor(teacher_f)}),
        Batch(logits, labels, torch.tensor([0, 1])),
    )
    s = [unit(v) for v in student_f]
    t = [unit(v) for v in teacher_f]
    expected = 0.8 * (anchored_nce(s, memory_t, 0.5, 2) + anchored_nce(t, memory_s, 0.5, 2))
    assert set(terms) == {"ce", "crd"}
    assert terms["crd"].item() == pytest.approx(expected, rel=1e-5)
    # each bank row moves to normalise(0.5 * old + 0.5 * new embedding)
    for bank, old, new in ((method.memory_student, memory_s, s), (method.memory_teacher, memory_t, t)):
        for i in range(2):
            moved = unit([0.5 * a + 0.5 * b for a, b in zip(old[i], new[i])])
            assert bank[i].tolist() == pytest.approx(moved, abs=1e-6)


def crd_step(student, teacher, batch, num_train, config=None):
    config = parse_method_config("crd", config or LAYERS, "methods.crd")
    method = build_method("crd", config, student, teacher, num_train)
    student_layers, teacher_layers = method.layers(config)
    teacher.eval().requires_grad_(False)
    teacher_out = predict(teacher, batch.inputs, teacher_layers)
    student_out = forward_with_features(student, batch.inputs, student_layers)
    before = {k: v.clone() for k, v in method.named_buffers()}
    terms = method(student_out, teacher_out, batch)
    torch.stack(list(terms.values())).sum().backward()
    return method, terms, before


def test_crd_memory_rows_change_only_at_batch_indices():
    torch.manual_seed(0)
    batch = tiny_batch(4)
    batch.indices = torch.tensor([3, 7, 11, 19])
    method, _, before = crd_step(tiny_cnn(), tiny_cnn((8, 16), 32), batch, num_train=20)
    assert method.negatives == 19
    touched = torch.zeros(20, dtype=torch.bool)
    touched[batch.indices] = True
    for name in ("memory_student", "memory_teacher"):
        after = getattr(method, name)
        assert after.shape == (20, 128)
        assert not torch.isclose(after[touched], before[name][touched]).all(dim=1).any()
        assert torch.equal(after[~touched], before[name][~touched])
        assert torch.allclose(after[touched].norm(dim=1), torch.ones(4), atol=1e-6)
        assert torch.equal(method.state_dict()[name], after)
    assert torch.isfinite(method.log_normaliser).all() and torch.isnan(before["log_normaliser"]).all()


def test_crd_banks_are_buffers_and_only_embed_heads_train():
    method = ContrastiveRepresentationDistillation(CRDConfig("s", "t"), MethodSetup({"s": (16,)}, {"t": (32,)}, 10, 50))
    assert {name for name, _ in method.named_buffers()} == {"memory_student", "memory_teacher", "log_normaliser"}
    assert {name for name, _ in method.named_parameters()} == {
        "embed_student.linear.weight",
        "embed_student.linear.bias",
        "embed_teacher.linear.weight",
        "embed_teacher.linear.bias",
    }
    assert method.embed_student.linear.in_features == 16 and method.embed_teacher.linear.out_features == 128


def test_crd_negatives_default_and_clamp():
    big = ContrastiveRepresentationDistillation(CRDConfig("s", "t", feat_dim=2), MethodSetup({"s": (2,)}, {"t": (2,)}, 10, 20000))
    assert big.negatives == 16384
    small = ContrastiveRepresentationDistillation(CRDConfig("s", "t"), MethodSetup({"s": (2,)}, {"t": (2,)}, 10, 8))
    assert small.negatives == 7
    with pytest.raises(ConfigError, match="crd"):
        ContrastiveRepresentationDistillation(CRDConfig("s", "t"), MethodSetup({"s": (2,)}, {"t": (2,)}, 10, 1))


def test_negative_sampling_skips_the_anchor_and_covers_the_others():
    indices = torch.tensor([0, 2, 4])
    torch.manual_seed(0)
    drawn = sample_contrast_indices(indices, num_train=5, negatives=400)
    assert drawn.shape == (3, 401)
    assert torch.equal(drawn[:, 0], indices)
    for row, anchor in zip(drawn, indices.tolist()):
        assert set(row[1:].tolist()) == set(range(5)) - {anchor}
    torch.manual_seed(0)
    assert torch.equal(sample_contrast_indices(indices, 5, 400), drawn)


@pytest.mark.parametrize(("num_train", "negatives", "feat_dim"), [(50, 3, 2), (6, 5, 4)])
def test_memory_scores_both_routes_are_the_dot_products(num_train, negatives, feat_dim):
    generator = torch.Generator().manual_seed(0)
    anchors = torch.randn(3, feat_dim, generator=generator)
    memory = torch.randn(num_train, feat_dim, generator=generator)
    contrast = torch.randint(0, num_train, (3, 1 + negatives), generator=generator)
    expected = [[dot(anchors[i].tolist(), memory[j].tolist()) for j in contrast[i].tolist()] for i in range(3)]
    assert memory_scores(anchors, memory, contrast).tolist() == [pytest.approx(row, abs=1e-5) for row in expected]


def test_crd_is_deterministic_given_torch_seed():
    def run(seed):
        torch.manual_seed(seed)
        batch = tiny_batch(4)
        batch.indices = torch.tensor([0, 5, 9, 2])
        method, terms, _ = crd_step(tiny_mlp(), tiny_cnn((8, 16), 32), batch, 12, {"student_layer": "hidden.0", "teacher_layer": "embed.0"})
        return terms["crd"].item(), method.memory_student.clone()

    first, second, other = run(3), run(3), run(4)
    assert first[0] == second[0] and torch.equal(first[1], second[1])
    assert first[0] != other[0]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"teacher_layer": "embed.0"}, "student_layer"),
        ({"student_layer": "embed.0"}, "teacher_layer"),
        ({**LAYERS, "beta": 0.0}, "beta"),
        ({**LAYERS, "feat_dim": 0}, "feat_dim"),
        ({**LAYERS, "negatives": 0}, "negatives"),
        ({**LAYERS, "negatives": 1.5}, "negatives"),
        ({**LAYERS, "nce_t": 0.0}, "nce_t"),
        ({**LAYERS, "momentum": 1.0}, "momentum"),
        ({**LAYERS, "momentum": -0.1}, "momentum"),
        ({**LAYERS, "nce_k": 10}, "nce_k"),
    ],
)
def test_crd_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=rf"methods\.crd\.{key}"):
        parse_dataclass(CRDConfig, raw, "methods.crd")


def test_crd_defaults_follow_repdistiller():
    config = parse_dataclass(CRDConfig, LAYERS, "methods.crd")
    assert (config.beta, config.feat_dim, config.negatives, config.nce_t, config.momentum) == (0.8, 128, 16384, 0.07, 0.5)


def test_crd_gradients_flow_to_student_and_both_embed_heads():
    assert_gradients_flow("crd", LAYERS, tiny_cnn(), tiny_cnn((8, 16), 32))
