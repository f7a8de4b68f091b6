"""Overhaul of feature distillation (OFD): pre-ReLU features, margin-ReLU teacher, partial L2.

Heo, Kim, Yun, Park, Kwak & Choi, "A Comprehensive Overhaul of Feature Distillation", ICCV 2019
(arXiv:1904.01866). Features are taken before the ReLU, at the end of each stage (Sec. 3.3). With T the
teacher feature, S the student feature and r the student connector (1x1 conv + BN, Sec. 3.1):
    teacher transform (margin ReLU, Eq. 3):  sigma_m(x) = max(x, m),  m_c = E[x_c | x_c < 0] per channel c
    partial L2 (Eq. 5):  d_p(T, S) = sum_i { 0 if S_i <= T_i <= 0;  (T_i - S_i)^2 otherwise }
    L = L_CE + alpha * sum_k d_p(sigma_m(T_k), r_k(S_k))
The paper computes m_c in closed form from the teacher's BN before ReLU, assuming x_c ~ N(beta_c, gamma_c^2)
(official code ``get_margin_from_BN``). Here m_c is computed empirically in ``prepare()`` as the mean of
the negative values of channel c over the teacher's captured features on the whole (un-augmented)
training set, which needs no access to the teacher's modules and no Gaussian assumption; a channel with
no negative value gets m_c = 0 (targets of such channels are never negative in training).

Implemented form (official code, clovaai/overhaul-distillation, CIFAR-100 ``distiller.py`` and
``train_with_distillation.py``): d_p is summed over all elements, pair k of n is weighted 1/2^(n-1-k)
(later stages weigh more), and the total is divided by the batch size B and weighted by alpha = 1e-3:
    L = CE + weight / B * sum_k d_p(sigma_m(T_k), r_k(S_k)) / 2^(n-1-k),   weight = 1e-3 (CIFAR-100;
the official ImageNet script uses 1e-4). The teacher stays in eval mode here (the official CIFAR code
leaves it in train mode, so its BN uses batch statistics).

Layers: capture pre-ReLU outputs, i.e. the BN of a conv-BN-ReLU block. For the ``cnn`` model that is
``features.<i>.1`` (before the ReLU and the max-pool) for the teacher and, as in the paper, the student.
Each pair needs equal H x W (the 1x1 connector bridges channels only); a mismatch is a ``ConfigError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from distillation_studies.common.config import require_positive, require_range
from distillation_studies.learning.methods.shared import check_layer_lists, conv_pairs, label_cross_entropy
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs


@dataclass(frozen=True)
class OFDConfig:
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()
    weight: float = 1e-3
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        check_layer_lists(self, where)
        require_positive(self, where, "weight")


def connector(student_channels: int, teacher_channels: int) -> nn.Sequential:
    """r: 1x1 conv (He init over output fan, as the official code) + BN."""
    conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / teacher_channels))
    return nn.Sequential(conv, nn.BatchNorm2d(teacher_channels))


def negative_mean(features: Tensor, chunk: int = 1024) -> Tensor:
    """Per-channel E[x | x < 0] over (N, C, H, W) features, 0 for channels with no negative value."""
    total = torch.zeros(features.shape[1], dtype=torch.float64, device=features.device)
    count = torch.zeros(features.shape[1], dtype=torch.float64, device=features.device)
    dims = [0, *range(2, features.dim())]
    for start in range(0, len(features), chunk):
        part = features[start : start + chunk]
        total += part.clamp(max=0).sum(dims).double()
        count += (part < 0).sum(dims).double()
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total)).to(features.dtype)


def partial_l2(source: Tensor, target: Tensor, margin: Tensor) -> Tensor:
    """d_p(max(target, margin), source), summed over all elements."""
    target = torch.maximum(target, margin)
    keep = (source > target) | (target > 0)
    return ((source - target).pow(2) * keep).sum()


class OverhaulFeatureDistillation(DistillationMethod):
    Config = OFDConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"
    needs_teacher_train = True  # prepare() fits to the teacher's training-set outputs

    def __init__(self, config: OFDConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        pairs = conv_pairs(config, setup, "ofd", same_spatial=True)
        self.connectors = nn.ModuleList([connector(s[0], t[0]) for s, t in pairs])
        for k, (_, t_shape) in enumerate(pairs):
            self.register_buffer(f"margin{k}", torch.zeros(1, t_shape[0], 1, 1))

    @classmethod
    def layers(cls, config: OFDConfig) -> tuple[list[str], list[str]]:
        return list(config.student_layers), list(config.teacher_layers)

    def margins(self) -> list[Tensor]:
        return [getattr(self, f"margin{k}") for k in range(len(self.connectors))]

    def prepare(self, teacher_train: ModelOutputs | None, train_data: Any) -> None:
        """m_c = E[x_c | x_c < 0] from the teacher's features on the training set."""
        with torch.no_grad():
            for margin, layer in zip(self.margins(), self.config.teacher_layers):
                margin.copy_(negative_mean(teacher_train.features[layer]).view_as(margin))

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        n = len(self.connectors)
        distill = sum(
            partial_l2(connect(student.features[s]), teacher.features[t].detach(), margin) / 2 ** (n - 1 - k)
            for k, (connect, margin, s, t) in enumerate(
                zip(self.connectors, self.margins(), self.config.student_layers, self.config.teacher_layers)
            )
        )
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "ofd": self.config.weight * distill / student.logits.shape[0],
        }
