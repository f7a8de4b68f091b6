"""MobileNetV2 (Sandler et al. 2018) as in the CRD / RepDistiller repo: ``mobilenetv2`` = expansion 6, width 0.5.

That variant (RepDistiller's ``MobileNetV2`` / ``mobile_half``) keeps ImageNet's stride-2 stem on CIFAR,
always has the 1x1 expansion conv (also at expansion 1), does not round widths to multiples of 8
(``int(c * 0.5)``) and keeps the 1280-wide last conv for widths <= 1.
No keys: ``{"name": "mobilenetv2", "in_shape": [3, 32, 32], "num_classes": 100}``.

Module paths (``feature_layers``, shallow to deep; on 32x32 inputs):

* ``stem``     conv3x3/2-BN-ReLU, ``(16, 16, 16)`` (RepDistiller's f0)
* ``blocks.1`` ``(12, 16, 16)``, ``blocks.2`` ``(16, 8, 8)``, ``blocks.4`` ``(48, 4, 4)``, ``blocks.6`` ``(160, 2, 2)``:
  outputs of the inverted-residual stages that end each resolution (f1..f4); they end in the linear
  bottleneck's BN, so they are not ReLU-ed
* ``pool``     global average pool of ``head_conv`` (1x1 conv-BN-ReLU to 1280), the flat ``(1280,)``
  embedding feeding ``fc`` (f5)

``blocks.<s>`` are the seven (t, c, n, s) stages; ``blocks.<s>.<i>.project.1`` is a block's last BN.
"""

from __future__ import annotations

from torch import Tensor, nn

from distillation_studies.learning.zoo.common import GlobalPool, ZooEntry, conv_bn, fixed, init_weights

# expansion t, output channels c, repeats n, first stride s (t=None means "the model's expansion").
SETTINGS = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU, 3x3 depthwise-BN-ReLU, 1x1 linear projection-BN; residual when shapes allow."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_planes * expansion
        self.expand = nn.Sequential(*conv_bn(in_planes, hidden, 1), nn.ReLU())
        self.depthwise = nn.Sequential(*conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU())
        self.project = nn.Sequential(*conv_bn(hidden, out_planes, 1))
        self.residual = stride == 1 and in_planes == out_planes

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    feature_layers = ("stem", "blocks.1", "blocks.2", "blocks.4", "blocks.6", "pool")

    def __init__(self, num_classes: int, in_channels: int = 3, expansion: int = 6, width: float = 0.5) -> None:
        super().__init__()
        planes = int(32 * width)
        self.stem = nn.Sequential(*conv_bn(in_channels, planes, 3, stride=2), nn.ReLU())
        stages = []
        for t, c, n, s in SETTINGS:
            out_planes = int(c * width)
            blocks = []
            for i in range(n):
                blocks.append(InvertedResidual(planes, out_planes, s if i == 0 else 1, expansion if t is None else t))
                planes = out_planes
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        last = int(1280 * width) if width > 1.0 else 1280
        self.head_conv = nn.Sequential(*conv_bn(planes, last, 1), nn.ReLU())
        self.pool = GlobalPool()
        self.fc = nn.Linear(last, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.head_conv(self.blocks(self.stem(x)))))


ENTRIES: dict[str, ZooEntry] = {"mobilenetv2": fixed(MobileNetV2, expansion=6, width=0.5)}
