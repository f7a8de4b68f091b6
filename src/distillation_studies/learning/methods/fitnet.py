"""FitNets: regress a student layer onto a teacher layer ("hint") through a learned adapter.

Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015 (arXiv:1412.6550), Eq. 3:
    L_hint = 1/2 * || u_h(x) - r(v_g(x)) ||^2
with u_h the teacher's hint layer, v_g the student's guided layer and r the regressor (adapter).
Trained jointly with cross-entropy, as RepDistiller does: L = CE + weight * MSE(r(v_g), u_h).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_positive, require_set
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import make_adapter


@dataclass(frozen=True)
class FitNetConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    weight: float = 100.0

    def check(self, where: str) -> None:
        require_set(self, where, "student_layer", "teacher_layer")
        require_positive(self, where, "weight")


class FitNet(LayerPairMethod):
    Config = FitNetConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def __init__(self, config: FitNetConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        self.adapter = make_adapter(
            setup.student_shapes[config.student_layer],
            setup.teacher_shapes[config.teacher_layer],
            "fitnet.student_layer/teacher_layer",
        )


    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        guided = self.adapter(student.features[self.config.student_layer])
        hint = teacher.features[self.config.teacher_layer]
        return {
            "ce": F.cross_entropy(student.logits, batch.labels),
            "hint": self.config.weight * F.mse_loss(guided, hint),
        }
