"""Knowledge review: each teacher level is matched by student features fused from that level and deeper.

Chen, Liu, Zhao, Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021 (arXiv:2104.09044), Sec. 3.
With student features F_1..F_n and teacher features T_1..T_n (shallow to deep), the residual learning
framework fuses student features from deep to shallow with attention-based fusion (ABF) modules:
    Z_n = conv1_n(F_n)
    Z_i = a_i * conv1_i(F_i) + b_i * up(Z_{i+1}),   [a_i, b_i] = sigmoid(conv1x1([conv1_i(F_i), up(Z_{i+1})]))
    Y_i = conv2_i(Z_i)                              (3x3 conv + BN to the teacher's channel count)
with conv1 a 1x1 conv + BN to ``mid = min(max_mid_channel, C_s of the deepest layer)`` channels and
``up`` nearest-neighbour upsampling. The hierarchical context loss (HCL) compares each Y_i with T_i
at full resolution and after adaptive average pooling to 4x4, 2x2 and 1x1 (levels not smaller than
the map are skipped), weighted 1, 1/2, 1/4, 1/8 and normalised by the weights' sum:
    HCL(Y, T) = ( MSE(Y, T) + sum_l w_l * MSE(pool_l(Y), pool_l(T)) ) / (1 + sum_l w_l)
    L = CE + weight * min(epoch / warmup_epochs, 1) * sum_i HCL(Y_i, T_i)
This follows the authors' code as packaged by mdistiller (``mdistiller/distillers/ReviewKD.py``:
``hcl_loss``, ``ABF``), including ABF's kaiming_uniform(a=1) initialisation. Defaults: mdistiller
``engine/cfg.py`` (``REVIEWKD_WEIGHT 1.0``, ``WARMUP_EPOCHS 20``, ``MAX_MID_CHANNEL 512``); note that the
per-pair CIFAR-100 runs use other weights (authors' ``CIFAR-100/script/reviewKD.sh``: 5.0 for most pairs,
8.0, 0.6, 1.0 for resnet110->resnet32; mdistiller ``configs/cifar100/reviewkd.yaml``: 5.0).
``epoch`` is 1-based here (as in mdistiller), so the first epoch already uses 1/warmup_epochs.

Each student/teacher pair must have equal spatial sizes (the review's output is compared as is; mdistiller
would interpolate). Flat features (D,) count as (D, 1, 1) maps, like mdistiller's pooled feature.
The authors take the teacher's pre-activation maps; with the ``cnn`` model that is a block's BatchNorm
output ``features.<i>.1`` (before ReLU and max-pooling, so pair it with a student layer of that H x W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import require_non_negative, require_positive, require_range
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import as_map, check_layer_lists, label_cross_entropy, map_shape

HCL_LEVELS = (4, 2, 1)


@dataclass(frozen=True)
class ReviewKDConfig:
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()
    weight: float = 1.0
    warmup_epochs: int = 20
    max_mid_channel: int = 512
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        check_layer_lists(self, where)
        require_positive(self, where, "weight", "max_mid_channel")
        require_non_negative(self, where, "warmup_epochs")


def hcl_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Hierarchical context loss of one level (mdistiller ``hcl_loss`` for a single pair)."""
    loss = F.mse_loss(student, teacher)
    weight, total = 1.0, 1.0
    for level in HCL_LEVELS:
        if level >= min(student.shape[2:]):
            continue
        weight /= 2.0
        pooled_s = F.adaptive_avg_pool2d(student, (level, level))
        pooled_t = F.adaptive_avg_pool2d(teacher, (level, level))
        loss = loss + weight * F.mse_loss(pooled_s, pooled_t)
        total += weight
    return loss / total


def warmup_factor(epoch: int, warmup_epochs: int) -> float:
    return 1.0 if warmup_epochs == 0 else min(epoch / warmup_epochs, 1.0)


class ABF(nn.Module):
    """Attention-based fusion: 1x1 conv to ``mid`` channels, fuse with the deeper residual, 3x3 conv out."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Returns (output at the teacher's channels, fused mid-channel map passed to the shallower level)."""
        x = self.conv1(x)
        if self.att_conv is not None:
            residual = F.interpolate(residual, size=x.shape[2:], mode="nearest")
            attention = self.att_conv(torch.cat([x, residual], dim=1))
            x = x * attention[:, 0:1] + residual * attention[:, 1:2]
        return self.conv2(x), x


class ReviewKD(DistillationMethod):
    Config = ReviewKDConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def __init__(self, config: ReviewKDConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        s_shapes = [
            map_shape(setup.student_shapes[p], f"reviewkd.student_layers ({p!r})") for p in config.student_layers
        ]
        t_shapes = [
            map_shape(setup.teacher_shapes[p], f"reviewkd.teacher_layers ({p!r})") for p in config.teacher_layers
        ]
        mismatched = [
            f"{s_layer!r} {s} vs {t_layer!r} {t}"
            for s_layer, t_layer, s, t in zip(config.student_layers, config.teacher_layers, s_shapes, t_shapes)
            if s[1:] != t[1:]
        ]
        if mismatched:
            raise ConfigError(
                "reviewkd.student_layers/teacher_layers: each pair needs equal spatial sizes H x W; "
                f"mismatched pairs (C, H, W): {'; '.join(mismatched)}"
            )
        mid = min(config.max_mid_channel, s_shapes[-1][0])
        last = len(s_shapes) - 1
        self.abfs = nn.ModuleList(
            ABF(s[0], mid, t[0], fuse=i < last) for i, (s, t) in enumerate(zip(s_shapes, t_shapes))
        )
        self.warmup = warmup_factor(1, config.warmup_epochs)

    @classmethod
    def layers(cls, config: ReviewKDConfig) -> tuple[list[str], list[str]]:
        return list(config.student_layers), list(config.teacher_layers)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        super().start_epoch(epoch, epochs)
        self.warmup = warmup_factor(epoch, self.config.warmup_epochs)

    def review(self, student_features: list[Tensor]) -> list[Tensor]:
        """Fused student features Y_1..Y_n (shallow to deep) from F_1..F_n, fusing deep to shallow."""
        outputs: list[Tensor] = []
        residual = None
        for abf, feature in zip(reversed(self.abfs), reversed(student_features)):
            out, residual = abf(feature, residual)
            outputs.insert(0, out)
        return outputs

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        fused = self.review([as_map(student.features[p]) for p in self.config.student_layers])
        targets = [as_map(teacher.features[p]).detach() for p in self.config.teacher_layers]
        hcl = torch.stack([hcl_loss(y, t) for y, t in zip(fused, targets)]).sum()
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "reviewkd": self.config.weight * self.warmup * hcl,
        }
