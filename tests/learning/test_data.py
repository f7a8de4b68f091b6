"""Embedded datasets, stratified splits and train-only normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillation_studies.learning.data import (
    EMBEDDED_SHAPES,
    SplitConfig,
    load_embedded,
    normalisation_stats,
    normalise,
    stratified_split,
)
from distillation_studies.common.errors import ConfigError


@pytest.fixture(scope="module")
def digits():
    return load_embedded("digits")


def _indexed(digits):
    """The digits labels with each sample's position as its only pixel, so splits reveal their indices."""
    n = len(digits["y"])
    return {"x": torch.arange(n, dtype=torch.float64).view(n, 1, 1, 1), "y": digits["y"]}


def _indices(split) -> np.ndarray:
    return split["x"].view(-1).long().numpy()


def test_digits_shape_and_range(digits):
    shape, classes, count = EMBEDDED_SHAPES["digits"]
    assert tuple(digits["x"].shape) == (count, *shape)
    assert digits["x"].dtype == torch.float32 and digits["y"].dtype == torch.int64
    assert 0.0 <= digits["x"].min() and digits["x"].max() <= 1.0
    assert sorted(digits["y"].unique().tolist()) == list(range(classes))


def test_unknown_dataset_names_allowed_ones():
    with pytest.raises(ConfigError, match=r"data\.dataset: unknown dataset 'cifar'.*digits.*mnist5k"):
        load_embedded("cifar")


def test_split_sizes(digits):
    config = SplitConfig(val_fraction=0.1, test_fraction=0.2, seed=0)
    splits = stratified_split(digits, config)
    n = len(digits["y"])
    sizes = {name: len(split["y"]) for name, split in splits.items()}
    assert sum(sizes.values()) == n
    assert abs(sizes["test"] - 0.2 * n) <= 1
    assert abs(sizes["val"] - 0.1 * n) <= 1
    for split in splits.values():
        assert len(split["x"]) == len(split["y"])


def test_split_keeps_class_proportions(digits):
    splits = stratified_split(digits, SplitConfig(0.1, 0.2, seed=3))
    total = np.bincount(digits["y"].numpy(), minlength=10)
    for name, fraction in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        counts = np.bincount(splits[name]["y"].numpy(), minlength=10)
        # Stratification: each class gets its share up to rounding (at most ~1 sample per class per cut).
        assert np.all(np.abs(counts - fraction * total) <= 2), (name, counts, fraction * total)


def test_split_indices_are_disjoint_and_complete(digits):
    splits = stratified_split(_indexed(digits), SplitConfig(0.1, 0.2, seed=0))
    parts = {name: _indices(split) for name, split in splits.items()}
    assert not set(parts["train"]) & set(parts["val"])
    assert not set(parts["train"]) & set(parts["test"])
    assert not set(parts["val"]) & set(parts["test"])
    assert sorted(np.concatenate(list(parts.values()))) == list(range(len(digits["y"])))
    # Labels travel with their samples.
    for split in splits.values():
        assert torch.equal(split["y"], digits["y"][_indices(split)])


def test_split_reproducible_with_seed(digits):
    data = _indexed(digits)
    first = stratified_split(data, SplitConfig(0.1, 0.2, seed=7))
    again = stratified_split(data, SplitConfig(0.1, 0.2, seed=7))
    other = stratified_split(data, SplitConfig(0.1, 0.2, seed=8))
    for name in ("train", "val", "test"):
        assert np.array_equal(_indices(first[name]), _indices(again[name]))
    assert not np.array_equal(_indices(first["test"]), _indices(other["test"]))


@pytest.mark.parametrize(
    "val, test, key",
    [(0.0, 0.2, "val_fraction"), (0.1, 1.0, "test_fraction"), (0.5, 0.5, r"val_fraction \+ data\.test_fraction")],
)
def test_split_config_checks(val, test, key):
    with pytest.raises(ConfigError, match=rf"data\.{key}"):
        SplitConfig(val, test).check("data")


def test_normalisation_stats_are_per_channel_from_train_only():
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(200, 3, 4, 4, generator=generator) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1)
    train = train + torch.tensor([0.0, 5.0, -3.0]).view(1, 3, 1, 1)
    test = torch.randn(50, 3, 4, 4, generator=generator) + 100.0  # very different: must not leak into stats
    stats = normalisation_stats(train)
    assert stats["mean"] == pytest.approx([0.0, 5.0, -3.0], abs=0.1)
    assert stats["std"] == pytest.approx([1.0, 2.0, 0.5], rel=0.1)
    expected_mean = train.permute(1, 0, 2, 3).reshape(3, -1).mean(dim=1)
    assert stats["mean"] == pytest.approx(expected_mean.tolist(), abs=1e-5)

    normalised = normalise(train, stats)
    assert normalised.shape == train.shape
    per_channel = normalised.permute(1, 0, 2, 3).reshape(3, -1)
    assert per_channel.mean(dim=1).abs().max() < 1e-4
    assert torch.allclose(per_channel.std(dim=1), torch.ones(3), atol=1e-4)
    # Applying train statistics to the shifted test set leaves it far from zero mean.
    assert normalise(test, stats).mean() > 10


def test_normalisation_on_digits_train_split(digits):
    splits = stratified_split(digits, SplitConfig(0.1, 0.2, seed=0))
    stats = normalisation_stats(splits["train"]["x"])
    assert len(stats["mean"]) == 1 and len(stats["std"]) == 1
    train = normalise(splits["train"]["x"], stats)
    assert train.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert train.std().item() == pytest.approx(1.0, abs=1e-4)
    assert stats != normalisation_stats(digits["x"])  # whole-data statistics differ from train-only ones


def test_constant_channel_does_not_divide_by_zero():
    stats = normalisation_stats(torch.ones(10, 1, 2, 2))
    assert stats["std"][0] > 0
    assert torch.isfinite(normalise(torch.ones(3, 1, 2, 2), stats)).all()
