"""The data_processing nodes on torchvision CIFAR-100 files (real format) and on embedded data."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from distillation_studies.common.config import parse_dataclass
from distillation_studies.common.errors import ConfigError, DataError
from distillation_studies.learning.vision_data import STANDARD_NORMALISATION
from distillation_studies.pipelines.data_processing.nodes import label_subset, load_images, split_images
from distillation_studies.study.schema import DataConfig
from tests.cifar_files import FINE_NAMES, skip_cifar_md5, write_cifar100


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    skip_cifar_md5(monkeypatch)
    written = write_cifar100(tmp_path, train=200, test=100, used_classes=10)
    return tmp_path, written


def _data(root, **extra) -> DataConfig:
    """The validated ``data:`` section the nodes receive."""
    return parse_dataclass(DataConfig, {"dataset": "cifar100", "root": str(root), "val_fraction": 0.2, "split_seed": 0, **extra}, "data")


def test_cifar100_official_splits_and_standard_normalisation(cifar_root):
    root, written = cifar_root
    raw = load_images(_data(root))
    assert raw["train"]["x"].dtype == torch.uint8 and raw["train"]["x"].shape == (200, 3, 32, 32)
    assert raw["classes"] == FINE_NAMES
    splits, summary = split_images(raw, _data(root))
    assert summary["dataset"] == "cifar100" and summary["input_shape"] == [3, 32, 32]
    assert summary["num_classes"] == 100  # the published class count, though the tiny files use 10
    assert summary["sizes"] == {"train": 160, "val": 40, "test": 100}
    assert summary["normalisation"] == STANDARD_NORMALISATION["cifar100"] and summary["normalisation_source"] == "standard"
    assert summary["classes"] == FINE_NAMES
    # Validation is a stratified share of the official training split: 4 of each class's 20 images.
    assert torch.bincount(splits["val"]["y"], minlength=10)[:10].tolist() == [4] * 10
    # The official test split is the test split, whole and in order, normalised with the published constants.
    test_rows, test_labels = written["test"]
    assert splits["test"]["y"].tolist() == test_labels
    mean = torch.tensor(STANDARD_NORMALISATION["cifar100"]["mean"]).view(3, 1, 1)
    std = torch.tensor(STANDARD_NORMALISATION["cifar100"]["std"]).view(3, 1, 1)
    expected = torch.from_numpy(test_rows[7].reshape(3, 32, 32)).float().div(255.0)
    assert torch.allclose(splits["test"]["x"][7], (expected - mean) / std, atol=1e-6)
    # Every training image is one of the official training images, none is in validation.
    assert len(splits["train"]["y"]) + len(splits["val"]["y"]) == 200


def test_train_normalisation_uses_training_split_statistics(cifar_root):
    root, _ = cifar_root
    data = _data(root, normalisation="train")
    splits, summary = split_images(load_images(data), data)
    assert summary["normalisation_source"] == "train"
    channel_means = splits["train"]["x"].mean(dim=(0, 2, 3))
    assert torch.allclose(channel_means, torch.zeros(3), atol=1e-4)
    assert summary["normalisation"] != STANDARD_NORMALISATION["cifar100"]


def test_split_is_reproducible_and_label_subset_still_works(cifar_root):
    root, _ = cifar_root
    raw = load_images(_data(root))
    first, _ = split_images(raw, _data(root))
    second, _ = split_images(raw, _data(root))
    assert torch.equal(first["val"]["x"], second["val"]["x"])
    subset = label_subset(first, _data(root), fraction=0.5)
    assert len(subset["train"]["y"]) == 80 and subset["test"] is first["test"]


def test_too_small_validation_share_names_the_key(cifar_root):
    root, _ = cifar_root
    data = _data(root, val_fraction=0.02)  # 4 held-out images cannot cover 10 classes
    with pytest.raises(ConfigError, match=r"data\.val_fraction: cannot hold out a stratified 0\.02 of 200"):
        split_images(load_images(data), data)


@pytest.mark.parametrize("missing", ["train", "test", "meta"])
def test_missing_cifar_file_fails_in_the_first_node_naming_the_file(tmp_path, missing):
    # No checksum patch: torchvision's real check runs, and the first node fails before any training.
    write_cifar100(tmp_path, train=20, test=10)
    path = tmp_path / "cifar-100-python" / missing
    path.unlink()
    with pytest.raises(DataError, match=re.escape(f"data.root: {path} not found")) as error:
        load_images(_data(tmp_path))
    assert "cifar-100-python.tar.gz" in str(error.value)  # and says how to get it


def test_missing_cifar_folder_names_the_first_file(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'cifar-100-python' / 'train'} not found")):
        load_images(_data(tmp_path))


def test_embedded_dataset_keeps_its_three_way_split():
    data = DataConfig(dataset="digits", val_fraction=0.1, test_fraction=0.2, split_seed=0, normalisation="standard")
    raw = load_images(data)
    assert set(raw) == {"x", "y"} and raw["x"].dtype == torch.float32
    splits, summary = split_images(raw, data)
    assert sum(summary["sizes"].values()) == 1797 and summary["num_classes"] == 10
    assert summary["normalisation_source"] == "train"  # embedded data: always training-split statistics
    assert summary["classes"] == [str(d) for d in range(10)]
    assert np.isclose(splits["train"]["x"].mean().item(), 0.0, atol=1e-3)
