"""Deep mutual learning (Zhang et al. 2018): KL to the other networks by hand, peers trained and counted."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, build_method, parse_method_config
from distillation_studies.learning.methods.base import MethodSetup
from distillation_studies.learning.methods.dml import DeepMutualLearning, mutual_kl
from distillation_studies.learning.training import TrainConfig, forward_with_features, train
from tests.method_checks import assert_gradients_flow, tiny_batch, tiny_cnn, tiny_mlp


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def _softmax(row, temperature=1.0):
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _build(student, **settings):
    config = parse_method_config("dml", settings, "methods.dml")
    return build_method("dml", config, student, None, 8, "methods.dml")


def test_registered_with_paper_defaults_and_no_teacher():
    assert METHODS["dml"] is DeepMutualLearning
    config = parse_method_config("dml", {}, "methods.dml")
    assert (config.peers, config.temperature, config.seed_offset) == (1, 1.0, 1000)
    assert DeepMutualLearning.needs_teacher is False


def test_mutual_kl_is_kl_from_the_average_of_the_others():
    logits = [[[1.0, 2.0, 0.0]], [[0.5, -1.0, 2.0]], [[3.0, 0.0, 1.0]]]
    temperature = 2.0
    log_probs = [F.log_softmax(torch.tensor(z, dtype=torch.float64) / temperature, dim=1) for z in logits]
    probs = [_softmax(z[0], temperature) for z in logits]
    for k in range(3):
        others = [p for i, p in enumerate(probs) if i != k]
        average = [sum(col) / len(others) for col in zip(*others)]
        expected = temperature**2 * _kl(average, probs[k])
        assert mutual_kl(log_probs, k, temperature).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("peers", [1, 2])
def test_terms_match_the_formula_on_the_peers_outputs(peers):
    torch.manual_seed(0)
    student = tiny_mlp()
    method = _build(student, peers=peers, temperature=3.0)
    batch = tiny_batch()
    out = forward_with_features(student, batch.inputs, [])
    terms = method(out, None, batch)
    cohort = [out.logits.detach(), *[peer(batch.inputs).detach() for peer in method.peers]]
    probs = [F.softmax(z / 3.0, dim=1) for z in cohort]

    def kl_to_others(k):
        target = torch.stack([p for i, p in enumerate(probs) if i != k]).mean(0)
        return 9.0 * (target * (target.log() - probs[k].log())).sum(1).mean()

    assert set(terms) == {"ce", "mutual", "peer_ce", "peer_mutual"}
    assert torch.allclose(terms["ce"], F.cross_entropy(out.logits, batch.labels))
    assert torch.allclose(terms["mutual"], kl_to_others(0), atol=1e-6)
    assert torch.allclose(terms["peer_ce"], sum(F.cross_entropy(z, batch.labels) for z in cohort[1:]), atol=1e-6)
    assert torch.allclose(terms["peer_mutual"], sum(kl_to_others(k) for k in range(1, peers + 1)), atol=1e-6)


def test_targets_are_detached():
    torch.manual_seed(0)
    student = tiny_mlp()
    method = _build(student)
    batch = tiny_batch()
    terms = method(forward_with_features(student, batch.inputs, []), None, batch)
    terms["mutual"].backward()
    assert all(p.grad is None for p in method.peers.parameters())
    assert student.head.weight.grad is not None
    student.zero_grad()
    terms = method(forward_with_features(student, batch.inputs, []), None, batch)
    terms["peer_mutual"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in student.parameters())


def test_peers_are_built_from_the_student_spec_reproducibly_and_counted():
    torch.manual_seed(7)
    student = tiny_cnn()
    after_student = torch.get_rng_state()
    method = _build(student, peers=2)
    assert torch.equal(torch.get_rng_state(), after_student)  # the global stream is left as it was
    torch.manual_seed(7)
    again = _build(tiny_cnn(), peers=2)
    for a, b in zip(method.parameters(), again.parameters()):
        assert torch.equal(a, b)
    assert len(method.peers) == 2 and all(peer.spec == student.spec for peer in method.peers)
    assert not torch.equal(method.peers[0].head.weight, student.head.weight)
    assert not torch.equal(method.peers[0].head.weight, method.peers[1].head.weight)
    per_model = sum(p.numel() for p in student.parameters())
    assert sum(p.numel() for p in method.parameters()) == 2 * per_model


def test_needs_the_student_spec():
    config = parse_method_config("dml", {}, "methods.dml")
    with pytest.raises(ConfigError, match="student's model spec"):
        DeepMutualLearning(config, MethodSetup({}, {}, num_classes=10, num_train=8))


@pytest.mark.parametrize(
    "settings, key",
    [({"peers": 0}, "peers"), ({"temperature": 0}, "temperature"), ({"seed_offset": -1}, "seed_offset"), ({"alpha": 1}, "alpha")],
)
def test_config_errors_name_the_key(settings, key):
    with pytest.raises(ConfigError, match=rf"^methods\.dml\.{key}: "):
        parse_method_config("dml", settings, "methods.dml")


def test_gradients_flow_to_student_and_every_peer():
    assert_gradients_flow("dml", {"peers": 2}, tiny_cnn(), None)


def test_two_epochs_through_the_unchanged_loop_train_and_count_the_peers():
    torch.manual_seed(0)
    data = {"x": torch.randn(24, 1, 8, 8), "y": torch.randint(0, 10, (24,))}
    student = tiny_cnn()
    method = _build(student)
    before = [p.detach().clone() for p in method.peers.parameters()]
    result = train(student, method, data, data, TrainConfig(epochs=2, batch_size=8), seed=0, teacher=None)
    assert {"loss_ce", "loss_mutual", "loss_peer_ce", "loss_peer_mutual"} <= set(result.history[-1])
    assert result.method_parameters == sum(p.numel() for p in student.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, method.peers.parameters()))
