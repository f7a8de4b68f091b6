"""Correlation congruence: match the correlation between instances, not only the instances.

Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019 (arXiv:1904.01802),
Sec. 3.3-3.4. With f_i the L2-normalised embedding of sample i, the correlation matrix uses the
Gaussian RBF kernel approximated by its P-th order Taylor expansion:
    k(f_i, f_j) = exp(-gamma * ||f_i - f_j||^2)
                ~ sum_{p=0}^{P} exp(-2 gamma) * (2 gamma)^p / p! * (f_i . f_j)^p
    C = [k(f_i, f_j)]_{i,j}                      (b x b, one for teacher and one for student)
    L_CC = 1/b^2 * || C_t - C_s ||_2^2           (squared Frobenius norm)
    L = CE + weight * L_CC
(for unit vectors ||f_i - f_j||^2 = 2 - 2 f_i . f_j, so the series is exact as P grows).
The paper uses P = 2 and gamma = 0.4. The student embedding first goes through a learned linear
embedding to the teacher's width (the adapter, trained with the student), then both are normalised.
weight = 0.02 is RepDistiller's CIFAR-100 setting for CC (``scripts/run_cifar_distill.sh``:
``--distill correlation -a 0 -b 0.02``; the CE weight is 1). Caveat: RepDistiller's ``Correlation``
loss is a different, simplified form (mean of products of neighbouring |f_s - f_t|), so that weight
was tuned for another scale; the kernel differences here are small, so expect to tune it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import require_positive, require_set
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, MethodSetup, ModelOutputs


@dataclass(frozen=True)
class CCConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    weight: float = 0.02
    gamma: float = 0.4
    order: int = 2

    def check(self, where: str) -> None:
        require_set(self, where, "student_layer", "teacher_layer")
        require_positive(self, where, "weight", "gamma")
        if self.order < 1:
            raise ConfigError(f"{where}.order: must be >= 1 (order 0 gives a constant kernel), got {self.order}")


def taylor_rbf_correlation(embeddings: Tensor, gamma: float, order: int) -> Tensor:
    """sum_{p=0}^{P} exp(-2g) (2g)^p / p! (f_i . f_j)^p over L2-normalised rows (b x b)."""
    unit = F.normalize(embeddings.flatten(1), p=2, dim=1)
    cosine = unit @ unit.T
    correlation = cosine.new_zeros(cosine.shape)
    for p in range(order + 1):
        correlation = correlation + math.exp(-2.0 * gamma) * (2.0 * gamma) ** p / math.factorial(p) * cosine**p
    return correlation


def cc_loss(student: Tensor, teacher: Tensor, gamma: float, order: int) -> Tensor:
    """||C_t - C_s||^2 / b^2."""
    difference = taylor_rbf_correlation(teacher, gamma, order) - taylor_rbf_correlation(student, gamma, order)
    return difference.pow(2).sum() / len(difference) ** 2


class CorrelationCongruence(LayerPairMethod):
    Config = CCConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def __init__(self, config: CCConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        self.embed = nn.Linear(
            math.prod(setup.student_shapes[config.student_layer]),
            math.prod(setup.teacher_shapes[config.teacher_layer]),
        )


    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        s = self.embed(student.features[self.config.student_layer].flatten(1))
        t = teacher.features[self.config.teacher_layer].detach()
        return {
            "ce": F.cross_entropy(student.logits, batch.labels),
            "cc": self.config.weight * cc_loss(s, t, self.config.gamma, self.config.order),
        }
