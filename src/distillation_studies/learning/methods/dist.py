"""DIST: match the teacher's class relations by correlation rather than by exact probabilities.

Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022 (arXiv:2205.10536).
With Y^S = softmax(Z^S / tau), Y^T = softmax(Z^T / tau) of shape (B, C) and
d_p(u, v) = 1 - rho_p(u, v), rho_p the Pearson correlation coefficient:
    L_inter = tau^2 * 1/B * sum_i d_p(Y^S_{i,:}, Y^T_{i,:})    (each sample's row, across classes)
    L_intra = tau^2 * 1/C * sum_j d_p(Y^S_{:,j}, Y^T_{:,j})    (each class's column, across the batch)
    L = ce_weight * CE + beta * L_inter + gamma * L_intra
rho_p is computed as in the authors' code: (u - mean u) . (v - mean v) / (||u - mean u|| ||v - mean v|| + 1e-8).
Defaults are the authors' CIFAR-100 run (image_classification_sota
``configs/strategies/distill/dist_cifar.yaml``: ``kd: dist_t4``, ``ori_loss_weight: 1``,
``kd_loss_weight: 2``, i.e. tau = 4 and beta = gamma = 1 scaled by 2): tau = 4, beta = gamma = 2,
ce_weight = 1. (The ``DIST`` class's own defaults, beta = gamma = tau = 1, are its ImageNet setting.)
The intra-class term needs batches of at least 2 samples (a 1-sample column has no correlation;
it then contributes 1 per class, with zero gradient).
``logit_standardization`` z-scores the logits before tau (``shared.distillation_logits``);
``label_smoothing`` smooths the CE term's labels (``shared.label_cross_entropy``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_non_negative, require_positive, require_range
from distillation_studies.learning.methods.base import Batch, DistillationMethod, ModelOutputs
from distillation_studies.learning.methods.shared import distillation_logits, label_cross_entropy


@dataclass(frozen=True)
class DISTConfig:
    beta: float = 2.0
    gamma: float = 2.0
    tau: float = 4.0
    ce_weight: float = 1.0
    logit_standardization: bool = False
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_positive(self, where, "tau")
        require_non_negative(self, where, "beta", "gamma", "ce_weight")
        require_range(self, where, "label_smoothing", 0.0, 1.0)


def pearson_rows(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation between matching rows of two (N, D) tensors, shape (N,).

    ``eps`` is added to the denominator as in the authors' code (a constant row correlates 0); with
    near-one-hot probabilities the norms are small, and the offset changes the gradient noticeably,
    so it is kept exactly as published.
    """
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def inter_class_relation(student_probs: Tensor, teacher_probs: Tensor) -> Tensor:
    """Mean over samples of 1 - Pearson(student row, teacher row)."""
    return (1.0 - pearson_rows(student_probs, teacher_probs)).mean()


def intra_class_relation(student_probs: Tensor, teacher_probs: Tensor) -> Tensor:
    """Mean over classes of 1 - Pearson(student column, teacher column) across the batch."""
    return inter_class_relation(student_probs.t(), teacher_probs.t())


class DIST(DistillationMethod):
    Config = DISTConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        student_logits, teacher_logits = distillation_logits(
            student.logits, teacher.logits.detach(), config.logit_standardization
        )
        student_probs = F.softmax(student_logits / config.tau, dim=1)
        teacher_probs = F.softmax(teacher_logits / config.tau, dim=1)
        scale = config.tau**2
        return {
            "ce": config.ce_weight * label_cross_entropy(student.logits, batch.labels, config.label_smoothing),
            "dist_inter": config.beta * scale * inter_class_relation(student_probs, teacher_probs),
            "dist_intra": config.gamma * scale * intra_class_relation(student_probs, teacher_probs),
        }
