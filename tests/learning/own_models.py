"""Models a user brings, defined outside the project: imported by path in tests (``tests.learning.own_models:TinyNet``)."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """A user's model: ``num_classes`` and ``in_shape`` filled in by the project, ``width`` from kwargs."""

    def __init__(self, in_shape: list[int], num_classes: int, width: int = 8):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        channels, height, width_px = in_shape
        self.body = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.neck = nn.Linear(width * (height // 2) * (width_px // 2), 2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.neck(self.body(x).flatten(1))))


class FixedClasses(nn.Module):
    """Ignores the data's class count: always 3 outputs (a shape the study must refuse)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def tiny_mlp(num_classes: int, hidden: int = 16) -> nn.Module:
    """A factory function instead of a class; ``in_shape`` is not asked for (LazyLinear reads it)."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


NOT_A_MODEL = 3
