"""A trained classifier packaged for use outside the project: raw pixels in, class probabilities out.

The project's models read *normalised* images (``data_summary["normalisation"]`` applied to pixels in
[0, 1]). A user of a logged model has raw images, so the normalisation travels inside the module:
:class:`RawImageClassifier` scales, normalises and classifies in one ``forward``, and exports with
``torch.export`` to a program that loads without any project class.

Raw pixels are what the dataset gives before normalisation: floats in [0, 1] for the embedded datasets
(``mnist5k``, ``digits``), 8-bit values 0..255 for the torchvision datasets (given as float32).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from distillation_studies.learning.data import is_vision


def raw_pixel_max(dataset: str) -> float:
    """The largest raw pixel value of ``dataset``: 255 for torchvision data (stored as uint8), else 1."""
    return 255.0 if is_vision(dataset) else 1.0


def _channel_view(values: list[float], sample_rank: int) -> Tensor:
    """Per-channel statistics shaped (1, C, 1, ...) to broadcast over a batch of (C, H, W) images."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, *([1] * (sample_rank - 1)))


PIXEL_SLACK = 1e-3  # fraction of the pixel scale a raw pixel may stray outside it


class RawImageClassifier(nn.Module):
    """``model`` behind its input normalisation: raw pixels (N, C, H, W) -> class probabilities (N, K).

    Computes ``(x / pixel_max - mean) / std`` exactly as the data pipeline does, so its arg-max is the
    project's prediction on the same images. Pixels outside ``[0, pixel_max]`` raise a RuntimeError that
    names the scale (a check ``torch.export`` keeps): digits given as 0..16 instead of [0, 1] would
    otherwise be classified, and worse, without a word.
    """

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], sample_rank: int, pixel_max: float = 1.0):
        super().__init__()
        self.model = model
        self.pixel_max = float(pixel_max)
        self.scale_error = (
            f"raw pixels must lie in [0, {self.pixel_max:g}], the scale this model reads (its MLmodel metadata "
            "'input'); rescale the images (e.g. 0..16 digits / 16, 0..255 images / 255 when the scale is 1)"
        )
        self.register_buffer("mean", _channel_view(mean, sample_rank))
        self.register_buffer("std", _channel_view(std, sample_rank))

    def forward(self, pixels: Tensor) -> Tensor:
        slack = PIXEL_SLACK * self.pixel_max  # float rounding of raw pixels rebuilt from normalised ones
        torch._assert_async(((pixels >= -slack) & (pixels <= self.pixel_max + slack)).all(), self.scale_error)
        scaled = pixels if self.pixel_max == 1.0 else pixels / self.pixel_max
        return torch.softmax(self.model((scaled - self.mean) / self.std), dim=1)


def for_raw_images(model: nn.Module, normalisation: dict[str, list[float]], pixel_max: float = 1.0) -> RawImageClassifier:
    """An eval-mode CPU copy of ``model`` that reads raw pixels; ``model`` itself is left untouched.

    ``normalisation`` is ``data_summary["normalisation"]`` (``{"mean": [...], "std": [...]}``, one value
    per channel); ``model.spec["in_shape"]`` gives the sample rank.
    """
    inner = copy.deepcopy(model).to("cpu").eval()
    rank = len(model.spec["in_shape"]) if hasattr(model, "spec") else 3
    return RawImageClassifier(inner, normalisation["mean"], normalisation["std"], rank, pixel_max).eval()


def to_raw(images: Tensor, normalisation: dict[str, list[float]], pixel_max: float = 1.0) -> Tensor:
    """Normalised images (as in ``model_input``) back to raw pixels: the inverse of the data pipeline."""
    rank = images.dim() - 1
    mean, std = _channel_view(normalisation["mean"], rank), _channel_view(normalisation["std"], rank)
    return ((images.float() * std + mean) * pixel_max).contiguous()


def first_images(split: Any, count: int) -> Tensor:
    """The first ``count`` images of a split, in memory (``{"x", "y"}``) or read from disk (a Dataset)."""
    if isinstance(split, dict):
        return split["x"][:count].float()
    return torch.stack([split[i][0] for i in range(min(count, len(split)))]).float()
