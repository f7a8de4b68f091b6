"""Splits read from disk on access: the same images, labels and statistics as the in-memory path."""

from __future__ import annotations

import pickle

import pytest
import torch

from distillation_studies.learning.data import SplitConfig, load_images, prepare_splits, stratified_subset
from distillation_studies.common.errors import DataError
from distillation_studies.learning.streaming import StreamedSplit, labels_of, open_streamed, streamed_stats
from distillation_studies.learning.vision_data import VisionDataConfig
from tests.cifar_files import write_cifar100
from tests.learning.test_vision_data import write_image_folder, write_mnist

SPLIT = SplitConfig(val_fraction=0.2, seed=3)


def _stack(split) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(split, dict):
        return split["x"], split["y"]
    pairs = [split[i] for i in range(len(split))]
    return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])


def _both_paths(name, root, normalisation="standard", image_size=None):
    in_memory = prepare_splits(load_images(name, root, image_size=image_size), name, SPLIT, normalisation)
    streamed = prepare_splits(load_images(name, root, image_size=image_size, in_memory=False), name, SPLIT, normalisation)
    return in_memory, streamed


def _assert_same_splits(in_memory, streamed, atol=1e-6):
    (memory_splits, memory_summary), (streamed_splits, streamed_summary) = in_memory, streamed
    assert all(isinstance(split, StreamedSplit) for split in streamed_splits.values())
    for part in ("train", "val", "test"):
        x, y = _stack(streamed_splits[part])
        assert torch.equal(y, memory_splits[part]["y"]), part
        assert torch.equal(labels_of(streamed_splits[part]), y), part
        assert torch.allclose(x, memory_splits[part]["x"], atol=atol), part
    assert streamed_summary.pop("in_memory") is False and memory_summary.pop("in_memory") is True
    streamed_stats_, memory_stats = streamed_summary.pop("normalisation"), memory_summary.pop("normalisation")
    for key in ("mean", "std"):
        assert streamed_stats_[key] == pytest.approx(memory_stats[key], rel=1e-5), key
    assert streamed_summary == memory_summary


def test_cifar100_streamed_splits_match_in_memory(tmp_path, no_cifar_md5):
    write_cifar100(tmp_path, train=60, test=20, used_classes=5)
    _assert_same_splits(*_both_paths("cifar100", tmp_path))


def test_mnist_streamed_splits_match_in_memory_with_training_statistics(tmp_path):
    write_mnist(tmp_path, train=150, test=6)
    in_memory, streamed = _both_paths("mnist", tmp_path, normalisation="train")
    assert streamed[1]["normalisation_source"] == "train"
    _assert_same_splits(in_memory, streamed, atol=1e-5)


def test_image_folder_streamed_test_labels_follow_the_train_classes(tmp_path):
    colours = {"ant": [[200, 0, 0]] * 5, "bee": [[0, 200, 0]] * 5, "cat": [[0, 0, 200]] * 5}
    write_image_folder(tmp_path, {"train": colours, "test": {"bee": [[0, 200, 0]] * 2, "cat": [[0, 0, 200]]}})
    in_memory, streamed = _both_paths("image_folder", tmp_path, image_size=6)
    assert labels_of(streamed[0]["test"]).tolist() == [1, 1, 2]
    _assert_same_splits(in_memory, streamed, atol=1e-5)


def test_streamed_split_pickles_as_its_recipe_not_its_images(tmp_path, no_cifar_md5):
    write_cifar100(tmp_path, train=60, test=20, used_classes=5)
    split = open_streamed(VisionDataConfig("cifar100", str(tmp_path)))["train"].normalised({"mean": [0.5] * 3, "std": [0.25] * 3})
    first = split[7]  # opens the files in this process
    clone = pickle.loads(pickle.dumps(split))
    assert len(pickle.dumps(split)) < 4000  # 60 images of 3x32x32 floats would be 737 kB
    assert clone._opened is None and torch.equal(clone[7][0], first[0]) and clone[7][1] == first[1]
    rebuilt = StreamedSplit.from_recipe(split.recipe())
    assert torch.equal(rebuilt[7][0], first[0]) and rebuilt.stats == split.stats


def test_stratified_subset_picks_the_same_images_streamed(tmp_path, no_cifar_md5):
    write_cifar100(tmp_path, train=60, test=20, used_classes=5)
    (memory, _), (streamed, _) = _both_paths("cifar100", tmp_path)
    kept_memory = stratified_subset(memory["train"], 0.5, seed=1)
    kept_streamed = stratified_subset(streamed["train"], 0.5, seed=1)
    assert isinstance(kept_streamed, StreamedSplit) and len(kept_streamed) == 24
    x, y = _stack(kept_streamed)
    assert torch.equal(y, kept_memory["y"]) and torch.allclose(x, kept_memory["x"], atol=1e-6)


def test_missing_file_fails_when_the_split_is_opened_not_when_training(tmp_path, no_cifar_md5):
    write_cifar100(tmp_path, train=60, test=20, used_classes=5)
    (tmp_path / "cifar-100-python" / "test").unlink()
    with pytest.raises(DataError, match=r"cifar-100-python/test not found"):
        load_images("cifar100", tmp_path, in_memory=False)


def test_streamed_stats_match_the_whole_tensor_statistics():
    x = torch.rand(50, 3, 4, 5)
    data = torch.utils.data.TensorDataset(x, torch.zeros(50, dtype=torch.int64))
    stats = streamed_stats(data, batch_size=7)
    assert stats["mean"] == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-6)
    assert stats["std"] == pytest.approx(x.std(dim=(0, 2, 3)).tolist(), abs=1e-6)


def test_labels_of_rejects_an_unlabelled_dataset():
    with pytest.raises(TypeError, match="labels_of"):
        labels_of(torch.utils.data.TensorDataset(torch.zeros(2)))
