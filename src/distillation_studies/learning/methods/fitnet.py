"""FitNets: regress a student layer onto a teacher layer ("hint") through a learned regressor.

Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015 (arXiv:1412.6550), Eq. 3:
    L_hint = 1/2 * || u_h(x) - r(v_g(x)) ||^2
with u_h the teacher's hint layer, v_g the student's guided layer and r the regressor.
Trained jointly with cross-entropy, as RepDistiller does: L = CE + weight * MSE(r(v_g), u_h)
(``-a 0 -b 100``, hint layer 2).

``regressor`` chooses r:
- ``published`` (default): RepDistiller's / mdistiller's ``ConvReg``, a convolution then BatchNorm then
  ReLU, present even when the shapes already match. The convolution follows the spatial sizes as
  there: 3x3 stride 2 when the student map is twice the teacher's, a 4x4 stride-2 transposed
  convolution when it is half, otherwise a (1 + Hs - Ht) x (1 + Ws - Wt) kernel (1x1 for equal sizes).
  Flat features (D,) are read as 1x1 maps.
- ``conv``: the earlier adapter of this project: identity when shapes match, a bias-free 1x1
  convolution for maps of equal H x W, a linear map otherwise (``shared.make_adapter``).
- ``none``: no regressor; the student and teacher features must have the same shape.
``label_smoothing`` smooths the CE term's labels (``shared.label_cross_entropy``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import require_choice, require_positive, require_range, require_set
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import ConvRegressor, label_cross_entropy, make_adapter

REGRESSORS = ["published", "conv", "none"]
WHERE = "fitnet.student_layer/teacher_layer"


@dataclass(frozen=True)
class FitNetConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    weight: float = 100.0
    regressor: str = "published"
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_set(self, where, "student_layer", "teacher_layer")
        require_positive(self, where, "weight")
        require_choice(self, where, "regressor", REGRESSORS)
        require_range(self, where, "label_smoothing", 0.0, 1.0)


def build_regressor(kind: str, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    if kind == "published":
        return ConvRegressor(student_shape, teacher_shape, WHERE)
    if kind == "conv":
        return make_adapter(student_shape, teacher_shape, WHERE)
    if tuple(student_shape) != tuple(teacher_shape):
        raise ConfigError(
            f"{WHERE}: regressor: none needs equal feature shapes, got student {tuple(student_shape)} and "
            f"teacher {tuple(teacher_shape)}; choose matching layers or regressor: published"
        )
    return nn.Identity()


class FitNet(LayerPairMethod):
    Config = FitNetConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def __init__(self, config: FitNetConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        self.adapter = build_regressor(
            config.regressor, setup.student_shapes[config.student_layer], setup.teacher_shapes[config.teacher_layer]
        )

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        guided = self.adapter(student.features[self.config.student_layer])
        hint = teacher.features[self.config.teacher_layer]
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "hint": self.config.weight * F.mse_loss(guided, hint),
        }
