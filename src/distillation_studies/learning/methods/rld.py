"""Refined logit distillation: a confidence term plus KL over the classes the teacher ranks below the label.

Sun et al., "Knowledge Distillation with Refined Logits", ICCV 2025 (arXiv:2408.07703). With y the
true class, m the teacher's top class, p = softmax(z / T_s) and q = softmax(z / T):
    SCD = T_s^2 * KL([p^T_m, 1 - p^T_m] || [p^S_y, 1 - p^S_y])     (sample confidence distillation)
    MCD = T^2 * KL(q^T_M || q^S_M),   M = {j : z^T_j < z^T_y}         (masked correlation distillation)
q_M is the softmax over the classes in M only: the true class and every class the teacher ranks at
or above it are masked out, so a teacher that misranks the label never teaches its wrong ranking.
A sample whose true class the teacher ranks lowest has an empty M and contributes 0 to MCD.
    L = ce_weight * CE + min(epoch / warmup, 1) * (alpha * SCD + beta * MCD)
warmed up linearly over ``warmup`` epochs as in DKD. Both KLs average over the batch. Defaults are
the authors' CIFAR-100 settings (zju-SWJ/RLD, ``mdistiller/engine/cfg.py`` ``CFG.RLD`` and
``mdistiller/distillers/RLD.py``): alpha = 1, beta = 8, T = 4, T_s (``alpha_temperature``) = 1,
warmup 20 epochs, CE weight 1. ``logit_standardization: true`` z-scores both logits first, the
authors' ``--logit-stand`` option (see ``shared.standardize_logits``).
Both terms read each sample's true label, so RLD cannot use unlabelled (transfer-set) samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_non_negative, require_positive
from distillation_studies.learning.methods.base import Batch, DistillationMethod, ModelOutputs
from distillation_studies.learning.methods.shared import standardize_logits


@dataclass(frozen=True)
class RLDConfig:
    alpha: float = 1.0
    beta: float = 8.0
    temperature: float = 4.0
    alpha_temperature: float = 1.0
    warmup: int = 20
    ce_weight: float = 1.0
    logit_standardization: bool = False

    def check(self, where: str) -> None:
        require_positive(self, where, "temperature", "alpha_temperature")
        require_non_negative(self, where, "alpha", "beta", "warmup", "ce_weight")


def binary_log_probs(logits: Tensor, index: Tensor) -> Tensor:
    """log [p_k, 1 - p_k] per row for class ``index``, from log-sum-exps so neither side underflows."""
    chosen = F.one_hot(index, logits.shape[1]).bool()
    log_total = torch.logsumexp(logits, dim=1)
    log_rest = torch.logsumexp(logits.masked_fill(chosen, float("-inf")), dim=1)
    return torch.stack([logits[chosen] - log_total, log_rest - log_total], dim=1)


def sample_confidence_kl(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """T^2 * KL([p^T_top, 1 - p^T_top] || [p^S_label, 1 - p^S_label]), batch mean."""
    s, t = student_logits / temperature, teacher_logits / temperature
    log_student = binary_log_probs(s, labels)
    log_teacher = binary_log_probs(t, t.argmax(dim=1))
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


def masked_correlation_kl(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """T^2 * KL over the classes the teacher ranks strictly below the label, batch mean (0 for empty rows)."""
    s, t = student_logits / temperature, teacher_logits / temperature
    masked = t >= t.gather(1, labels[:, None])
    empty = masked.all(dim=1, keepdim=True)

    def log_probs(z: Tensor) -> Tensor:  # log-softmax over the kept classes, finite everywhere
        kept = torch.where(empty, z, z.masked_fill(masked, float("-inf")))
        return z - torch.logsumexp(kept, dim=1, keepdim=True)

    log_student, log_teacher = log_probs(s), log_probs(t)
    pointwise = log_teacher.exp() * (log_teacher - log_student)
    return torch.where(masked, 0.0, pointwise).sum() / s.shape[0] * temperature**2


class RefinedLogitDistillation(DistillationMethod):
    Config = RLDConfig
    label_terms = frozenset({"ce", "scd", "mcd"})  # both distillation terms read the true label
    unlabelled = "refuse"
    unlabelled_reason = "its scd/mcd terms read each sample's true label (its probability and the teacher's rank of it)"

    def warmup_factor(self) -> float:
        """min(epoch / warmup, 1) for the current (1-based) epoch; 1 without warm-up."""
        epoch = getattr(self, "epoch", None)
        return 1.0 if self.config.warmup == 0 or epoch is None else min(epoch / self.config.warmup, 1.0)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        student_logits, teacher_logits = student.logits, teacher.logits.detach()
        if config.logit_standardization:
            student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
        factor = self.warmup_factor()
        scd = sample_confidence_kl(student_logits, teacher_logits, batch.labels, config.alpha_temperature)
        mcd = masked_correlation_kl(student_logits, teacher_logits, batch.labels, config.temperature)
        return {
            "ce": config.ce_weight * F.cross_entropy(student.logits, batch.labels),
            "scd": factor * config.alpha * scd,
            "mcd": factor * config.beta * mcd,
        }
