"""SRD: a linear projector, batch-normalised features and a log-sum distance, plus soft targets.

Miles, Mikolajczyk, "Understanding the Role of the Projector in Knowledge Distillation", AAAI 2024
(arXiv:2303.11098), the "simple recipe" torchdistill registers as SRD. With f the global-average-
pooled feature of a layer (flat features as they are), W a learned linear projector to the
teacher's width and BN a batch normalisation without affine parameters (eps 1e-4), one per side:
    L_feat = feature_weight * log( sum_{i,d} |BN(W f^S_i) - BN(f^T_i)|_d ^ exponent )
    L = ce_weight * CE + L_feat + kd_weight * T^2 * KL(softmax(z^T / T) || softmax(z^S / T))
The sum runs over the batch and the features (inside the log, so a batch of B adds log B, a
constant). Defaults are the authors' released recipe (roymiles/Simple-Recipe-Distillation,
``imagenet/torchdistill/losses/single.py`` ``OurDistillationLoss``; torchdistill's ``SRDLoss`` with
``configs/sample/ilsvrc2012/srd``): feature weight 2, exponent 4, KD at T = 1 with weight 1, CE
weight 1. They are its ImageNet (ResNet34 -> ResNet18) settings: the authors release no CIFAR-100
configuration. The feature term needs B >= 2 (batch statistics of one sample are undefined) and
is 0 on a 1-sample batch; its sum is clamped at 1e-12 so a perfect match stays finite.
Note: SRD here is the AAAI 2024 method; passing the student's feature through the teacher's
classifier to match the teacher's logits is SRRL (Yang et al., ICLR 2021), a different method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import require_non_negative, require_positive, require_set
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import soft_target_kl

BN_EPS = 1e-4  # the authors' BatchNorm1d eps


@dataclass(frozen=True)
class SRDConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    feature_weight: float = 2.0
    exponent: float = 4.0
    kd_weight: float = 1.0
    temperature: float = 1.0
    ce_weight: float = 1.0

    def check(self, where: str) -> None:
        require_set(self, where, "student_layer", "teacher_layer")
        require_positive(self, where, "exponent", "temperature")
        require_non_negative(self, where, "feature_weight", "kd_weight", "ce_weight")


def pooled(feature: Tensor) -> Tensor:
    """(B, C, H, W) averaged over H x W to (B, C); other shapes flattened to (B, D)."""
    return feature.mean(dim=(2, 3)) if feature.dim() == 4 else feature.flatten(1)


def width(shape: tuple[int, ...]) -> int:
    """The pooled width of a per-sample feature shape: channels of a map, else the flattened size."""
    return shape[0] if len(shape) == 3 else math.prod(shape)


class SimpleRecipeDistillation(LayerPairMethod):
    Config = SRDConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def __init__(self, config: SRDConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        teacher_width = width(setup.teacher_shapes[config.teacher_layer])
        self.projector = nn.Linear(width(setup.student_shapes[config.student_layer]), teacher_width)
        self.student_norm = nn.BatchNorm1d(teacher_width, eps=BN_EPS, affine=False)
        self.teacher_norm = nn.BatchNorm1d(teacher_width, eps=BN_EPS, affine=False)

    def feature_term(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
        projected = self.projector(pooled(student_feature))
        if len(projected) < 2:
            return projected.sum() * 0.0
        gap = self.student_norm(projected) - self.teacher_norm(pooled(teacher_feature.detach()))
        return gap.abs().pow(self.config.exponent).sum().clamp_min(1e-12).log()

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        feature = self.feature_term(student.features[config.student_layer], teacher.features[config.teacher_layer])
        return {
            "ce": config.ce_weight * F.cross_entropy(student.logits, batch.labels),
            "feature": config.feature_weight * feature,
            "kd": config.kd_weight * soft_target_kl(student.logits, teacher.logits.detach(), config.temperature),
        }
