"""Variational information distillation: maximise a variational lower bound on I(teacher; student).

Ahn, Hu, Damianou, Lawrence, Dai, "Variational Information Distillation for Knowledge Transfer",
CVPR 2019 (arXiv:1904.05835), Sec. 3. For each (student layer s, teacher layer t) pair the teacher
feature is modelled as a Gaussian whose mean a regressor mu(.) predicts from the student feature and
whose variance is learned per channel c, shared over positions (h, w):
    sigma_c^2 = softplus(alpha_c) + eps
    -log q(t | s) = sum_{c,h,w} [ 1/2 * log sigma_c^2 + (t_{c,h,w} - mu_{c,h,w}(s))^2 / (2 sigma_c^2) ] + const
Minimising it (up to the constant) maximises the bound. As in RepDistiller's ``VIDLoss`` (code from the
authors), the sum is replaced by the mean over batch, channels and positions for each pair, the pairs'
losses are summed, and
    L = CE + weight * sum_pairs mean( 1/2 * ( log sigma^2 + (t - mu(s))^2 / sigma^2 ) )
mu is three bias-free 1x1 convs C_s -> C_t -> C_t -> C_t with ReLUs between them; alpha starts at
softplus^-1(init_pred_var - eps) so sigma^2 starts at ``init_pred_var``.

Defaults: RepDistiller CIFAR-100 (``scripts/run_cifar_distill.sh``: ``--distill vid -a 0 -b 1``,
``VIDLoss(init_pred_var=5.0, eps=1e-5)``; mdistiller ``VID.LOSS.FEAT_WEIGHT 1.0`` agrees). RepDistiller
pairs every intermediate block (``feat[1:-1]``). When a pair's spatial sizes differ, the larger map is
average-pooled to the smaller (as RepDistiller). Flat features (D,) are treated as (D, 1, 1) maps, so
the regressor is then an MLP. The regressors and alphas are trainable method parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import require_positive, require_range
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import as_map, check_layer_lists, label_cross_entropy, map_shape


@dataclass(frozen=True)
class VIDConfig:
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()
    weight: float = 1.0
    init_pred_var: float = 5.0
    eps: float = 1e-5
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        check_layer_lists(self, where)
        require_positive(self, where, "weight", "eps")
        if self.init_pred_var <= self.eps:
            raise ConfigError(f"{where}.init_pred_var: must be > eps ({self.eps}), got {self.init_pred_var}")


class VIDPair(nn.Module):
    """mu(s) regressor and per-channel variance for one (student, teacher) layer pair."""

    def __init__(self, student_channels: int, teacher_channels: int, init_pred_var: float, eps: float) -> None:
        super().__init__()
        self.regressor = nn.Sequential(
            nn.Conv2d(student_channels, teacher_channels, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(teacher_channels, teacher_channels, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(teacher_channels, teacher_channels, 1, bias=False),
        )
        # softplus(alpha) + eps = init_pred_var  <=>  alpha = log(exp(init_pred_var - eps) - 1)
        self.alpha = nn.Parameter(torch.full((teacher_channels,), math.log(math.expm1(init_pred_var - eps))))
        self.eps = eps

    def variance(self) -> Tensor:
        return F.softplus(self.alpha) + self.eps

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        if student.shape[2:] != teacher.shape[2:]:
            size = tuple(min(a, b) for a, b in zip(student.shape[2:], teacher.shape[2:]))
            student, teacher = F.adaptive_avg_pool2d(student, size), F.adaptive_avg_pool2d(teacher, size)
        mean = self.regressor(student)
        variance = self.variance().view(1, -1, 1, 1)
        return (0.5 * (torch.log(variance) + (teacher - mean) ** 2 / variance)).mean()


class VariationalInformationDistillation(DistillationMethod):
    Config = VIDConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def __init__(self, config: VIDConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        pairs = []
        for s_layer, t_layer in zip(config.student_layers, config.teacher_layers):
            s_channels = map_shape(setup.student_shapes[s_layer], f"vid.student_layers ({s_layer!r})")[0]
            t_channels = map_shape(setup.teacher_shapes[t_layer], f"vid.teacher_layers ({t_layer!r})")[0]
            pairs.append(VIDPair(s_channels, t_channels, config.init_pred_var, config.eps))
        self.pairs = nn.ModuleList(pairs)

    @classmethod
    def layers(cls, config: VIDConfig) -> tuple[list[str], list[str]]:
        return list(config.student_layers), list(config.teacher_layers)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        losses = [
            pair(as_map(student.features[s_layer]), as_map(teacher.features[t_layer]).detach())
            for pair, s_layer, t_layer in zip(self.pairs, self.config.student_layers, self.config.teacher_layers)
        ]
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "vid": self.config.weight * torch.stack(losses).sum(),
        }
