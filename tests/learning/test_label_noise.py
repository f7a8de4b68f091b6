"""Label noise and transfer-set masks of learning/data.py: reproducible, at the requested rate, test clean."""

from __future__ import annotations

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.data import corrupt_labels, labelled_mask, noisy_splits, stratified_subset

LABELS = torch.arange(1000) % 10


@pytest.mark.parametrize("model", ["symmetric", "pair"])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.45])
def test_noise_changes_exactly_the_requested_fraction(model, rate):
    noisy, changed = corrupt_labels(LABELS, rate, 10, model, seed=0)
    assert changed.float().mean().item() == pytest.approx(rate, abs=1e-3)
    assert torch.equal(changed, noisy != LABELS)
    assert noisy.dtype == LABELS.dtype and int(noisy.min()) >= 0 and int(noisy.max()) <= 9


def test_noise_is_reproducible_from_the_seed_and_changes_with_it():
    first, _ = corrupt_labels(LABELS, 0.3, 10, "symmetric", seed=4)
    again, _ = corrupt_labels(LABELS, 0.3, 10, "symmetric", seed=4)
    other, _ = corrupt_labels(LABELS, 0.3, 10, "symmetric", seed=5)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_pair_flip_moves_each_changed_label_to_the_next_class():
    noisy, changed = corrupt_labels(LABELS, 0.3, 10, "pair", seed=0)
    assert torch.equal(noisy[changed], (LABELS[changed] + 1) % 10)


def test_symmetric_noise_spreads_over_all_other_classes():
    labels = torch.zeros(20000, dtype=torch.long)
    noisy, changed = corrupt_labels(labels, 0.9, 10, "symmetric", seed=0)
    counts = torch.bincount(noisy[changed], minlength=10).float()
    assert counts[0] == 0 and (counts[1:] / counts[1:].mean() - 1).abs().max() < 0.1  # ~2,000 each


def test_noisy_splits_leave_test_labels_clean_and_report_the_changed_fraction():
    splits = {part: {"x": torch.zeros(n, 1), "y": torch.arange(n) % 10} for part, n in (("train", 500), ("val", 100), ("test", 200))}
    noisy, changed = noisy_splits(splits, 0.2, 10, "symmetric", seed=0)
    assert noisy["test"] is splits["test"] and torch.equal(noisy["test"]["y"], torch.arange(200) % 10)
    assert changed == {"train": pytest.approx(0.2), "val": pytest.approx(0.2)}
    assert (noisy["train"]["y"] != splits["train"]["y"]).float().mean().item() == pytest.approx(0.2)
    assert torch.equal(splits["train"]["y"], torch.arange(500) % 10)  # the input is not mutated


def test_noise_errors_name_the_key():
    with pytest.raises(ConfigError, match="data.label_noise_model"):
        corrupt_labels(LABELS, 0.1, 10, "asymmetric-typo", seed=0)
    with pytest.raises(ConfigError, match="grid.label_noise"):
        corrupt_labels(LABELS, 1.0, 10, "symmetric", seed=0)


def test_transfer_mask_marks_the_samples_the_label_subset_keeps():
    split = {"x": torch.arange(300.0)[:, None], "y": torch.arange(300) % 10}
    mask = labelled_mask(split, 0.1, seed=3)
    subset = stratified_subset(split, 0.1, seed=3)
    assert int(mask.sum()) == 30 and torch.equal(split["x"][mask], subset["x"])
    assert labelled_mask(split, 1.0, seed=3).all()


@pytest.mark.parametrize(
    "fraction, message",
    [
        (0.001, r"grid\.label_fractions: 0\.001 of the 1000 training images keeps 1, fewer than the 10 classes .* use a fraction at least 0\.01,"),
        (0.9999, r"grid\.label_fractions: 0\.9999 of the 1000 training images leaves unlabelled 1, fewer than the 10 classes .* at most 0\.99,"),
    ],
)
def test_a_label_fraction_too_small_or_too_large_for_the_classes_is_named(fraction, message):
    """Fractions that used to end in sklearn's "train_size = 1 should be greater or equal to the number of classes"."""
    split = {"x": torch.zeros(1000, 1), "y": torch.arange(1000) % 10}
    for select in (stratified_subset, labelled_mask):
        with pytest.raises(ConfigError, match=message):
            select(split, fraction, 0)
    assert int(labelled_mask(split, 0.01, 0).sum()) == 10  # the bound itself works: one image per class
