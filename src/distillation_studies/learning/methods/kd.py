"""Knowledge distillation with soft targets.

Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015 (arXiv:1503.02531):
    L = (1 - alpha) * CE(y, softmax(z_s)) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
The T^2 factor keeps the soft-target gradients on the same scale as T changes.

Optional logit standardisation (``logit_standardization: true``), Sun et al., "Logit Standardization
in Knowledge Distillation", CVPR 2024 (arXiv:2403.01427), Algorithm 1:
    Z(x; T) = (x - mean(x)) / sigma(x) / T,   sigma(x) = sqrt(1/K * sum_k (x_k - mean(x))^2)
applied per sample to both teacher and student logits in place of x / T (the CE term keeps raw
logits; T^2 still scales the KL term, Algorithm 2). sigma is the population std of the paper's
equation; the authors' code uses torch.std (Bessel-corrected), which differs by sqrt(K / (K - 1)).
The authors' CIFAR-100 KD example pairs it with base T = 2 and KD weight 9; our defaults stay unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_positive, require_range
from distillation_studies.learning.methods.base import Batch, DistillationMethod, ModelOutputs


@dataclass(frozen=True)
class KDConfig:
    temperature: float = 4.0
    alpha: float = 0.9
    logit_standardization: bool = False

    def check(self, where: str) -> None:
        require_positive(self, where, "temperature")
        require_range(self, where, "alpha", 0.0, 1.0)


def standardize_logits(logits: Tensor, eps: float = 1e-7) -> Tensor:
    """Z-score each sample's logits over classes: (z - mean) / (std + eps), std over 1/K (Sun et al. 2024)."""
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True, correction=0)
    return (logits - mean) / (std + eps)


def soft_target_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float | Tensor) -> Tensor:
    """T^2 * KL(p_t || p_s) at temperature T, averaged over the batch."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


class KnowledgeDistillation(DistillationMethod):
    Config = KDConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        alpha, temperature = self.config.alpha, self.config.temperature
        student_logits, teacher_logits = student.logits, teacher.logits
        if self.config.logit_standardization:
            student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
        return {
            "ce": (1.0 - alpha) * F.cross_entropy(student.logits, batch.labels),
            "kd": alpha * soft_target_kl(student_logits, teacher_logits, temperature),
        }
