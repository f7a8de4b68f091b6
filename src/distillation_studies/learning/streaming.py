"""Splits read from disk batch by batch, for torchvision datasets that should not be held in memory.

A :class:`StreamedSplit` is a torch ``Dataset`` over chosen images of one published split ("train" or
"test") of a torchvision dataset. It holds only the image indices, their labels and the
normalisation statistics; the images are read (and normalised) on access, in the DataLoader's
worker processes when it has some. It pickles as that recipe, never as images, so the catalog and
the workers carry a few kilobytes whatever the dataset's size.

Selecting the same images from a ``StreamedSplit`` and from the in-memory tensors gives the same
split, image for image: both paths draw their stratified indices through the same functions of
:mod:`distillation_studies.learning.data`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from distillation_studies.learning.vision_data import VisionDataConfig, check_labels, dataset_labels, open_vision_split

RECIPE_KEY = "streamed_split"  # marks a StreamedSplit's recipe inside a saved dictionary


class StreamedSplit(Dataset):
    """Images ``indices`` of ``split`` of ``source``, yielded as (normalised float (C, H, W), int64 label)."""

    def __init__(
        self,
        source: VisionDataConfig,
        split: str,
        indices: Tensor,
        labels: Tensor,
        stats: dict[str, list[float]] | None = None,
    ) -> None:
        if len(indices) != len(labels):
            raise ValueError(f"StreamedSplit: {len(indices)} indices but {len(labels)} labels")
        self.source, self.split = source, split
        self.indices = torch.as_tensor(indices, dtype=torch.int64)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.stats = stats
        self._opened: Dataset | None = None
        self._mean = self._std = None

    def __len__(self) -> int:
        return len(self.indices)

    def _images(self) -> Dataset:
        if self._opened is None:  # opened once per process: in each DataLoader worker, not at pickling
            self._opened = open_vision_split(self.source, self.split)
        return self._opened

    def __getitem__(self, position: int) -> tuple[Tensor, Tensor]:
        image, _ = self._images()[int(self.indices[position])]
        if self.stats is not None:
            if self._mean is None:
                shape = (-1, *([1] * (image.dim() - 1)))
                self._mean = torch.tensor(self.stats["mean"]).view(shape)
                self._std = torch.tensor(self.stats["std"]).view(shape)
            image = (image - self._mean) / self._std
        return image, self.labels[position]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": None}

    def subset(self, positions: Tensor | list[int]) -> StreamedSplit:
        """The images at ``positions`` of this split (positions, not source indices)."""
        positions = torch.as_tensor(positions, dtype=torch.int64)
        return StreamedSplit(self.source, self.split, self.indices[positions], self.labels[positions], self.stats)

    def normalised(self, stats: dict[str, list[float]]) -> StreamedSplit:
        return StreamedSplit(self.source, self.split, self.indices, self.labels, stats)

    def sample_shape(self) -> list[int]:
        return list(self[0][0].shape)

    def recipe(self) -> dict[str, Any]:
        """Plain values only (strings, lists, tensors): loadable with ``torch.load(weights_only=True)``."""
        return {
            RECIPE_KEY: {
                "source": asdict(self.source),
                "split": self.split,
                "indices": self.indices,
                "labels": self.labels,
                "stats": self.stats,
            }
        }

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any]) -> StreamedSplit:
        body = recipe[RECIPE_KEY]
        return cls(VisionDataConfig(**body["source"]), body["split"], body["indices"], body["labels"], body["stats"])


def is_recipe(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {RECIPE_KEY}


def open_streamed(config: VisionDataConfig, where: str = "data") -> dict[str, Any]:
    """Both published splits as un-normalised StreamedSplits, checked readable: ``{"train", "test", "classes"}``.

    The files are opened here once, so a missing or corrupt one fails with the DataError of
    :func:`open_vision_split` before any training; only the labels are kept.
    """
    config.check(where)
    out: dict[str, Any] = {}
    classes: list[str] = []
    for split in ("train", "test"):
        dataset = open_vision_split(config, split, where)
        labels = dataset_labels(config, dataset, where)
        classes = list(dataset.classes)
        out[split] = StreamedSplit(config, split, torch.arange(len(labels)), labels)
    for split in ("train", "test"):
        check_labels(config, split, out[split].labels, len(classes), where)
    out["classes"] = classes
    return out


def streamed_stats(split: Dataset, batch_size: int = 512, workers: int = 0) -> dict[str, list[float]]:
    """Per-channel mean and (unbiased) std over every pixel of ``split``, in one float64 pass."""
    total = squares = None
    count = 0
    loader = DataLoader(split, batch_size=batch_size, num_workers=workers)
    for x, _ in loader:
        x = x.double()
        dims = [0, *range(2, x.dim())]
        total = x.sum(dim=dims) if total is None else total + x.sum(dim=dims)
        squares = x.square().sum(dim=dims) if squares is None else squares + x.square().sum(dim=dims)
        count += x.numel() // x.shape[1]
    if total is None:
        raise ValueError("streamed_stats: the split holds no images")
    mean = total / count
    variance = (squares - count * mean.square()) / max(count - 1, 1)
    return {"mean": mean.float().tolist(), "std": variance.clamp_min(0).sqrt().clamp_min(1e-8).float().tolist()}


def labels_of(split: Mapping[str, Tensor] | Dataset) -> Tensor:
    """The labels of an in-memory split (``{"x", "y"}``) or of a StreamedSplit, without reading images."""
    if isinstance(split, Mapping):
        return split["y"]
    labels = getattr(split, "labels", None)
    if labels is None:
        raise TypeError(f"labels_of: expected an {{'x', 'y'}} mapping or a StreamedSplit, got {type(split).__name__}")
    return labels
