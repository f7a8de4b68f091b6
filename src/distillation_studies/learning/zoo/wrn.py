"""Wide ResNets (Zagoruyko & Komodakis 2016) ``wrn_<depth>_<k>`` as used by the CRD / RepDistiller tables.

Pre-activation blocks, ``n = (depth - 4) / 6`` per stage, widths ``16k, 32k, 64k``; a 1x1 conv shortcut
(taken from the block's activated input) wherever width or resolution changes; dropout rate 0 as in
those tables. No keys: ``{"name": "wrn_40_2", "in_shape": [3, 32, 32], "num_classes": 100}``.

Module paths (``feature_layers``, shallow to deep; on 32x32 inputs):

* ``stem``   the first 3x3 conv, ``(16, 32, 32)`` (RepDistiller's f0)
* ``block1`` ``(16k, 32, 32)``, ``block2`` ``(32k, 16, 16)``, ``block3`` ``(64k, 8, 8)``: stage outputs, which in a
  pre-activation net are *before* BN-ReLU (the BNs that activate them are ``block2.0.bn1``,
  ``block3.0.bn1`` and ``final.0``, RepDistiller's ``get_bn_before_relu``)
* ``pool``   global average pool of ``final`` (BN-ReLU), the flat ``(64k,)`` embedding feeding ``fc``
"""

from __future__ import annotations

from torch import Tensor, nn

from distillation_studies.learning.zoo.common import GlobalPool, ZooEntry, fixed, init_weights


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the input (or a 1x1 projection of its activation)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = _conv3x3(in_planes, out_planes, stride)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = _conv3x3(out_planes, out_planes)
        needs_projection = stride != 1 or in_planes != out_planes
        self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride, bias=False) if needs_projection else None

    def forward(self, x: Tensor) -> Tensor:
        activated = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(activated))))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(nn.Module):
    feature_layers = ("stem", "block1", "block2", "block3", "pool")

    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"Wide ResNet depth must be 6n+4 with n >= 1, got {depth}")
        blocks = (depth - 4) // 6
        self.stem = _conv3x3(in_channels, 16)
        planes = 16
        for index, (width, stride) in enumerate(zip((16 * widen, 32 * widen, 64 * widen), (1, 2, 2)), start=1):
            layers = [WideBlock(planes, width, stride)] + [WideBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"block{index}", nn.Sequential(*layers))
            planes = width
        self.final = nn.Sequential(nn.BatchNorm2d(planes), nn.ReLU())
        self.pool = GlobalPool()
        self.fc = nn.Linear(planes, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(self.stem(x))))
        return self.fc(self.pool(self.final(x)))


ENTRIES: dict[str, ZooEntry] = {
    f"wrn_{depth}_{widen}": fixed(WideResNet, depth=depth, widen=widen)
    for depth, widen in ((16, 1), (16, 2), (40, 1), (40, 2))
}
