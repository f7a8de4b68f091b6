"""Knowledge distillation with soft targets.

Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015 (arXiv:1503.02531):
    L = (1 - alpha) * CE(y, softmax(z_s)) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
The T^2 factor keeps the soft-target gradients on the same scale as T changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distillation_studies.core.config import require_positive, require_range
from distillation_studies.core.methods.base import Batch, DistillationMethod, ModelOutputs


@dataclass(frozen=True)
class KDConfig:
    temperature: float = 4.0
    alpha: float = 0.9

    def check(self, where: str) -> None:
        require_positive(self, where, "temperature")
        require_range(self, where, "alpha", 0.0, 1.0)


def soft_target_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(p_t || p_s) at temperature T, averaged over the batch."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


class KnowledgeDistillation(DistillationMethod):
    Config = KDConfig

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        alpha, temperature = self.config.alpha, self.config.temperature
        return {
            "ce": (1.0 - alpha) * F.cross_entropy(student.logits, batch.labels),
            "kd": alpha * soft_target_kl(student.logits, teacher.logits, temperature),
        }
