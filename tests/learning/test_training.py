"""The one training loop, on a tiny stratified subset of scikit-learn's digits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distillation_studies.common.config import parse_dataclass
from distillation_studies.learning.data import SplitConfig, load_embedded, normalisation_stats, normalise, stratified_split
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import MethodSetup
from distillation_studies.learning.methods.ce import CrossEntropy
from distillation_studies.learning.training import TrainConfig, accuracy, predict, train
from tests.method_checks import tiny_cnn, tiny_mlp

CONFIG = TrainConfig(epochs=3, batch_size=32, lr=3e-3)
FITNET = {"student_layer": "hidden.0", "teacher_layer": "embed.0"}


@pytest.fixture(scope="module")
def data():
    full = load_embedded("digits")
    subset = {"x": full["x"][:300], "y": full["y"][:300]}
    splits = stratified_split(subset, SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=0))
    stats = normalisation_stats(splits["train"]["x"])
    return {name: {"x": normalise(s["x"], stats), "y": s["y"]} for name, s in splits.items()}


@pytest.fixture(scope="module")
def teacher(data):
    torch.manual_seed(123)
    model = tiny_cnn(channels=(4, 8), embed=32)
    method = build_method("ce", parse_method_config("ce", {}, "teacher"), model, None, len(data["train"]["y"]))
    train(model, method, data["train"], data["val"], TrainConfig(epochs=2, batch_size=32, lr=3e-3), seed=0)
    return model.eval()


def _run(data, name, config, seed=0, teacher=None, init_seed=0, train_config=CONFIG, augment=None):
    torch.manual_seed(init_seed)
    student = tiny_mlp(hidden=(16,))
    method = build_method(name, parse_method_config(name, config, name), student, teacher, len(data["train"]["y"]))
    result = train(student, method, data["train"], data["val"], train_config, seed=seed, teacher=teacher, augment=augment)
    return result, student, method


def _same_states(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_history_has_every_loss_term_and_val_accuracy(data):
    result, _, _ = _run(data, "ce", {})
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    for row in result.history:
        assert set(row) == {"epoch", "loss_ce", "loss_total", "train_accuracy", "val_accuracy", "val_loss", "lr"}
        assert row["loss_total"] == pytest.approx(row["loss_ce"])
        assert 0.0 <= row["val_accuracy"] <= 1.0
    assert result.history[-1]["loss_ce"] < result.history[0]["loss_ce"]
    assert result.method_parameters == 0
    assert result.wall_time_s > 0


class RecordingCE(CrossEntropy):
    """Two loss terms (CE and a small logit penalty) that record, per batch, their values, the batch size
    and the gradient each term received from the loop's backpropagated loss."""

    scale = 1.0  # multiplies both terms: 0 leaves every weight where it started

    def __init__(self, config, setup):
        super().__init__(config, setup)
        self.batches: list[dict] = []

    def forward(self, student, teacher, batch):
        terms = {
            "ce": self.scale * F.cross_entropy(student.logits, batch.labels),
            "logit_l2": self.scale * 1e-2 * student.logits.pow(2).mean(),
        }
        record = {"epoch": self.epoch, "size": len(batch.labels), "values": {k: float(v.detach()) for k, v in terms.items()}, "grads": {}}
        for name, term in terms.items():
            term.register_hook(lambda grad, name=name, record=record: record["grads"].__setitem__(name, float(grad)))
        self.batches.append(record)
        return terms


def _recording(data, scale=1.0):
    torch.manual_seed(0)
    student = tiny_mlp(hidden=(16,))
    method = RecordingCE(parse_method_config("ce", {}, "ce"), MethodSetup({}, {}, 10, len(data["train"]["y"])))
    method.scale = scale
    return student, method


def test_backpropagated_loss_is_the_sum_of_the_logged_terms_and_epoch_means_weigh_batches_by_size(data):
    student, method = _recording(data)
    size = len(data["train"]["y"])
    assert size % CONFIG.batch_size != 0  # a smaller last batch, so weighting by size matters
    result = train(student, method, data["train"], data["val"], CONFIG, seed=0)
    # d(loss)/d(term) = 1 for every term on every batch: the loss stepped on is the plain sum of the terms.
    assert all(record["grads"] == {"ce": 1.0, "logit_l2": 1.0} for record in method.batches)
    for row in result.history:
        batches = [b for b in method.batches if b["epoch"] == row["epoch"]]
        assert sum(b["size"] for b in batches) == size
        for name in ("ce", "logit_l2"):
            weighted = sum(b["values"][name] * b["size"] for b in batches) / size
            unweighted = sum(b["values"][name] for b in batches) / len(batches)
            assert row[f"loss_{name}"] == pytest.approx(weighted, rel=1e-5)
            assert abs(weighted - unweighted) > 1e-4 * abs(weighted)  # the two means really differ here
        assert row["loss_total"] == pytest.approx(row["loss_ce"] + row["loss_logit_l2"], rel=1e-6)


def test_best_epoch_is_the_first_of_tied_epochs(data):
    # Zero loss: no gradient, no step moves a weight (Adam, no decay), so every epoch scores the same.
    student, method = _recording(data, scale=0.0)
    result = train(student, method, data["train"], data["val"], CONFIG, seed=0)
    accuracies = [row["val_accuracy"] for row in result.history]
    assert len(set(accuracies)) == 1 and len(accuracies) == 3
    assert result.best_epoch == 1


def test_epoch_rows_hold_training_accuracy_validation_loss_and_the_epochs_starting_rate(data):
    # Zero loss: the weights never move, so every epoch's figures are those of the initial model,
    # computed here directly; the rate follows the cosine schedule's closed form at each epoch's first step.
    student, method = _recording(data, scale=0.0)
    with torch.no_grad():
        train_logits, val_logits = student(data["train"]["x"]), student(data["val"]["x"])
    expected_train = (train_logits.argmax(1) == data["train"]["y"]).float().mean().item()
    expected_val_loss = F.cross_entropy(val_logits, data["val"]["y"]).item()
    steps = -(-len(data["train"]["y"]) // CONFIG.batch_size)
    result = train(student, method, data["train"], data["val"], CONFIG, seed=0)
    for row in result.history:
        assert row["train_accuracy"] == pytest.approx(expected_train, abs=1e-6)
        assert row["val_loss"] == pytest.approx(expected_val_loss, rel=1e-5)
        step = (row["epoch"] - 1) * steps
        assert row["lr"] == pytest.approx(CONFIG.lr * 0.5 * (1 + math.cos(math.pi * step / (CONFIG.epochs * steps))))
    assert result.history[0]["lr"] == CONFIG.lr


def test_training_accuracy_of_a_transfer_set_counts_labelled_samples_only(data):
    student, method = _recording(data, scale=0.0)
    size = len(data["train"]["y"])
    labelled = torch.arange(size) % 3 == 0
    with torch.no_grad():
        hits = student(data["train"]["x"]).argmax(1) == data["train"]["y"]
    result = train(student, method, data["train"], data["val"], CONFIG, seed=0, labelled=labelled)
    assert hits[labelled].float().mean().item() != pytest.approx(hits.float().mean().item())  # the two really differ
    for row in result.history:
        assert row["train_accuracy"] == pytest.approx(hits[labelled].float().mean().item(), abs=1e-6)


def test_best_epoch_is_argmax_of_val_accuracy(data):
    result, student, _ = _run(data, "ce", {}, train_config=TrainConfig(epochs=3, batch_size=32, lr=3e-3))
    accuracies = [row["val_accuracy"] for row in result.history]
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1  # first epoch reaching the best
    assert result.summary["best_val_accuracy"] == max(accuracies)
    # The kept best state really scores that accuracy; the last state is the model as trained.
    assert _same_states(result.last_state, student.state_dict())
    student.load_state_dict(result.best_state)
    assert accuracy(predict(student, data["val"]["x"]).logits, data["val"]["y"]) == max(accuracies)


def test_teacher_unchanged_and_in_eval_mode(data, teacher):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}  # includes BatchNorm running stats
    teacher.train()  # the loop must put it back into eval mode itself
    teacher.zero_grad(set_to_none=True)  # drop gradients left over from training the teacher
    result, _, method = _run(data, "fitnet", FITNET, teacher=teacher)
    assert _same_states(before, teacher.state_dict())
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert {"loss_ce", "loss_hint"} <= set(result.history[0])
    # The published regressor (16 -> 32 linear, then BatchNorm's 32 weights and 32 biases, then ReLU)
    # is trained with the student and counted.
    assert result.method_parameters == 16 * 32 + 32 + 2 * 32 == sum(p.numel() for p in method.parameters())


def test_adapter_parameters_are_trained(data, teacher):
    torch.manual_seed(0)
    student = tiny_mlp(hidden=(16,))
    method = build_method("fitnet", parse_method_config("fitnet", FITNET, "fitnet"), student, teacher, 10)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    train(student, method, data["train"], data["val"], TrainConfig(epochs=1, batch_size=64), seed=0, teacher=teacher)
    assert not _same_states(before, method.state_dict())


def test_same_seed_is_bit_identical(data, teacher):
    first, _, _ = _run(data, "kd", {}, seed=5, teacher=teacher)
    second, _, _ = _run(data, "kd", {}, seed=5, teacher=teacher)
    assert _same_states(first.best_state, second.best_state)
    assert _same_states(first.last_state, second.last_state)
    assert first.history == second.history
    assert first.best_epoch == second.best_epoch


def test_different_seed_differs(data, teacher):
    first, _, _ = _run(data, "kd", {}, seed=5, teacher=teacher)
    other, _, _ = _run(data, "kd", {}, seed=6, teacher=teacher)
    assert not _same_states(first.last_state, other.last_state)
    assert first.history != other.history


def test_identity_augment_matches_no_augment(data, teacher):
    calls = []

    def identity(x, generator):
        assert isinstance(generator, torch.Generator)
        calls.append(len(x))
        return x

    plain, _, _ = _run(data, "fitnet", FITNET, seed=2, teacher=teacher)
    augmented, _, _ = _run(data, "fitnet", FITNET, seed=2, teacher=teacher, augment=identity)
    assert sum(calls) == CONFIG.epochs * len(data["train"]["y"])
    # With augmentation the teacher runs per batch instead of from the cache; results must agree
    # (bit-identical on x86 CPU here; a tight tolerance allows batch-size-dependent kernels elsewhere).
    assert plain.best_epoch == augmented.best_epoch
    for key, value in plain.last_state.items():
        assert torch.allclose(value, augmented.last_state[key], rtol=1e-5, atol=1e-6), key
    for row, other in zip(plain.history, augmented.history):
        assert row.keys() == other.keys()
        assert all(row[k] == pytest.approx(other[k], rel=1e-4, abs=1e-6) for k in row)


def test_sgd_constant_schedule_runs(data):
    config = TrainConfig(epochs=2, batch_size=50, optimizer="sgd", lr=0.05, schedule="constant")
    result, _, _ = _run(data, "ce", {}, train_config=config)
    assert len(result.history) == 2
    assert result.history[-1]["loss_ce"] < result.history[0]["loss_ce"]


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"epochs": 0}, r"student\.training\.epochs: must be > 0"),
        ({"batch_size": -1}, r"student\.training\.batch_size: must be > 0"),
        ({"optimizer": "rmsprop"}, r"student\.training\.optimizer: unknown value 'rmsprop'; allowed values: \['adam', 'sgd'\]"),
        ({"schedule": "step"}, r"student\.training\.schedule: unknown value 'step'"),
        ({"weight_decay": -0.1}, r"student\.training\.weight_decay: must be >= 0"),
        ({"epoch": 3}, r"student\.training\.epoch: unknown key"),
        ({"epochs": 2.5}, r"student\.training\.epochs: expected int"),
        ({"epochs": 4, "steps": 3}, r"student\.training\.steps: must be at least epochs=4 \(one optimiser step per epoch\)"),
        ({"steps": 0}, r"student\.training\.steps: must be at least epochs=20"),
        ({"steps": 100.5}, r"student\.training\.steps: expected int"),
    ],
)
def test_train_config_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_dataclass(TrainConfig, raw, "student.training")


def _multistep_rates(epoch_steps: list[int], **budget) -> list[float]:
    """The rate of each step of a multistep schedule (milestones 2 and 4, gamma 0.1) over ``epoch_steps``."""
    from distillation_studies.learning.training import _scheduler

    config = TrainConfig(epochs=5, lr=1.0, schedule="multistep", milestones=(2, 4), gamma=0.1, **budget)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = _scheduler(optimizer, config, epoch_steps)
    rates = []
    for _ in range(sum(epoch_steps)):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_multistep_schedule_decays_at_milestone_epochs():
    assert _multistep_rates([3] * 5) == pytest.approx([1.0] * 6 + [0.1] * 6 + [0.01] * 3)


def test_multistep_milestones_fall_at_the_ends_of_unequal_epochs():
    # Epochs end after steps 2, 5, 8, 11, 14: the rate drops after step 5 (epoch 2) and step 11 (epoch 4).
    assert _multistep_rates([2, 3, 3, 3, 3], steps=14) == pytest.approx([1.0] * 5 + [0.1] * 6 + [0.01] * 3)


@pytest.mark.parametrize(
    "settings, key",
    [
        ({"schedule": "multistep"}, "milestones"),
        ({"schedule": "multistep", "milestones": [5, 3]}, "milestones"),
        ({"schedule": "multistep", "milestones": [3], "gamma": 0.0}, "gamma"),
        ({"device": "tpu"}, "device"),
        ({"augment": "mixup"}, "augment"),
    ],
)
def test_bad_schedule_and_device_settings_name_the_key(settings, key):
    with pytest.raises(ConfigError, match=rf"training\.{key}"):
        parse_dataclass(TrainConfig, {"epochs": 10, **settings}, "training")


def test_unavailable_accelerator_is_a_clear_error():
    from distillation_studies.learning.training import resolve_device

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    with pytest.raises(ConfigError, match="'cuda' requested but not available"):
        resolve_device("cuda")


# The training budget: optimiser steps fixed by the caller or the config, whatever the data's size.


@pytest.mark.parametrize(
    "config, steps_per_epoch, expected",
    [
        (TrainConfig(epochs=4, steps=10), None, [2, 3, 2, 3]),  # epoch e ends after floor(10 e / 4) steps
        (TrainConfig(epochs=3, steps=3), 99, [1, 1, 1]),  # the config's budget wins over the caller's epoch
        (TrainConfig(epochs=3), 7, [7, 7, 7]),
        (TrainConfig(epochs=3), None, None),  # no budget: one pass per epoch
    ],
)
def test_epoch_steps_of_a_budget(config, steps_per_epoch, expected):
    from distillation_studies.learning.training import epoch_steps

    assert epoch_steps(config, steps_per_epoch) == expected


def test_a_budget_takes_exactly_its_steps_in_full_batches_and_counts_them(data):
    student, method = _recording(data)
    size = len(data["train"]["y"])
    assert size > 5 * 32  # five batches of 32 do not cover the data: an epoch is not a pass here
    result = train(student, method, data["train"], data["val"], CONFIG, seed=0, steps_per_epoch=5)
    assert [sum(b["epoch"] == epoch for b in method.batches) for epoch in (1, 2, 3)] == [5, 5, 5]
    assert {b["size"] for b in method.batches} == {32}
    assert result.summary["optimizer_steps"] == 15 and result.summary["samples_seen"] == 15 * 32
    for row in result.history:  # epoch means over the 160 samples the epoch trained on
        batches = [b for b in method.batches if b["epoch"] == row["epoch"]]
        assert row["loss_ce"] == pytest.approx(sum(b["values"]["ce"] * 32 for b in batches) / 160, rel=1e-5)


def test_without_a_budget_steps_and_samples_are_one_pass_per_epoch(data):
    result, _, _ = _run(data, "ce", {})
    size = len(data["train"]["y"])
    assert result.summary["optimizer_steps"] == 3 * -(-size // 32) and result.summary["samples_seen"] == 3 * size


def test_a_small_set_is_cycled_in_reshuffled_passes_to_fill_the_budget():
    from distillation_studies.learning.training import _epoch_groups

    groups = _epoch_groups(20, TrainConfig(batch_size=16), torch.Generator().manual_seed(0), None, steps=4)
    assert [len(g) for g in groups] == [16] * 4
    drawn = torch.cat(groups).tolist()  # 64 draws: three whole passes over the 20 samples, then 4 of a fourth
    for start in (0, 20, 40):
        assert sorted(drawn[start : start + 20]) == list(range(20))
    assert len(set(drawn[60:])) == 4
    assert drawn[:20] != drawn[20:40]  # each pass reshuffled


def test_a_budget_with_a_fixed_batch_mix_keeps_k_labelled_samples_in_every_full_batch():
    from distillation_studies.learning.training import _epoch_groups

    mask = torch.zeros(50, dtype=torch.bool)
    mask[:5] = True
    groups = _epoch_groups(50, TrainConfig(batch_size=16, labelled_per_batch=4), torch.Generator().manual_seed(0), mask, steps=6)
    assert [len(g) for g in groups] == [16] * 6
    assert [int(mask[g].sum()) for g in groups] == [4] * 6
    unlabelled = torch.cat([g[~mask[g]] for g in groups]).tolist()  # 72 draws over 45: one pass, then 27 of the next
    assert sorted(unlabelled[:45]) == list(range(5, 50)) and len(set(unlabelled[45:])) == 27


def test_the_cosine_schedule_spans_a_step_budget(data):
    # Zero loss leaves the weights alone; the rate each epoch starts with follows the closed form at its
    # first step, over a total of config.steps = 10 steps split 2, 3, 2, 3.
    student, method = _recording(data, scale=0.0)
    config = TrainConfig(epochs=4, batch_size=32, lr=3e-3, steps=10)
    result = train(student, method, data["train"], data["val"], config, seed=0, steps_per_epoch=99)
    assert result.summary["optimizer_steps"] == 10
    for row, first_step in zip(result.history, [0, 2, 5, 7]):
        assert row["lr"] == pytest.approx(3e-3 * 0.5 * (1 + math.cos(math.pi * first_step / 10)))
    assert len(method.batches) == 10


def _count_calls(obj, name: str) -> list[int]:
    """Replace ``obj.name`` by a wrapper counting its calls (the count is the list's one entry)."""
    calls, original = [0], getattr(obj, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


def test_teacher_run_per_batch_gets_its_feature_hook_once_per_run_and_keeps_none(data, teacher):
    """Augmented inputs defeat the teacher cache, so the teacher runs on every batch: its feature hook
    goes on once for the whole run (not once per batch) and is gone afterwards."""
    torch.manual_seed(0)
    student = tiny_mlp(hidden=(16,))
    method = build_method("fitnet", parse_method_config("fitnet", FITNET, "fitnet"), student, teacher, len(data["train"]["y"]))
    layer = teacher.get_submodule("embed.0")
    registrations = _count_calls(layer, "register_forward_hook")  # counted from here: train() alone
    config = TrainConfig(epochs=3, batch_size=32, lr=3e-3, augment="standard")
    result = train(student, method, data["train"], data["val"], config, seed=0, teacher=teacher)
    del layer.register_forward_hook
    batches = 3 * math.ceil(len(data["train"]["y"]) / 32)
    assert result.summary["optimizer_steps"] == batches > 3
    assert registrations == [1]
    assert not layer._forward_hooks


def test_predict_leaves_an_eval_mode_model_alone_and_restores_a_training_one(data, teacher):
    """Switching modes walks every sub-module: a model already in eval mode is not switched at all."""
    switches = _count_calls(teacher, "train")  # nn.Module.eval() calls train(False)
    predict(teacher, data["val"]["x"], ["embed.0"])
    del teacher.train
    assert switches == [0] and not teacher.training
    student = tiny_mlp().train()
    outputs = predict(student, data["val"]["x"], ["hidden.0"])
    assert student.training and all(m.training for m in student.modules())
    assert outputs.logits.shape[0] == outputs.features["hidden.0"].shape[0] == len(data["val"]["y"])
