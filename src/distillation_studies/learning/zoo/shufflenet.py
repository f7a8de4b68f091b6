"""ShuffleNet V1 (g=3) and V2 (1x) in the CIFAR form of the CRD / RepDistiller repo.

Both keep a 1x1 conv stem with 24 channels and no max-pool, then three stages that each halve the
resolution once; global average pooling and a linear classifier. No keys:
``{"name": "shufflenetv1", "in_shape": [3, 32, 32], "num_classes": 100}``.

``shufflenetv1``: stages of 4/8/4 grouped bottlenecks (groups 3, widths 240/480/960, bottleneck width
1/4). A stage's first block is stride 2 and concatenates its output with a 3x3/2 average pool of its
input; the first grouped 1x1 conv of the network (on the 24-channel stem) is ungrouped.

``shufflenetv2``: stages of 1 down-sampling block + 3/7/3 split blocks (widths 116/232/464), then a
1x1 conv-BN-ReLU ``head_conv`` to 1024 channels.

Module paths (``feature_layers``, shallow to deep; on 32x32 inputs):

* ``stem``   1x1 conv-BN-ReLU, ``(24, 32, 32)`` (RepDistiller's f0)
* ``layer1`` ``(240|116, 16, 16)``, ``layer2`` ``(480|232, 8, 8)``, ``layer3`` ``(960|464, 4, 4)``:
  post-ReLU stage outputs
* ``pool``   global average pool (v2: of ``head_conv``), the flat ``(960|1024,)`` embedding feeding ``fc``

Every block's pre-ReLU sum/concatenation passes an identity ``preact`` module (``layer3.<last>.preact``:
RepDistiller's ``preact=True`` stage features; for v2 it is taken before the channel shuffle).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distillation_studies.learning.zoo.common import GlobalPool, ZooEntry, conv_bn, fixed, init_weights


class ChannelShuffle(nn.Module):
    """Interleave ``groups`` channel groups: ``[N, g*c, H, W] -> [N, c*g, H, W]``."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnitV1(nn.Module):
    """Grouped 1x1 - shuffle - 3x3 depthwise - grouped 1x1; added to the input, or concatenated with
    its 3x3/2 average pool when ``stride == 2`` (so ``out_planes`` excludes the input's channels then)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int, first_groups: int) -> None:
        super().__init__()
        mid = out_planes // 4
        self.conv1, self.bn1 = conv_bn(in_planes, mid, 1, groups=first_groups)
        self.relu1 = nn.ReLU()
        self.shuffle = ChannelShuffle(first_groups)
        self.conv2, self.bn2 = conv_bn(mid, mid, 3, stride, groups=mid)
        self.relu2 = nn.ReLU()
        self.conv3, self.bn3 = conv_bn(mid, out_planes, 1, groups=groups)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None
        self.preact = nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.shuffle(self.relu1(self.bn1(self.conv1(x))))
        out = self.bn3(self.conv3(self.relu2(self.bn2(self.conv2(out)))))
        merged = out + x if self.shortcut is None else torch.cat([out, self.shortcut(x)], 1)
        return self.relu(self.preact(merged))


class ShuffleNetV1(nn.Module):
    feature_layers = ("stem", "layer1", "layer2", "layer3", "pool")

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: tuple[int, ...] = (240, 480, 960),
        repeats: tuple[int, ...] = (4, 8, 4),
        groups: int = 3,
    ) -> None:
        super().__init__()
        planes = 24
        self.stem = nn.Sequential(*conv_bn(in_channels, planes, 1), nn.ReLU())
        for index, (width, n) in enumerate(zip(widths, repeats), start=1):
            units = []
            for i in range(n):
                first_groups = 1 if index == 1 and i == 0 else groups
                out = width - planes if i == 0 else width
                units.append(ShuffleUnitV1(planes, out, 2 if i == 0 else 1, groups, first_groups))
                planes = width
            self.add_module(f"layer{index}", nn.Sequential(*units))
        self.pool = GlobalPool()
        self.fc = nn.Linear(planes, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.layer3(self.layer2(self.layer1(self.stem(x))))))


class SplitUnitV2(nn.Module):
    """Keep half the channels; 1x1-BN-ReLU, 3x3 depthwise-BN, 1x1-BN-ReLU on the other half; concat, shuffle.

    ``preact`` sees ``[kept, branch before its last ReLU]`` (the input is non-negative, so the ReLU
    applied to the whole concatenation only acts on the branch half).
    """

    def __init__(self, planes: int) -> None:
        super().__init__()
        half = planes // 2
        self.conv1, self.bn1 = conv_bn(half, half, 1)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = conv_bn(half, half, 3, groups=half)
        self.conv3, self.bn3 = conv_bn(half, half, 1)
        self.preact = nn.Identity()
        self.relu = nn.ReLU()
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        kept, branch = x.chunk(2, dim=1)
        branch = self.bn3(self.conv3(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(branch)))))))
        # ReLU-ing the kept half too changes nothing: every unit's input here is already a ReLU output.
        return self.shuffle(self.relu(self.preact(torch.cat([kept, branch], 1))))


class DownUnitV2(nn.Module):
    """Two stride-2 branches (3x3 dw-BN, 1x1-BN-ReLU | 1x1-BN-ReLU, 3x3 dw-BN, 1x1-BN-ReLU), concat, shuffle."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        half = out_planes // 2
        self.left = nn.Sequential(
            *conv_bn(in_planes, in_planes, 3, 2, groups=in_planes), *conv_bn(in_planes, half, 1), nn.ReLU()
        )
        self.right = nn.Sequential(
            *conv_bn(in_planes, half, 1),
            nn.ReLU(),
            *conv_bn(half, half, 3, 2, groups=half),
            *conv_bn(half, half, 1),
            nn.ReLU(),
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(torch.cat([self.left(x), self.right(x)], 1))


class ShuffleNetV2(nn.Module):
    feature_layers = ("stem", "layer1", "layer2", "layer3", "pool")

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: tuple[int, ...] = (116, 232, 464),
        repeats: tuple[int, ...] = (3, 7, 3),
        last: int = 1024,
    ) -> None:
        super().__init__()
        planes = 24
        self.stem = nn.Sequential(*conv_bn(in_channels, planes, 1), nn.ReLU())
        for index, (width, n) in enumerate(zip(widths, repeats), start=1):
            units = [DownUnitV2(planes, width)] + [SplitUnitV2(width) for _ in range(n)]
            self.add_module(f"layer{index}", nn.Sequential(*units))
            planes = width
        self.head_conv = nn.Sequential(*conv_bn(planes, last, 1), nn.ReLU())
        self.pool = GlobalPool()
        self.fc = nn.Linear(last, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(self.head_conv(x)))


ENTRIES: dict[str, ZooEntry] = {
    "shufflenetv1": fixed(ShuffleNetV1),
    "shufflenetv2": fixed(ShuffleNetV2),
}
