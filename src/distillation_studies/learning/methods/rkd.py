"""Relational knowledge distillation: match distances and angles between samples' embeddings.

Park et al., "Relational Knowledge Distillation", CVPR 2019 (arXiv:1904.05068), Eqs. 4-7:
    psi_D(t_i, t_j) = ||t_i - t_j||_2 / mu,   mu = mean of ||t_i - t_j|| over pairs i != j
    psi_A(t_i, t_j, t_k) = < (t_i - t_j)/||t_i - t_j||, (t_k - t_j)/||t_k - t_j|| >
    L = CE + w_D * Huber(psi_D(s), psi_D(t)) + w_A * Huber(psi_A(s), psi_A(t))
Paper weights: w_D = 25, w_A = 50. No adapter is needed: relations are dimension-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_non_negative, require_range, require_set
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import label_cross_entropy


@dataclass(frozen=True)
class RKDConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    distance_weight: float = 25.0
    angle_weight: float = 50.0
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        require_set(self, where, "student_layer", "teacher_layer")
        require_non_negative(self, where, "distance_weight", "angle_weight")


def normalised_distances(embeddings: Tensor) -> Tensor:
    """Pairwise Euclidean distances divided by their mean over distinct pairs."""
    distances = torch.cdist(embeddings, embeddings)
    off_diagonal = ~torch.eye(len(embeddings), dtype=torch.bool, device=embeddings.device)
    return distances / distances[off_diagonal].mean().clamp_min(1e-12)


def triplet_angles(embeddings: Tensor) -> Tensor:
    """cos of the angle at vertex j for every triplet (i, j, k): shape (B, B, B) indexed [j, i, k]."""
    differences = F.normalize(embeddings.unsqueeze(0) - embeddings.unsqueeze(1), p=2, dim=2)
    return torch.bmm(differences, differences.transpose(1, 2))


def rkd_distance_loss(student: Tensor, teacher: Tensor) -> Tensor:
    return F.smooth_l1_loss(normalised_distances(student), normalised_distances(teacher))


def rkd_angle_loss(student: Tensor, teacher: Tensor) -> Tensor:
    return F.smooth_l1_loss(triplet_angles(student), triplet_angles(teacher))


class RelationalKD(LayerPairMethod):
    Config = RKDConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    @classmethod
    def batch_elements(cls, config: RKDConfig, setup: MethodSetup, batch_size: int) -> int:
        """Student and teacher: (B, B, D) normalised differences, (B, B, B) angles and their loss."""
        width = max(math.prod(setup.student_shapes[config.student_layer]), math.prod(setup.teacher_shapes[config.teacher_layer]))
        return 3 * batch_size**3 + 4 * batch_size**2 * width

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        s = student.features[self.config.student_layer].flatten(1)
        with torch.no_grad():
            t = teacher.features[self.config.teacher_layer].flatten(1)
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "rkd_distance": self.config.distance_weight * rkd_distance_loss(s, t),
            "rkd_angle": self.config.angle_weight * rkd_angle_loss(s, t),
        }
