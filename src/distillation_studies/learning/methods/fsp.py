"""FSP: match the "flow of solution procedure" matrices, Gram matrices between two layers' features.

Yim, Joo, Bae & Kim, "A Gift from Knowledge Distillation: Fast Optimization, Network Minimization and
Transfer Learning", CVPR 2017. For two feature maps F1 (h x w x m) and F2 (h x w x n), Eq. 1:
    G_{i,j}(x; W) = sum_{s=1}^{h} sum_{t=1}^{w} F1_{s,t,i}(x; W) * F2_{s,t,j}(x; W) / (h * w)
and, over n layer pairs, Eq. 2:
    L_FSP(W_t, W_s) = 1/N sum_x sum_{i=1}^{n} lambda_i * || G_i^T(x; W_t) - G_i^S(x; W_s) ||_2^2
with equal lambda_i. Layers are given as lists; FSP matrix i is taken between consecutive entries
i and i+1 of ``student_layers`` (resp. ``teacher_layers``), as RepDistiller does. When the two maps of a
pair differ in H x W, the larger is average-pooled to the smaller (RepDistiller ``distiller_zoo/FSP.py``;
the paper picks equal-size layers).

Implemented form (RepDistiller): the squared difference is averaged over the batch and the m x n matrix
entries (lambda_i = beta / (m n)) and summed over matrices:
    L_FSP = beta * sum_i mean_{b, j, k} (G_i^S[b, j, k] - G_i^T[b, j, k])^2

Training: the paper trains in two stages, first the student on L_FSP alone, then on the main task alone
(RepDistiller: 30 FSP-only "init" epochs at unit weight, then CE with no FSP term). With the default
``stage1_epochs: 0`` training is single-stage and joint, L = CE + beta * L_FSP; ``stage1_epochs: k``
reproduces the two stages inside the one loop: epochs 1..k use beta * L_FSP only (CE weighted 0), later
epochs CE only (FSP weighted 0). Default beta = 50 is the ``-b 50`` of RepDistiller's CIFAR-100 script
(which its FSP code never applies, since its main stage has no FSP term); the paper gives no value.

Channels: FSP matrices are m x n, so student and teacher layer i must have equal channel counts, as in
the paper and RepDistiller (which raises). A mismatch is a ``ConfigError`` unless ``adapter: true``, an
addition not in the paper: then each student map whose channel count differs first passes through a
learned 1x1 convolution (no bias) to the teacher's count, so G_S = G(W1 F1, W2 F2) = W1 G(F1, F2) W2^T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import require_positive, require_range
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.shared import check_layer_lists, check_stage_epochs, conv_pairs, label_cross_entropy, staged_terms
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs


@dataclass(frozen=True)
class FSPConfig:
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()
    beta: float = 50.0
    adapter: bool = False
    stage1_epochs: int = 0
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        check_layer_lists(self, where, minimum=2)
        require_positive(self, where, "beta")
        if self.stage1_epochs < 0:
            raise ConfigError(f"{where}.stage1_epochs: must be >= 0 (0 = joint CE + FSP), got {self.stage1_epochs}")


def fsp_matrix(first: Tensor, second: Tensor) -> Tensor:
    """G[b, i, j] = mean over positions of first[b, i] * second[b, j], after pooling to the smaller H x W."""
    size = (min(first.shape[2], second.shape[2]), min(first.shape[3], second.shape[3]))
    first, second = F.adaptive_avg_pool2d(first, size), F.adaptive_avg_pool2d(second, size)
    return torch.einsum("bihw,bjhw->bij", first, second) / (size[0] * size[1])


def fsp_loss(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """sum over consecutive layer pairs of mean (G_S - G_T)^2."""
    return sum(
        (fsp_matrix(s1, s2) - fsp_matrix(t1, t2)).pow(2).mean()
        for s1, s2, t1, t2 in zip(student[:-1], student[1:], teacher[:-1], teacher[1:])
    )


class FlowOfSolutionProcedure(DistillationMethod):
    Config = FSPConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def __init__(self, config: FSPConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        adapters = []
        for s_layer, t_layer, (s_shape, t_shape) in zip(
            config.student_layers, config.teacher_layers, conv_pairs(config, setup, "fsp", same_spatial=False)
        ):
            if s_shape[0] == t_shape[0]:
                adapters.append(nn.Identity())
            elif config.adapter:
                adapters.append(nn.Conv2d(s_shape[0], t_shape[0], kernel_size=1, bias=False))
            else:
                raise ConfigError(
                    f"fsp.student_layers/teacher_layers: student {s_layer!r} has {s_shape[0]} channels but teacher "
                    f"{t_layer!r} has {t_shape[0]}; FSP matrices need equal channel counts per layer "
                    "(pair layers of equal width, or set fsp.adapter: true for learned 1x1 adapters)"
                )
        self.adapters = nn.ModuleList(adapters)

    @classmethod
    def layers(cls, config: FSPConfig) -> tuple[list[str], list[str]]:
        return list(config.student_layers), list(config.teacher_layers)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        super().start_epoch(epoch, epochs)
        check_stage_epochs("fsp", "stage1_epochs", self.config.stage1_epochs, epochs)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        s = [adapt(student.features[layer]) for adapt, layer in zip(self.adapters, self.config.student_layers)]
        t = [teacher.features[layer].detach() for layer in self.config.teacher_layers]
        ce = label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing)
        fsp = self.config.beta * fsp_loss(s, t)
        return staged_terms(ce, "fsp", fsp, getattr(self, "epoch", None), self.config.stage1_epochs)
