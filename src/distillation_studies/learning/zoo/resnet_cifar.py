"""CIFAR ResNets (He et al. 2016, section 4.2) as used by the CRD / RepDistiller / mdistiller tables.

Three stages of ``n = (depth - 2) / 6`` basic blocks each; ``resnet8 .. resnet110`` use widths
16-16-32-64 and the ``x4`` models 32-64-128-256. A stride-2 1x1-conv + BN shortcut appears wherever a
block changes width or resolution. No keys: ``{"name": "resnet56", "in_shape": [3, 32, 32], "num_classes": 100}``.

Module paths (``feature_layers``, shallow to deep; on 32x32 inputs):

* ``stem``   conv-BN-ReLU, ``(w0, 32, 32)`` (RepDistiller's f0)
* ``layer1`` ``(w1, 32, 32)``, ``layer2`` ``(w2, 16, 16)``, ``layer3`` ``(w3, 8, 8)``: post-ReLU stage outputs
* ``pool``   global average pool, the flat ``(w3,)`` embedding feeding the ``fc`` classifier

Every block ends ``... -> preact -> relu``: ``layer3.<last>.preact`` is the stage output before its final
ReLU (RepDistiller's ``preact=True`` features) and ``layer3.<last>.bn2`` the BN before that ReLU.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from distillation_studies.learning.zoo.common import GlobalPool, ZooEntry, conv_bn, fixed, init_weights


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the (projected) input, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(in_planes, planes, 3, stride)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = conv_bn(planes, planes, 3)
        self.downsample = (
            nn.Sequential(*conv_bn(in_planes, planes, 1, stride)) if stride != 1 or in_planes != planes else None
        )
        self.preact = nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.preact(out + shortcut))


class CifarResNet(nn.Module):
    feature_layers = ("stem", "layer1", "layer2", "layer3", "pool")

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        blocks = (depth - 2) // 6
        conv, bn = conv_bn(in_channels, widths[0], 3)
        self.stem = nn.Sequential(OrderedDict(conv=conv, bn=bn, relu=nn.ReLU()))
        planes = widths[0]
        for index, (width, stride) in enumerate(zip(widths[1:], (1, 2, 2)), start=1):
            layers = [BasicBlock(planes, width, stride)] + [BasicBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*layers))
            planes = width
        self.pool = GlobalPool()
        self.fc = nn.Linear(planes, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x))


NARROW = (16, 16, 32, 64)
WIDE = (32, 64, 128, 256)

ENTRIES: dict[str, ZooEntry] = {
    **{f"resnet{depth}": fixed(CifarResNet, depth=depth, widths=NARROW) for depth in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": fixed(CifarResNet, depth=8, widths=WIDE),
    "resnet32x4": fixed(CifarResNet, depth=32, widths=WIDE),
}
