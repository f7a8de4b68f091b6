"""Decoupled knowledge distillation: split KD into target-class and non-target-class terms.

Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022 (arXiv:2203.08679), Sec. 3.
With p = softmax(z / T), the binary target/non-target split b = [p_t, 1 - p_t] and the
distribution over the non-target classes alone p_hat_i = p_i / (1 - p_t) = softmax over i != t:
    KD   = KL(b^T || b^S) + (1 - p_t^T) * KL(p_hat^T || p_hat^S)     (KD rewritten)
    TCKD = KL(b^T || b^S),   NCKD = KL(p_hat^T || p_hat^S)
    DKD  = alpha * TCKD + beta * NCKD                                   (the DKD loss)
Both KL terms are scaled by T^2 and averaged over the batch, as in the authors' mdistiller code.
The training loss is  ce_weight * CE(y, softmax(z_s)) + min(epoch / warmup, 1) * DKD, the
distillation terms warmed up linearly over ``warmup`` EPOCHS (1-based, so epoch 1 gets 1/warmup).
CIFAR-100 defaults from the paper / mdistiller: alpha = 1, beta = 8, T = 4, warmup = 20 epochs
(beta is tuned per teacher-student pair; 8 is mdistiller's default, used for ResNet32x4 -> ResNet8x4).

``logit_standardization: true`` z-scores each sample's logits before dividing by T (Sun et al.,
CVPR 2024; see ``shared.standardize_logits``), as that paper does for DKD; ``label_smoothing``
smooths the CE term's labels (``shared.label_cross_entropy``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_non_negative, require_positive, require_range
from distillation_studies.learning.methods.base import Batch, DistillationMethod, ModelOutputs
from distillation_studies.learning.methods.shared import distillation_logits, label_cross_entropy


@dataclass(frozen=True)
class DKDConfig:
    alpha: float = 1.0
    beta: float = 8.0
    temperature: float = 4.0
    warmup: int = 20
    ce_weight: float = 1.0
    logit_standardization: bool = False
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_positive(self, where, "temperature")
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        require_non_negative(self, where, "alpha", "beta", "ce_weight", "warmup")


def dkd_terms(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """(TCKD, NCKD) at temperature T, each T^2 * KL averaged over the batch."""
    s, t = student_logits / temperature, teacher_logits / temperature
    target = F.one_hot(labels, s.shape[1]).bool()
    batch, classes = s.shape

    def binary_log_probs(z: Tensor) -> Tensor:
        # log [p_t, 1 - p_t], computed from log-sum-exps so neither side underflows
        log_total = torch.logsumexp(z, dim=1)
        log_target = z[target] - log_total
        log_rest = torch.logsumexp(z.masked_fill(target, float("-inf")), dim=1) - log_total
        return torch.stack([log_target, log_rest], dim=1)

    def non_target_log_probs(z: Tensor) -> Tensor:
        return F.log_softmax(z[~target].view(batch, classes - 1), dim=1)

    tckd = F.kl_div(binary_log_probs(s), binary_log_probs(t), reduction="batchmean", log_target=True)
    nckd = F.kl_div(non_target_log_probs(s), non_target_log_probs(t), reduction="batchmean", log_target=True)
    return tckd * temperature**2, nckd * temperature**2


class DecoupledKD(DistillationMethod):
    Config = DKDConfig
    label_terms = frozenset({"ce", "tckd", "nckd"})  # both KD terms split the classes at the true label
    unlabelled = "refuse"
    unlabelled_reason = "its tckd/nckd terms split the classes at each sample's true label"

    def warmup_factor(self) -> float:
        """min(epoch / warmup, 1) for the current (1-based) epoch; 1 without warm-up."""
        warmup = self.config.warmup
        epoch = getattr(self, "epoch", None)
        if warmup == 0 or epoch is None:
            return 1.0
        return min(epoch / warmup, 1.0)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        student_logits, teacher_logits = distillation_logits(
            student.logits, teacher.logits.detach(), config.logit_standardization
        )
        tckd, nckd = dkd_terms(student_logits, teacher_logits, batch.labels, config.temperature)
        factor = self.warmup_factor()
        return {
            "ce": config.ce_weight * label_cross_entropy(student.logits, batch.labels, config.label_smoothing),
            "tckd": factor * config.alpha * tckd,
            "nckd": factor * config.beta * nckd,
        }
