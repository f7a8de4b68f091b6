"""Multi-level logit distillation: KD at several temperatures, aligned per instance, batch and class.

Jin, Wang, Lin, "Multi-Level Logit Distillation", CVPR 2023. With P_T = softmax(z / T) of shape
(B, C), summed over the temperatures T in ``temperatures`` (prediction augmentation):
    instance = sum_T T^2 * KL(P_T^T || P_T^S)                       (per-sample KD, batch mean)
    batch    = sum_T || P_T^T P_T^T' - P_T^S P_T^S' ||_F^2 / B        (B x B sample-similarity Gram)
    class    = sum_T || P_T^T' P_T^T - P_T^S' P_T^S ||_F^2 / C        (C x C class-correlation Gram)
    L = ce_weight * CE + kd_weight * (f_samples * (instance + batch) + f_classes * class)
f_samples and f_classes are the teacher-confidence factors of the authors' code
(Jin-Ying/Multi-Level-Logit-Distillation, ``mdistiller/distillers/KD_ours.py``): the fraction of
samples whose teacher top-1 probability (T = 1) is at or below the batch median, and of classes
whose batch-summed teacher probability is at or below the median over classes. The released code
multiplies each batch-mean term by that mask's mean, so the mask scales a term by about 1/2
rather than selecting samples; we keep that factor.
One view: the paper also distils a strongly augmented view of each image, which this training
loop does not provide, so only the weak (the loop's) view is used: the one-view variant of
zju-SWJ/RLD's ``MLKD_NOAUG.py``, with CE on the one view. Defaults are the authors' CIFAR-100
settings: T in {2, 3, 4, 5, 6}, CE weight 0.1, KD weight 0.9 (mdistiller's ``CFG.KD``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_non_negative
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import share_at_or_below_median, soft_target_kl


@dataclass(frozen=True)
class MLKDConfig:
    temperatures: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0)
    ce_weight: float = 0.1
    kd_weight: float = 0.9

    def check(self, where: str) -> None:
        require_non_negative(self, where, "ce_weight", "kd_weight")
        if not self.temperatures or min(self.temperatures) <= 0:
            raise ConfigError(f"{where}.temperatures: a non-empty list of temperatures > 0, got {list(self.temperatures)}")


def gram_gap(student_probs: Tensor, teacher_probs: Tensor, samples: bool) -> Tensor:
    """Squared Frobenius distance of the sample (B x B) or class (C x C) Gram matrices, / B or / C.

    In float32 without autocast: the entries' differences are small, and bf16 products would round them away.
    """
    with torch.autocast(student_probs.device.type, enabled=False):
        s = student_probs.float() if student_probs.dtype in (torch.bfloat16, torch.float16) else student_probs
        t = teacher_probs.to(s.dtype)
        if samples:
            return ((t @ t.T - s @ s.T) ** 2).sum() / len(s)
        return ((t.T @ t - s.T @ s) ** 2).sum() / s.shape[1]


class MultiLevelLogitDistillation(DistillationMethod):
    Config = MLKDConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    @classmethod
    def batch_elements(cls, config: MLKDConfig, setup: MethodSetup, batch_size: int) -> int:
        """Per temperature, kept for the backward pass: two (B, B) and two (C, C) Gram matrices."""
        return 2 * len(config.temperatures) * (batch_size**2 + setup.num_classes**2)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        student_logits, teacher_logits = student.logits, teacher.logits.detach()
        teacher_probs, dtype = F.softmax(teacher_logits, dim=1), student_logits.dtype
        sample_share = share_at_or_below_median(teacher_probs.max(dim=1).values, dtype)
        class_share = share_at_or_below_median(teacher_probs.sum(dim=0), dtype)
        instance = batch_level = class_level = 0.0
        for temperature in config.temperatures:
            p_s, p_t = F.softmax(student_logits / temperature, dim=1), F.softmax(teacher_logits / temperature, dim=1)
            instance = instance + soft_target_kl(student_logits, teacher_logits, temperature)
            batch_level = batch_level + gram_gap(p_s, p_t, samples=True)
            class_level = class_level + gram_gap(p_s, p_t, samples=False)
        weight = config.kd_weight
        return {
            "ce": config.ce_weight * F.cross_entropy(student_logits, batch.labels),
            "instance": weight * sample_share * instance,
            "batch": weight * sample_share * batch_level,
            "class": weight * class_share * class_level,
        }
