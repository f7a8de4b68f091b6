"""Streamlined KD: soft targets plus a whitened match of the batch's Gram matrix of logits.

Jeong, Lee, Choi, "Streamlined Knowledge Distillation", CVPR 2026. With z the logits of a batch of
B samples and C classes, n_i = z_i / ||z_i||_2 and G = n n^T / C the (B, B) Gram matrix:
    D = G^S - G^T,   Sigma = cov(D) (rows of D as observations, 1/(B - 1)),   Sigma' = Sigma + lambda I
    L_gram = 1/B * sum_i sqrt(D_i Sigma'^-1 D_i^T)            (a Mahalanobis distance per row)
    L = ce_weight * CE + kd_weight * f_samples * T^2 * KL(p^T || p^S) + kd_weight * f_classes * L_gram
As in the authors' released ``Distiller/SKD.py`` (github.com/HyunJunSik/StreamLined), each
distillation term is a batch mean multiplied by the mean of a teacher-confidence mask:
f_samples is the fraction of samples whose teacher top-1 probability (T = 1) is at or below the
batch median, f_classes the fraction of classes whose batch-summed teacher probability is at or
below the median over classes (median as numpy's 50th percentile, linear interpolation). The
mask so scales each term by about 1/2 rather than selecting samples; we keep that factor.
Sigma is not detached (gradients flow through it, as in the authors' code).
Defaults are the released class defaults: T = 4, lambda = 0.1, CE weight 0.1, KD weight 0.9 (the
authors tune them per pair; their note gives CE 0.5 / KD 0.5 for ResNet32x4 -> ResNet8x4).
The Gram term needs B >= 2 (a covariance of one row is undefined) and is 0 on a 1-sample batch;
it is computed in float32 without autocast, since the Cholesky solve needs it.
torchdistill's ``SKDInstanceLoss``/``SKDDirectionLoss`` differ from the authors' code (no T^2, no 1/C,
no confidence factors); we follow the authors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_non_negative, require_positive
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import share_at_or_below_median, soft_target_kl


@dataclass(frozen=True)
class SKDConfig:
    temperature: float = 4.0
    tikhonov: float = 0.1
    ce_weight: float = 0.1
    kd_weight: float = 0.9

    def check(self, where: str) -> None:
        require_positive(self, where, "temperature", "tikhonov")
        require_non_negative(self, where, "ce_weight", "kd_weight")


def gram_mahalanobis(student_logits: Tensor, teacher_logits: Tensor, tikhonov: float) -> Tensor:
    """Mean over rows of sqrt(D_i (cov(D) + lambda I)^-1 D_i^T), D the difference of the logit Gram matrices / C."""
    batch, classes = student_logits.shape
    if batch < 2:
        return student_logits.sum() * 0.0
    with torch.autocast(student_logits.device.type, enabled=False):
        s = F.normalize(student_logits.float(), dim=1)
        t = F.normalize(teacher_logits.float(), dim=1)
        diff = (s @ s.T - t @ t.T) / classes
        covariance = torch.cov(diff.T) + tikhonov * torch.eye(batch, device=diff.device)
        whitened = torch.cholesky_solve(diff.T, torch.linalg.cholesky(covariance))  # Sigma'^-1 D^T
        squared = (diff * whitened.T).sum(dim=1)
        return squared.clamp_min(1e-12).sqrt().mean()  # clamp: finite gradient where D_i = 0


class StreamlinedKD(DistillationMethod):
    Config = SKDConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    @classmethod
    def batch_elements(cls, config: SKDConfig, setup: MethodSetup, batch_size: int) -> int:
        """(B, B) tensors: two Gram matrices, their difference, its covariance, the Cholesky factor and the solve."""
        return 6 * batch_size**2

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        teacher_logits = teacher.logits.detach()
        teacher_probs, dtype = F.softmax(teacher_logits, dim=1), student.logits.dtype
        sample_share = share_at_or_below_median(teacher_probs.max(dim=1).values, dtype)
        class_share = share_at_or_below_median(teacher_probs.sum(dim=0), dtype)
        return {
            "ce": config.ce_weight * F.cross_entropy(student.logits, batch.labels),
            "kd": config.kd_weight * sample_share * soft_target_kl(student.logits, teacher_logits, config.temperature),
            "gram": config.kd_weight * class_share * gram_mahalanobis(student.logits, teacher_logits, config.tikhonov),
        }
