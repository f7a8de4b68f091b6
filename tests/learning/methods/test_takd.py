"""Teacher-assistant KD (Mirzadeh et al. 2020): the assistant is trained by KD in prepare, then frozen."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distillation_studies.common.errors import ConfigError
from torch.utils.data import Dataset

from distillation_studies.learning.methods import METHODS, build_method, parse_method_config
from distillation_studies.learning.methods.base import DistillationMethod
from distillation_studies.learning.methods.shared import soft_target_kl
from distillation_studies.learning.methods.takd import TeacherAssistantKD, kd_terms
from distillation_studies.learning.models import build_model
from distillation_studies.learning.training import TrainConfig, forward_with_features, predict, train
from tests.method_checks import assert_gradients_flow, one_step, tiny_batch, tiny_cnn

ASSISTANT = {"name": "cnn", "channels": [6, 12], "embed": 24}


def _config(**settings):
    return parse_method_config("takd", {"assistant": ASSISTANT, **settings}, "methods.t")


def _data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, 1, 8, 8, generator=g), "y": torch.randint(0, 10, (n,), generator=g)}


def test_registered_with_defaults():
    assert METHODS["takd"] is TeacherAssistantKD
    config = _config()
    assert (config.assistant_epochs, config.assistant_lr, config.assistant_batch_size) == (10, 1e-3, 64)
    assert (config.temperature, config.alpha, config.assistant) == (4.0, 0.9, ASSISTANT)


@pytest.mark.parametrize(
    "settings, key",
    [
        ({}, "methods.t.assistant.name"),
        ({"assistant": {"name": "nope"}}, "methods.t.assistant.name"),
        ({"assistant": {"name": "cnn", "chanels": [4]}}, "methods.t.assistant.chanels"),
        ({"assistant": {"name": "cnn", "channels": [0]}}, "methods.t.assistant.channels"),
        ({"assistant": {"name": "cnn", "num_classes": 3}}, "methods.t.assistant.num_classes"),
        ({"assistant": ASSISTANT, "assistant_epochs": 0}, "methods.t.assistant_epochs"),
        ({"assistant": ASSISTANT, "alpha": 1.5}, "methods.t.alpha"),
    ],
)
def test_config_errors_name_the_key(settings, key):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        parse_method_config("takd", settings, "methods.t")


def test_prepare_trains_the_assistant_towards_the_teacher_then_freezes_it():
    torch.manual_seed(0)
    data = _data()
    student, teacher = tiny_cnn(), tiny_cnn(channels=(8, 16), embed=32)
    config = _config(assistant_epochs=3, assistant_lr=1e-2, assistant_batch_size=16, temperature=1.0)
    method = build_method("takd", config, student, teacher, 32, "methods.t")
    teacher_out = predict(teacher.eval(), data["x"])
    teacher_out.logits *= 5.0  # a confident teacher, so there is something to learn
    state = torch.get_rng_state()
    method.prepare(teacher_out, data)
    torch.set_rng_state(state)
    initial = build_model(method.assistant_spec)  # the same draw prepare made for the assistant's init

    def kl_to_teacher(model):
        return soft_target_kl(predict(model, data["x"]).logits, teacher_out.logits, 1.0).item()

    trained, untrained = kl_to_teacher(method.assistant), kl_to_teacher(initial)
    assert trained < 0.5 * untrained
    assert len(method.assistant_history) == 3
    assert not method.assistant.training
    assert all(not p.requires_grad for p in method.assistant.parameters())
    assert list(method.parameters()) == [] and "assistant" not in str(list(method.state_dict()))
    assert method.assistant_parameters == sum(p.numel() for p in initial.parameters())
    assert method.assistant.spec["in_shape"] == student.spec["in_shape"]


def test_terms_are_kd_towards_the_assistant_on_the_batch_inputs():
    torch.manual_seed(0)
    student, teacher = tiny_cnn(), tiny_cnn(channels=(8, 16), embed=32)
    terms, method = one_step("takd", {"assistant": ASSISTANT, "assistant_epochs": 1, "alpha": 0.7, "temperature": 2}, student, teacher)
    batch = tiny_batch()
    with torch.no_grad():
        student_logits = forward_with_features(student, batch.inputs, []).logits
        target = method.assistant(batch.inputs)
    assert set(terms) == {"ce", "kd"}
    assert torch.allclose(terms["ce"], 0.3 * F.cross_entropy(student_logits, batch.labels), atol=1e-6)
    assert torch.allclose(terms["kd"], 0.7 * soft_target_kl(student_logits, target, 2.0), atol=1e-6)
    assert all(p.grad is None for p in method.assistant.parameters())  # frozen: no gradient reaches it


def test_gradients_flow_to_the_student_not_the_teacher_or_assistant():
    assert_gradients_flow("takd", {"assistant": ASSISTANT, "assistant_epochs": 1}, tiny_cnn(), tiny_cnn(channels=(8, 16), embed=32))


def test_needs_the_teacher_outputs():
    method = build_method("takd", _config(), tiny_cnn(), tiny_cnn(), 8, "methods.t")
    with pytest.raises(ConfigError, match="teacher's outputs"):
        method.prepare(None, _data(8))


def test_two_epochs_through_the_unchanged_loop():
    torch.manual_seed(0)
    data = _data(24)
    student, teacher = tiny_cnn(), tiny_cnn(channels=(8, 16), embed=32)
    method = build_method("takd", _config(assistant_epochs=1, assistant_batch_size=12), student, teacher, 24, "methods.t")
    result = train(student, method, data, data, TrainConfig(epochs=2, batch_size=8), seed=0, teacher=teacher)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert {"loss_ce", "loss_kd"} <= set(result.history[-1])
    assert result.method_parameters == 0  # the frozen assistant is reported apart, as assistant_parameters
    assert method.assistant_parameters > 0


class _KDToFixedLogits(DistillationMethod):
    """The loop's view of the assistant's stage: KD against the teacher's logits, looked up by index."""

    needs_teacher = False

    def __init__(self, config, targets):
        super().__init__(config, None)
        self.targets = targets

    def forward(self, student, teacher, batch):
        return kd_terms(student.logits, self.targets[batch.indices], batch.labels, self.config.alpha, self.config.temperature)


class _Split(Dataset):
    """A Dataset of (x, y) with ``labels``, as a StreamedSplit reaches prepare."""

    def __init__(self, data):
        self.x, self.labels = data["x"], data["y"]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.x[i], self.labels[i]


@pytest.mark.parametrize("as_dataset", [False, True], ids=["tensors", "dataset"])
def test_assistant_is_what_the_one_loop_trains_with_the_same_seed(as_dataset):
    # prepare fits the assistant with methods.shared.fit, not the loop: same batches, steps and schedule,
    # so on the CPU the same weights as train() with the assistant's settings (cosine Adam, last epoch).
    torch.manual_seed(0)
    data = _data(40)
    student, teacher = tiny_cnn(), tiny_cnn(channels=(8, 16), embed=32)
    config = _config(assistant_epochs=3, assistant_lr=1e-2, assistant_batch_size=16, alpha=0.7, temperature=2.0)
    method = build_method("takd", config, student, teacher, 40, "methods.t")
    teacher_out = predict(teacher.eval(), data["x"])
    state = torch.get_rng_state()
    method.prepare(teacher_out, _Split(data) if as_dataset else data)
    torch.set_rng_state(state)
    reference = build_model(method.assistant_spec)  # the same draws prepare made: initial weights, then seed
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    schedule = TrainConfig(epochs=3, batch_size=16, lr=1e-2)
    result = train(reference, _KDToFixedLogits(config, teacher_out.logits), data, data, schedule, seed)
    reference.load_state_dict(result.last_state)
    trained = method.assistant.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in reference.state_dict().items())
    for ours, loop in zip(method.assistant_history, result.history, strict=True):
        # fit's rows hold the epoch and its loss terms; the loop's also carry lr and accuracies
        assert ours == {k: v for k, v in loop.items() if k == "epoch" or k.startswith("loss_")}
