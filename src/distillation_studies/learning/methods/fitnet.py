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
from distillation_studies.learning.methods.shared import as_map, label_cross_entropy, make_adapter, map_shape

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


class ConvRegressor(nn.Module):
    """conv -> BatchNorm -> ReLU from the student's (C, H, W) to the teacher's (RepDistiller ``ConvReg``)."""

    def __init__(self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> None:
        super().__init__()
        (s_c, s_h, s_w), (t_c, t_h, t_w) = map_shape(student_shape, WHERE), map_shape(teacher_shape, WHERE)
        self.out_shape = tuple(teacher_shape)
        if s_h == 2 * t_h and s_w == 2 * t_w:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif 2 * s_h == t_h and 2 * s_w == t_w:
            self.conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        elif s_h >= t_h and s_w >= t_w:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        else:
            raise ConfigError(
                f"{WHERE}: the published regressor cannot map a student map of H x W {s_h} x {s_w} to a "
                f"teacher map of {t_h} x {t_w} (it needs the student's size to be twice, half, or at least "
                "the teacher's); choose other layers or regressor: conv"
            )
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(as_map(x))
        if self.training and y.shape[0] * y.shape[2] * y.shape[3] == 1:
            # one value per channel (a last batch of 1 on flat features) has no batch variance:
            # normalise with the running statistics instead of failing
            bn = self.bn
            y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            y = self.bn(y)
        return self.relu(y).reshape(x.shape[0], *self.out_shape)


def build_regressor(kind: str, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    if kind == "published":
        return ConvRegressor(student_shape, teacher_shape)
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
