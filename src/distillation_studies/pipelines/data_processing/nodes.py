"""Load the study's images and split them into normalised train/validation/test tensors."""

from __future__ import annotations

from typing import Any

from distillation_studies.common.records import LABEL_NOISE
from distillation_studies.learning import data as core
from distillation_studies.study.schema import DataConfig


def load_images(data: DataConfig) -> dict[str, Any]:
    """The configured dataset's images and labels, before any split.

    Embedded datasets: ``{"x", "y"}``. Torchvision datasets: their official ``train`` / ``test`` splits
    and ``classes``, read from ``data.root`` (with ``data.in_memory: false``, only their labels and the
    recipe to read each image later); a missing or corrupt file fails here, the first node of the
    study, with a DataError naming the file.
    """
    return core.load_images(
        data.dataset, data.root, data.download, data.image_size, "data", data.in_memory, data.image_channels
    )


def split_images(images: dict[str, Any], data: DataConfig) -> tuple[dict, dict[str, Any]]:
    """Stratified train/validation(/test) splits, normalised; returns the splits and a summary.

    The summary holds dataset, input_shape, num_classes, split sizes, the normalisation statistics
    and their source (``standard`` published constants or ``train`` split), and the class names.
    """
    return core.prepare_splits(images, data.dataset, data.split(), data.normalisation)


def label_subset(model_input: dict, data: DataConfig, *, fraction: float) -> dict:
    """The splits with only a stratified ``fraction`` of the training split (validation and test kept whole)."""
    return {**model_input, "train": core.stratified_subset(model_input["train"], fraction, data.split_seed)}


def noisy_input(model_input: dict, data_summary: dict, data: DataConfig, *, rate: float) -> dict:
    """The splits with ``rate`` of the training and validation labels corrupted (test labels clean).

    Seeded by ``data.split_seed``, so every method of a cell trains on the same corrupted labels; the
    fractions actually changed are kept under ``label_noise`` for the histories and the report.
    """
    splits = {part: model_input[part] for part in ("train", "val", "test")}
    noisy, changed = core.noisy_splits(splits, rate, int(data_summary["num_classes"]), data.label_noise_model, data.split_seed)
    return {**model_input, **noisy, LABEL_NOISE: {"rate": rate, "model": data.label_noise_model, "changed": changed}}


def transfer_input(model_input: dict, data: DataConfig, *, fraction: float) -> dict:
    """The whole training split with a ``labelled`` mask: the stratified ``fraction`` that
    :func:`label_subset` keeps is labelled, the rest is the transfer set (images without labels)."""
    return {**model_input, "labelled": core.labelled_mask(model_input["train"], fraction, data.split_seed)}
