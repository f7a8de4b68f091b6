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
from distillation_studies.learning.methods.shared import soft_target_kl, standardize_logits


@dataclass(frozen=True)
class KDConfig:
    temperature: float = 4.0
    alpha: float = 0.9
    logit_standardization: bool = False

    def check(self, where: str) -> None:
        require_positive(self, where, "temperature")
        require_range(self, where, "alpha", 0.0, 1.0)


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
