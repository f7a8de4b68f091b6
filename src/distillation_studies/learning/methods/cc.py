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
Default weight 33, measured: RepDistiller's CIFAR-100 CC run weights its own ``Correlation`` loss
(``distiller_zoo/CC.py``: mean_i sum_d |f_s - f_t|_{i,d} |f_s - f_t|_{i+1,d} on unnormalised 128-d
linear embeddings, a different form from the paper's) by 0.02 (``--distill correlation -a 0 -b 0.02``,
CE weight 1). On the same inputs that term is ~1.6e3 times this file's paper-form term, so 0.02 here
made cc ~6e-5 of CE, i.e. CE alone. ``benchmarks/cc_weight.py`` (resnet32x4 -> resnet8x4 ``pool``
features, batch 64, a fresh student and a teacher trained 60 SGD steps on class-structured synthetic
CIFAR-shaped images) measured the weight that gives the paper-form term the size RepDistiller's has
next to CE (about 0.1 x CE): 32.4 (seed 0) and 33.8 (seed 1), hence 33. With an untrained teacher
(``--teacher-steps 0``) the same script gives 1.1e4 (its features are nearly collinear, so the
paper's term is tiny): the ratio depends on the features, so treat 33 as the right order of
magnitude for a teacher whose features have left their initialisation, and tune it per pair.
``label_smoothing`` smooths the CE term's labels (``shared.label_cross_entropy``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import require_positive, require_range, require_set
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import label_cross_entropy


@dataclass(frozen=True)
class CCConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    weight: float = 33.0
    gamma: float = 0.4
    order: int = 2
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_set(self, where, "student_layer", "teacher_layer")
        require_positive(self, where, "weight", "gamma")
        require_range(self, where, "label_smoothing", 0.0, 1.0)
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
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "cc": self.config.weight * cc_loss(s, t, self.config.gamma, self.config.order),
        }
