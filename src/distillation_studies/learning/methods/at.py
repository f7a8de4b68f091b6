"""Attention transfer: match the student's and the teacher's spatial attention maps, layer by layer.

Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the Performance of
Convolutional Neural Networks via Attention Transfer", ICLR 2017 (arXiv:1612.03928).
Activation-based attention of a feature map A (C x H x W), Sec. 3.1 with F_sum^p:
    F(A) = 1/C * sum_c |A_c|^p                (p = 2; the mean over channels, as in the authors' code)
    Q = vec(F(A)),   Q_hat = Q / ||Q||_2
Eq. 2 of the paper:
    L_AT = L_CE + beta/2 * sum_j || Q_hat_S^j - Q_hat_T^j ||_p
with, in Sec. 4.1, "beta = 10^3 divided by the number of elements in attention map and batch size".

Implemented form (the authors' code, szagoruyko/attention-transfer ``at_loss``, and RepDistiller's
``distiller_zoo/AT.py``, identical): per layer pair j the squared difference is averaged over the batch
and the H*W map elements (the paper's division), and the pairs are summed with weight beta (the code
drops the paper's 1/2):
    L = CE + beta * sum_j mean_{b, hw} (Q_hat_S^j[b, hw] - Q_hat_T^j[b, hw])^2
Default beta = 1000: the authors' README (``--beta 1e+3``) and RepDistiller's CIFAR-100 script
(``--distill attention -a 0 -b 1000``).

Attention maps are channel-free, so student and teacher may have any channel counts, but each pair's
spatial sizes must be equal: RepDistiller average-pools the larger map, which is not in the paper, so
here a mismatch is a ``ConfigError`` listing the shapes (``methods.shared.conv_pairs``, which NST, FSP
and OFD use too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_positive, require_range
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import check_layer_lists, conv_pairs, label_cross_entropy


@dataclass(frozen=True)
class ATConfig:
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()
    beta: float = 1000.0
    p: float = 2.0
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        check_layer_lists(self, where)
        require_positive(self, where, "beta", "p")


def attention_map(features: Tensor, p: float = 2.0) -> Tensor:
    """Q_hat: l2-normalised vec(mean_c |A_c|^p), shape (B, H*W)."""
    return F.normalize(features.abs().pow(p).mean(1).flatten(1), dim=1)


def at_loss(student: Tensor, teacher: Tensor, p: float = 2.0) -> Tensor:
    """mean over batch and map elements of (Q_hat_S - Q_hat_T)^2 for one layer pair."""
    return (attention_map(student, p) - attention_map(teacher, p)).pow(2).mean()


class AttentionTransfer(DistillationMethod):
    Config = ATConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def __init__(self, config: ATConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        conv_pairs(config, setup, "at", same_spatial=True)

    @classmethod
    def layers(cls, config: ATConfig) -> tuple[list[str], list[str]]:
        return list(config.student_layers), list(config.teacher_layers)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        losses = [
            at_loss(student.features[s], teacher.features[t].detach(), self.config.p)
            for s, t in zip(self.config.student_layers, self.config.teacher_layers)
        ]
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "at": self.config.beta * sum(losses),
        }
