"""A Dataset over in-memory tensors, for tests of the loop's DataLoader path without files."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class LabelledTensors(Dataset):
    """A Dataset over {"x", "y"} tensors with a ``labels`` attribute, as a StreamedSplit has."""

    def __init__(self, split: dict[str, torch.Tensor]) -> None:
        self.x, self.labels = split["x"], split["y"]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], self.labels[i]
