"""Probabilistic knowledge transfer: match the conditional probability that samples are neighbours.

Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer", ECCV 2018
(arXiv:1803.10837), Sec. 3, with the cosine-similarity kernel the paper recommends:
    K(a, b)   = 1/2 * ( a^T b / (||a||_2 ||b||_2) + 1 )                      (values in [0, 1])
    p_{j|i}   = K(t_i, t_j) / sum_{k != i} K(t_i, t_k)     (teacher, each row normalised)
    q_{j|i}   = K(s_i, s_j) / sum_{k != i} K(s_i, s_k)     (student)
    L_PKT     = sum_i sum_{j != i} p_{j|i} * log(p_{j|i} / q_{j|i})          (KL(teacher || student))
Self-pairs j = i are excluded as in the paper (RepDistiller keeps them). The double sum is divided by
b^2, as RepDistiller's ``torch.mean`` over the b x b matrix does, so that its CIFAR-100 weight carries over:
    L = CE + weight * L_PKT / b^2,   weight = 30000
(RepDistiller ``scripts/run_cifar_distill.sh``: ``--distill pkt -a 0 -b 30000``; the CE weight is 1).
Logarithms use (p + eps) / (q + eps) with eps = 1e-7, as RepDistiller does. Relations are
dimension-free, so no adapter is needed; both layers are flattened to vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_positive, require_range, require_set
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, ModelOutputs
from distillation_studies.learning.methods.shared import label_cross_entropy

EPS = 1e-7


@dataclass(frozen=True)
class PKTConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    weight: float = 30000.0
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        require_set(self, where, "student_layer", "teacher_layer")
        require_positive(self, where, "weight")


def cosine_conditional_probabilities(embeddings: Tensor) -> Tensor:
    """p_{j|i} from the cosine kernel: row i holds the distribution over j != i (diagonal zero)."""
    unit = F.normalize(embeddings.flatten(1), p=2, dim=1)
    kernel = (unit @ unit.T + 1.0) / 2.0
    off_diagonal = ~torch.eye(len(unit), dtype=torch.bool, device=unit.device)
    kernel = kernel * off_diagonal
    return kernel / kernel.sum(dim=1, keepdim=True).clamp_min(EPS)


def pkt_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """sum_i sum_{j != i} p_{j|i} log(p_{j|i} / q_{j|i}), divided by b^2."""
    p = cosine_conditional_probabilities(teacher)
    q = cosine_conditional_probabilities(student)
    return (p * torch.log((p + EPS) / (q + EPS))).sum() / len(p) ** 2


class ProbabilisticKnowledgeTransfer(LayerPairMethod):
    Config = PKTConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"


    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        s = student.features[self.config.student_layer]
        t = teacher.features[self.config.teacher_layer].detach()
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "pkt": self.config.weight * pkt_loss(s, t),
        }
