"""Similarity-preserving knowledge distillation: match the batch's pairwise activation similarities.

Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019 (arXiv:1907.09682), Eqs. 1-5:
    Q   = the layer's activations reshaped to b x (c*h*w)
    G~  = Q Q^T                                   (b x b)
    G   = G~ with each row divided by its L2 norm:  G[i,:] = G~[i,:] / ||G~[i,:]||_2
    L_SP = 1/b^2 * || G_T - G_S ||_F^2
    L   = CE + gamma * L_SP,   gamma = 3000
gamma = 3000 is the paper's CIFAR-10 setting and RepDistiller's CIFAR-100 one
(``scripts/run_cifar_distill.sh``: ``--distill similarity -a 0 -b 3000``; the CE weight is 1).
The paper sums L_SP over several layer pairs; this implementation takes one pair. The row
normalisation makes the loss invariant to scaling either model's activations, and the b x b
matrices need no adapter between widths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_positive, require_range, require_set
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, ModelOutputs
from distillation_studies.learning.methods.shared import label_cross_entropy


@dataclass(frozen=True)
class SPConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    gamma: float = 3000.0
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        require_set(self, where, "student_layer", "teacher_layer")
        require_positive(self, where, "gamma")


def similarity_matrix(activations: Tensor) -> Tensor:
    """Row-L2-normalised Gram matrix of the flattened activations (b x b)."""
    flat = activations.flatten(1)
    return F.normalize(flat @ flat.T, p=2, dim=1)


def sp_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """||G_T - G_S||_F^2 / b^2."""
    difference = similarity_matrix(teacher) - similarity_matrix(student)
    return difference.pow(2).sum() / len(difference) ** 2


class SimilarityPreserving(LayerPairMethod):
    Config = SPConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"


    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        s = student.features[self.config.student_layer]
        t = teacher.features[self.config.teacher_layer].detach()
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "sp": self.config.gamma * sp_loss(s, t),
        }
