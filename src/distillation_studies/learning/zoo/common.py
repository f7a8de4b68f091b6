"""Pieces shared by the zoo families: the empty architecture config, registry entries, pooling, init.

Zoo architectures are fixed by their registry name, so their config has no keys: a spec is just
``{"name": "resnet32x4", "in_shape": [3, 32, 32], "num_classes": 100}``. The first ``in_shape``
entry sets the input channels; the spatial size only matters where a family says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from torch import Tensor, nn

from distillation_studies.common.errors import ConfigError


@dataclass(frozen=True)
class ZooConfig:
    """A fixed architecture: no keys besides ``name``, ``in_shape`` and ``num_classes``."""

    def check(self, where: str) -> None:
        return None


class ZooEntry(NamedTuple):
    """``(config_class, builder)``, unpacked into the registry's ``ModelEntry``.

    The zoo keeps its own tuple so that it never imports ``core.models`` (which imports the zoo).
    """

    config_class: type
    builder: Callable[[Any, tuple[int, ...], int], nn.Module]


def image_channels(in_shape: tuple[int, ...]) -> int:
    """Input channels of an image model; anything but ``[C, H, W]`` is a config error."""
    if len(in_shape) != 3 or any(int(d) <= 0 for d in in_shape):
        raise ConfigError(f"model.in_shape: zoo models need images shaped [C, H, W], got {list(in_shape)}")
    return int(in_shape[0])


def fixed(factory: Callable[..., nn.Module], **arch: Any) -> ZooEntry:
    """Entry for one named architecture: ``factory(in_channels=..., num_classes=..., **arch)``."""

    def build(_cfg: ZooConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return factory(in_channels=image_channels(in_shape), num_classes=num_classes, **arch)

    build.__name__ = f"build_{factory.__name__}"
    return ZooEntry(ZooConfig, build)


class GlobalPool(nn.Module):
    """Global average pooling to a flat ``(N, C)`` embedding (equal to CIFAR's fixed 8x8/4x4 pools)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x).flatten(1)


def init_weights(model: nn.Module) -> None:
    """He-normal (fan-out) convs, unit BatchNorm, zero biases; linears keep PyTorch's default."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """A bias-free conv with "same" padding followed by BatchNorm, as a list to splice into Sequentials."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
    )
    return [conv, nn.BatchNorm2d(out_channels)]
