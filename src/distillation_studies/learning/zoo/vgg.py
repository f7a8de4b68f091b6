"""CIFAR VGGs with BatchNorm, as in the CRD / RepDistiller repo (``vgg8``, ``vgg11``, ``vgg13``).

Five stages of 3x3 conv(+bias)-BN-ReLU units (vgg8: one conv per stage; vgg11: 1-1-2-2-2; vgg13: 2 per
stage), max-pooling between stages, global average pooling and a single ``Linear(512, classes)``
classifier (no 4096-wide FC layers). As in that repo the pool between the last two stages is used only
for inputs of 64 pixels or more, so 32x32 inputs reach ``block4`` at 4x4.
No keys: ``{"name": "vgg13", "in_shape": [3, 32, 32], "num_classes": 100}``.

Module paths (``feature_layers``, shallow to deep; on 32x32 inputs):

* ``block0`` ``(64, 32, 32)``, ``block1`` ``(128, 16, 16)``, ``block2`` ``(256, 8, 8)``, ``block3`` ``(512, 4, 4)``,
  ``block4`` ``(512, 4, 4)``: post-ReLU stage outputs (RepDistiller's f0..f4)
* ``pool``   global average pool, the flat ``(512,)`` embedding feeding ``fc``

Each ``block<k>`` is a flat Sequential ``conv, bn, relu, conv, bn, relu, ...``; its second-to-last entry
(e.g. ``block1.1`` in vgg8, ``block1.4`` in vgg13) is the BN before the stage's last ReLU, i.e. the
pre-activation stage output. ``pool0`` .. ``pool3`` are the between-stage pools.
"""

from __future__ import annotations

from torch import Tensor, nn

from distillation_studies.learning.zoo.common import GlobalPool, ZooConfig, ZooEntry, image_channels, init_weights

STAGES: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
}


def _stage(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        in_channels = width
    return nn.Sequential(*layers)


class CifarVGG(nn.Module):
    feature_layers = ("block0", "block1", "block2", "block3", "block4", "pool")

    def __init__(
        self, stages: tuple[tuple[int, ...], ...], num_classes: int, in_channels: int = 3, image_size: int = 32
    ) -> None:
        super().__init__()
        for index, widths in enumerate(stages):
            self.add_module(f"block{index}", _stage(in_channels, widths))
            in_channels = widths[-1]
            if index < 3:
                self.add_module(f"pool{index}", nn.MaxPool2d(2))
            elif index == 3:
                self.pool3 = nn.MaxPool2d(2) if image_size >= 64 else nn.Identity()
        self.pool = GlobalPool()
        self.fc = nn.Linear(in_channels, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool0(self.block0(x))
        x = self.pool1(self.block1(x))
        x = self.pool2(self.block2(x))
        x = self.block4(self.pool3(self.block3(x)))
        return self.fc(self.pool(x))


def _entry(stages: tuple[tuple[int, ...], ...]) -> ZooEntry:
    def build(_cfg: ZooConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return CifarVGG(stages, num_classes, image_channels(in_shape), image_size=min(in_shape[1:]))

    return ZooEntry(ZooConfig, build)


ENTRIES: dict[str, ZooEntry] = {name: _entry(stages) for name, stages in STAGES.items()}
