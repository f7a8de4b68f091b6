"""Load the embedded images and split them into normalised train/validation/test tensors."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from distillation_studies.core.config import parse_dataclass
from distillation_studies.core.data import (
    load_embedded,
    normalisation_stats,
    normalise,
    stratified_split,
    stratified_subset,
)
from distillation_studies.core.study import DataConfig


def load_images(data: dict[str, Any]) -> dict[str, Tensor]:
    """Images in [0, 1] and labels of the configured embedded dataset."""
    return load_embedded(parse_dataclass(DataConfig, data, "data").dataset)


def split_images(images: dict[str, Tensor], data: dict[str, Any]) -> tuple[dict, dict[str, Any]]:
    """Stratified split, normalised with training-split statistics; returns the splits and a summary."""
    config = parse_dataclass(DataConfig, data, "data")
    splits = stratified_split(images, config.split())
    stats = normalisation_stats(splits["train"]["x"])
    normalised = {name: {"x": normalise(part["x"], stats), "y": part["y"]} for name, part in splits.items()}
    summary = {
        "dataset": config.dataset,
        "input_shape": list(images["x"].shape[1:]),
        "num_classes": int(images["y"].max()) + 1,
        "sizes": {name: len(part["y"]) for name, part in splits.items()},
        "normalisation": stats,
    }
    return normalised, summary


def label_subset(model_input: dict, data: dict[str, Any], *, fraction: float) -> dict:
    """The splits with only a stratified ``fraction`` of the training split (validation and test kept whole)."""
    config = parse_dataclass(DataConfig, data, "data")
    return {**model_input, "train": stratified_subset(model_input["train"], fraction, config.split_seed)}
