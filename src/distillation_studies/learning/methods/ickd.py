"""ICKD: match the correlation between a layer's channels (inter-channel correlation).

Liu et al., "Exploring Inter-Channel Correlation for Diversity-preserved Knowledge Distillation",
ICCV 2021 (ICKD-C, the classification form). With a feature map reshaped to F in R^{C x HW}, each
sample's inter-channel correlation matrix is G = F F^T (C x C), every row L2-normalised:
    G~_{c,:} = G_{c,:} / ||G_{c,:}||_2
    L_ICKD = 1 / (B C) * sum_b || G~^S_b - G~^T_b ||_F^2
    L = ce_weight * CE + weight * L_ICKD
The student map first passes a learned embedding to the teacher's channel count, a 1x1 convolution
(no bias) then BatchNorm (the authors' ``Embed``), trained with the student and never deployed. H x W
need not match (G contracts over positions). As the authors' CIFAR-100 code
(github.com/ADLab-AutoDrive/ICKD, ``Cifar100/distiller_zoo/ICKD.py``): the student's and teacher's
last conv stage (``feat[-2]``), ``-a 0 -b 2.5`` (README and ``scripts/run_cifar_distill.sh``):
``weight`` 2.5, CE weight 1, no KD term (ICKD-C "w/o KL"). ``label_smoothing`` smooths the CE labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import require_non_negative, require_positive, require_range, require_set
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import label_cross_entropy


@dataclass(frozen=True)
class ICKDConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    weight: float = 2.5
    ce_weight: float = 1.0
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_set(self, where, "student_layer", "teacher_layer")
        require_positive(self, where, "weight")
        require_non_negative(self, where, "ce_weight")
        require_range(self, where, "label_smoothing", 0.0, 1.0)


def channel_correlation(feature: Tensor) -> Tensor:
    """(B, C, C): F F^T per sample over flattened positions, each row L2-normalised."""
    flat = feature.flatten(2)
    return F.normalize(torch.bmm(flat, flat.transpose(1, 2)), dim=2)


def ickd_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """sum_b ||G~_S - G~_T||_F^2 / (B C)."""
    difference = channel_correlation(student) - channel_correlation(teacher)
    batch, channels = difference.shape[:2]
    return difference.pow(2).sum() / (batch * channels)


class InterChannelCorrelationKD(LayerPairMethod):
    Config = ICKDConfig
    label_terms = frozenset({"ce"})
    unlabelled = "learn"

    def __init__(self, config: ICKDConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        s_shape, t_shape = setup.student_shapes[config.student_layer], setup.teacher_shapes[config.teacher_layer]
        for key, shape in (("student_layer", s_shape), ("teacher_layer", t_shape)):
            if len(shape) != 3:
                raise ConfigError(f"ickd.{key}: needs a conv feature map (C, H, W), got shape {tuple(shape)}")
        self.embed = nn.Sequential(nn.Conv2d(s_shape[0], t_shape[0], kernel_size=1, bias=False), nn.BatchNorm2d(t_shape[0]))

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        s = self.embed(student.features[config.student_layer])
        t = teacher.features[config.teacher_layer].detach()
        return {
            "ce": config.ce_weight * label_cross_entropy(student.logits, batch.labels, config.label_smoothing),
            "ickd": config.weight * ickd_loss(s, t),
        }
