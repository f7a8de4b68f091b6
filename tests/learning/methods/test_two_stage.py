"""two_stage: label-free distillation for distill_epochs, then cross-entropy; phase switching and config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.kd import KnowledgeDistillation
from distillation_studies.learning.methods.two_stage import TwoStage
from distillation_studies.learning.training import TrainConfig, forward_with_features, predict, train
from tests.method_checks import assert_gradients_flow, tiny_batch, tiny_cnn

SETUP = MethodSetup({}, {}, num_classes=4, num_train=5)


def _two_stage(**settings) -> TwoStage:
    return TwoStage(parse_method_config("two_stage", settings, "methods.ts"), SETUP)


def _hand(labels=(0, 1, 2, 3, 1)):
    g = torch.Generator().manual_seed(0)
    student = ModelOutputs(torch.randn(5, 4, generator=g, dtype=torch.float64))
    teacher = ModelOutputs(torch.randn(5, 4, generator=g, dtype=torch.float64))
    return student, teacher, Batch(torch.zeros(5, 1), torch.tensor(labels), torch.arange(5))


def test_registered_with_kd_as_default_sub_method():
    assert METHODS["two_stage"] is TwoStage
    config = parse_method_config("two_stage", {"distill_epochs": 3}, "methods.ts")
    name, sub = config.distill
    assert (name, sub.temperature, sub.weights(), config.distill_epochs) == ("kd", 4.0, (0.1, 0.9), 3)


def test_phase_one_is_the_sub_methods_label_free_terms_then_plain_ce():
    method = _two_stage(distill={"method": "kd", "temperature": 2, "alpha": 0.5}, distill_epochs=2)
    student, teacher, batch = _hand()
    kd = KnowledgeDistillation(parse_method_config("kd", {"temperature": 2, "alpha": 0.5}, "kd"), SETUP)
    for epoch in (1, 2):
        method.start_epoch(epoch, 5)
        terms = method(student, teacher, batch)
        assert set(terms) == {"kd"}
        assert torch.allclose(terms["kd"], kd(student, teacher, batch)["kd"])
    for epoch in (3, 5):
        method.start_epoch(epoch, 5)
        terms = method(student, teacher, batch)
        assert set(terms) == {"ce"}
        assert torch.allclose(terms["ce"], F.cross_entropy(student.logits, batch.labels))


@pytest.mark.parametrize("distill", [{"method": "kd"}, {"method": "dkd", "warmup": 0}])
def test_phase_one_loss_and_gradients_do_not_depend_on_labels(distill):
    torch.manual_seed(0)
    student, teacher = tiny_cnn(), tiny_cnn(channels=(8, 16), embed=32)
    method = build_method("two_stage", parse_method_config("two_stage", {"distill": distill, "distill_epochs": 1}, "ts"), student, teacher, 8)
    batch = tiny_batch()
    teacher_out = predict(teacher, batch.inputs)
    method.start_epoch(1, 3)
    results = []
    for labels in (batch.labels, (batch.labels + 3) % 10):
        student.zero_grad()
        terms = method(forward_with_features(student, batch.inputs, []), teacher_out, Batch(batch.inputs, labels, batch.indices))
        loss = torch.stack(list(terms.values())).sum()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in student.parameters()]))
        assert "ce" not in terms
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


def test_sub_method_warmup_follows_phase_one():
    method = _two_stage(distill={"method": "dkd", "warmup": 4}, distill_epochs=4)
    method.start_epoch(2, 10)
    assert method.distill.epochs == 4 and method.distill.warmup_factor() == 0.5


@pytest.mark.parametrize("epochs", [3, 2])
def test_distill_epochs_must_leave_a_fine_tuning_epoch(epochs):
    method = _two_stage(distill_epochs=3)
    with pytest.raises(ConfigError, match=r"^methods\.ts\.distill_epochs: 3 leaves no fine-tuning epoch"):
        method.start_epoch(1, epochs)


@pytest.mark.parametrize(
    "settings, key",
    [
        ({}, "methods.ts.distill_epochs"),
        ({"distill_epochs": 0}, "methods.ts.distill_epochs"),
        ({"distill_epochs": 1.5}, "methods.ts.distill_epochs"),
        ({"distill_epochs": 2, "distill": {"method": "nope"}}, "methods.ts.distill.method"),
        ({"distill_epochs": 2, "distill": {"method": "two_stage", "distill_epochs": 1}}, "methods.ts.distill.method"),
        ({"distill_epochs": 2, "distill": {"method": "kd", "temprature": 3}}, "methods.ts.distill.temprature"),
        ({"distill_epochs": 2, "distill": {"method": "kd", "weight": 3}}, "methods.ts.distill.weight"),
        ({"distill_epochs": 2, "epochs": 3}, "methods.ts.epochs"),
    ],
)
def test_config_errors_name_the_key(settings, key):
    with pytest.raises(ConfigError, match=rf"^{key}[:.]? "):
        parse_method_config("two_stage", settings, "methods.ts")


def test_sub_method_without_teacher_is_refused_at_build():
    config = parse_method_config("two_stage", {"distill": {"method": "ce"}, "distill_epochs": 1}, "methods.ts")
    with pytest.raises(ConfigError, match=r"^methods\.ts: distill\.method: 'ce' does not use a teacher"):
        build_method("two_stage", config, tiny_cnn(), tiny_cnn(), 8, "methods.ts")


def test_nested_combine_sub_method_and_its_layers(monkeypatch):
    distill = {"method": "combine", "parts": {"kd": {"method": "kd"}, "hint": {"method": "fitnet", "student_layer": "embed.0", "teacher_layer": "embed.0"}}}
    config = parse_method_config("two_stage", {"distill": distill, "distill_epochs": 1}, "methods.ts")
    assert TwoStage.layers(config) == (["embed.0"], ["embed.0"])
    _assert_gradients_flow_in_phase(monkeypatch, {"distill": distill, "distill_epochs": 1}, phase_epoch=1)


@pytest.mark.parametrize("phase_epoch", [1, 2])
def test_gradients_flow_in_each_phase(monkeypatch, phase_epoch):
    _assert_gradients_flow_in_phase(monkeypatch, {"distill_epochs": 1}, phase_epoch)


def _assert_gradients_flow_in_phase(monkeypatch, settings, phase_epoch):
    """``assert_gradients_flow`` calls ``start_epoch(1, 1)``, which two_stage rightly refuses (no fine-tuning
    epoch), so the check runs with that call redirected to ``(phase_epoch, 2)`` of a 2-epoch schedule."""
    original = TwoStage.start_epoch
    monkeypatch.setattr(TwoStage, "start_epoch", lambda self, epoch, epochs: original(self, phase_epoch, 2))
    assert_gradients_flow("two_stage", settings, tiny_cnn(), tiny_cnn(channels=(8, 16), embed=32))


def test_two_phases_through_the_unchanged_loop():
    torch.manual_seed(0)
    data = {"x": torch.randn(24, 1, 8, 8), "y": torch.randint(0, 10, (24,))}
    student, teacher = tiny_cnn(), tiny_cnn(channels=(8, 16), embed=32)
    config = parse_method_config("two_stage", {"distill_epochs": 1}, "methods.ts")
    method = build_method("two_stage", config, student, teacher, 24, "methods.ts")
    result = train(student, method, data, data, TrainConfig(epochs=2, batch_size=8), seed=0, teacher=teacher)
    assert [set(k for k in row if k.startswith("loss_")) for row in result.history] == [
        {"loss_kd", "loss_total"},
        {"loss_ce", "loss_total"},
    ]
    with pytest.raises(ConfigError, match=r"^methods\.ts\.distill_epochs"):
        train(student, method, data, data, TrainConfig(epochs=1, batch_size=8), seed=0, teacher=teacher)
