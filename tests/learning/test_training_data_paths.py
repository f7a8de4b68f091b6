"""The loop's two data paths (tensors in memory, a Dataset through a DataLoader) train the same weights,
and the teacher's training-set outputs are computed only where they are used."""

from __future__ import annotations

import pytest
import torch

from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.kd import KnowledgeDistillation
from distillation_studies.study.schema import parse_method_entry
from distillation_studies.learning.training import TrainConfig, predict, train
from tests.study.test_schema import env_params
from tests.learning.test_training import FITNET, data, teacher  # noqa: F401 (module fixtures)
from tests.labelled_tensors import LabelledTensors
from tests.method_checks import tiny_cnn, tiny_mlp

CONFIG = TrainConfig(epochs=2, batch_size=32, lr=3e-3)


def _fit(data, name, config, train_split, val_split, teacher=None, train_config=CONFIG, augment=None, student=tiny_mlp):
    torch.manual_seed(0)
    model = student()
    method = build_method(name, parse_method_config(name, config, name), model, teacher, len(data["train"]["y"]))
    result = train(model, method, train_split, val_split, train_config, seed=4, teacher=teacher, augment=augment)
    return result


def _assert_same_training(a, b):
    assert a.best_epoch == b.best_epoch
    assert [row.keys() for row in a.history] == [row.keys() for row in b.history]
    for row, other in zip(a.history, b.history):
        assert row == pytest.approx(other, rel=1e-5, abs=1e-7)
    for key, value in a.last_state.items():
        assert torch.allclose(value, b.last_state[key], rtol=1e-5, atol=1e-6), key


def _flip(x, generator):
    """A generator-driven augmentation, so both paths must draw from the generator in the same order."""
    flips = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(flips[:, None, None, None], x.flip(-1), x)


@pytest.mark.parametrize(
    "name, config, augment",
    [("ce", {}, None), ("kd", {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}, None), ("fitnet", FITNET, _flip)],
)
def test_dataset_path_trains_the_same_weights_as_tensors(data, teacher, name, config, augment):
    uses_teacher = teacher if name != "ce" else None
    in_memory = _fit(data, name, config, data["train"], data["val"], uses_teacher, augment=augment)
    streamed = _fit(
        data, name, config, LabelledTensors(data["train"]), LabelledTensors(data["val"]), uses_teacher, augment=augment
    )
    _assert_same_training(in_memory, streamed)


def test_worker_processes_read_the_same_batches(data, teacher):
    config = {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}
    main_process = _fit(data, "kd", config, LabelledTensors(data["train"]), LabelledTensors(data["val"]), teacher)
    workers = TrainConfig(epochs=2, batch_size=32, lr=3e-3, workers=2)
    with_workers = _fit(
        data, "kd", config, LabelledTensors(data["train"]), LabelledTensors(data["val"]), teacher, train_config=workers
    )
    _assert_same_training(main_process, with_workers)


def test_uncached_teacher_gives_the_cached_result(data, teacher, caplog):
    config = {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}
    cached = _fit(data, "kd", config, data["train"], data["val"], teacher)
    no_cache = TrainConfig(epochs=2, batch_size=32, lr=3e-3, teacher_cache_gb=0.0)
    with caplog.at_level("INFO", logger="distillation_studies.learning.training"):
        recomputed = _fit(data, "kd", config, data["train"], data["val"], teacher, train_config=no_cache)
    assert "teacher outputs recomputed per batch" in caplog.text
    _assert_same_training(cached, recomputed)


def test_predict_reads_tensors_splits_and_datasets_alike(data, teacher):
    x = data["val"]["x"]
    expected = predict(teacher, x, ["embed.0"], batch_size=7)
    for source in (data["val"], LabelledTensors(data["val"])):
        got = predict(teacher, source, ["embed.0"], batch_size=7)
        assert torch.allclose(got.logits, expected.logits) and torch.allclose(got.features["embed.0"], expected.features["embed.0"])


def test_teacher_training_outputs_are_skipped_when_the_method_does_not_read_them(data, teacher, monkeypatch):
    """With augmentation nothing is cached, so a full teacher pass would only serve prepare()."""
    seen = []
    monkeypatch.setattr(KnowledgeDistillation, "prepare", lambda self, outputs, train_data: seen.append(outputs))
    _fit(data, "kd", {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}, data["train"], data["val"], teacher, augment=_flip)
    assert seen == [None]


TINY_ALL = env_params("tiny_all")


@pytest.mark.parametrize("key", sorted(TINY_ALL["methods"]))
def test_every_method_trains_under_augmentation(data, key):
    """No teacher cache under augmentation: a method that reads the teacher's training-set outputs in
    prepare() must say so (needs_teacher_train) or fail here."""
    torch.manual_seed(1)
    teacher_model = tiny_cnn(channels=(8, 16), embed=32).eval()
    entry = parse_method_entry(key, TINY_ALL["methods"][key])
    student = tiny_cnn(channels=(4, 8), embed=16)
    method = build_method(entry.method, entry.config_for(entry.settings[0]), student, teacher_model, len(data["train"]["y"]))
    config = TrainConfig(epochs=3, batch_size=64, lr=3e-3)
    result = train(student, method, data["train"], data["val"], config, seed=0, teacher=teacher_model, augment=_flip)
    assert len(result.history) == 3 and all(torch.isfinite(torch.tensor(row["loss_total"])) for row in result.history)
