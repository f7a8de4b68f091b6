"""The splits as MLflow datasets: a digest that changes with any pixel, label or labelled flag, and the
train/validation/test contexts the MLflow UI shows."""

from __future__ import annotations

import json

import torch

from distillation_studies.tracking.inputs import dataset_name, split_digest, split_inputs

SUMMARY = {"dataset": "digits", "num_classes": 3, "input_shape": [1, 2, 2]}


def _split(seed: int = 0, size: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"x": torch.rand(size, 1, 2, 2, generator=generator), "y": torch.arange(size) % 3}


def test_the_digest_is_the_same_for_equal_splits_and_changes_with_any_pixel_label_or_flag():
    split = _split()
    assert split_digest(split) == split_digest({k: v.clone() for k, v in split.items()})
    pixel, label = _split(), _split()
    pixel["x"][5, 0, 1, 1] += 1e-6
    label["y"][0] = 2
    mask = torch.tensor([True, False, True, False, True, False])
    other_mask = torch.tensor([True, True, True, False, True, False])
    digests = {split_digest(split), split_digest(pixel), split_digest(label), split_digest(split, mask), split_digest(split, other_mask)}
    assert len(digests) == 5
    assert all(len(d) == 16 and int(d, 16) >= 0 for d in digests)


def test_names_say_the_dataset_the_split_and_the_data_cell():
    assert dataset_name("digits", "model_input", "train") == "digits.train"
    assert dataset_name("cifar10", "model_input_labels_10_transfer", "val") == "cifar10.val.labels_10_transfer"


def test_each_split_is_one_input_with_its_context_source_and_labelled_count():
    cell = {"train": _split(0), "val": _split(1, 3), "test": _split(2, 3), "labelled": torch.tensor([True, False] * 3)}
    inputs = split_inputs("model_input_labels_50_transfer", cell, SUMMARY, "/data/05_model_input/x.pt")
    assert [(i.tags[0].key, i.tags[0].value) for i in inputs] == [("mlflow.data.context", c) for c in ("train", "validation", "test")]
    train = inputs[0].dataset
    assert train.name == "digits.train.labels_50_transfer" and train.source_type == "local"
    assert json.loads(train.source) == {"uri": "/data/05_model_input/x.pt"}
    assert json.loads(train.profile)["samples"] == 6 and json.loads(train.profile)["labelled"] == 3
    assert train.digest == split_digest(cell["train"], cell["labelled"])
    assert inputs[1].dataset.digest == split_digest(cell["val"])  # the mask is the training split's only
    in_memory = split_inputs("model_input", cell, SUMMARY, None)[0].dataset
    assert in_memory.source_type == "code" and json.loads(in_memory.source) == {"tags": {"kedro_dataset": "model_input"}}
