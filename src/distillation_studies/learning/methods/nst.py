"""Neuron selectivity transfer: match the distributions of channel activation patterns by MMD.

Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer", 2017
(arXiv:1707.01219). Each channel k of a feature map F (C x H x W) is one sample f^k in R^{HW}, its
flattened map, l2-normalised. With a kernel k(.,.), Eq. 4-5 of the paper:
    MMD^2(F_T, F_S) = 1/C_T^2 sum_{i,i'} k(f_T^i, f_T^i') + 1/C_S^2 sum_{j,j'} k(f_S^j, f_S^j')
                      - 2/(C_T C_S) sum_{i,j} k(f_S^j, f_T^i)
    L_NST = H(y, p_S) + lambda/2 * MMD^2(F_T, F_S)
Polynomial kernel k(x, y) = (x^T y + c)^d with d = 2, c = 0 (the paper's polynomial setting, for which
MMD^2 reduces to a Gram-matrix "style" loss between the two sets of channel maps).

Implemented form (RepDistiller ``distiller_zoo/NST.py``): MMD^2 is computed per sample, averaged over the
batch, summed over layer pairs and weighted by beta (RepDistiller has no 1/2, so beta = lambda/2):
    L = CE + beta * sum_j mean_b MMD^2(F_T^j[b], F_S^j[b])
Default beta = 50: RepDistiller's CIFAR-100 script (``--distill nst -a 0 -b 50``).

The kernel compares HW-dimensional vectors, so channel counts may differ but each pair's spatial sizes
must match; RepDistiller average-pools the larger map, which is not in the paper, so a mismatch is a
``ConfigError`` listing the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_positive, require_range
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.shared import check_layer_lists, conv_pairs, label_cross_entropy
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs


@dataclass(frozen=True)
class NSTConfig:
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()
    beta: float = 50.0
    degree: int = 2
    offset: float = 0.0
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        check_layer_lists(self, where)
        require_positive(self, where, "beta", "degree")
        if self.offset < 0:
            raise ConfigError(f"{where}.offset: must be >= 0 (kernel (x^T y + c)^d), got {self.offset}")


def polynomial_kernel(a: Tensor, b: Tensor, degree: int = 2, offset: float = 0.0) -> Tensor:
    """k(a_i, b_j) = (a_i^T b_j + c)^d for every pair of rows: (B, M, D) x (B, N, D) -> (B, M, N)."""
    return (a @ b.transpose(1, 2) + offset).pow(degree)


def mmd2(student: Tensor, teacher: Tensor, degree: int = 2, offset: float = 0.0) -> Tensor:
    """Batch-mean MMD^2 between the l2-normalised channel maps of (B, C_S, H, W) and (B, C_T, H, W)."""
    s = F.normalize(student.flatten(2), dim=2)
    t = F.normalize(teacher.flatten(2), dim=2)
    return (
        polynomial_kernel(t, t, degree, offset).mean()
        + polynomial_kernel(s, s, degree, offset).mean()
        - 2 * polynomial_kernel(s, t, degree, offset).mean()
    )


class NeuronSelectivityTransfer(DistillationMethod):
    Config = NSTConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def __init__(self, config: NSTConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        conv_pairs(config, setup, "nst", same_spatial=True)

    @classmethod
    def layers(cls, config: NSTConfig) -> tuple[list[str], list[str]]:
        return list(config.student_layers), list(config.teacher_layers)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        losses = [
            mmd2(student.features[s], teacher.features[t].detach(), self.config.degree, self.config.offset)
            for s, t in zip(self.config.student_layers, self.config.teacher_layers)
        ]
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "nst": self.config.beta * sum(losses),
        }
