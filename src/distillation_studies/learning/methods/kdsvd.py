"""KD-SVD: distil how the dominant feature directions of consecutive layers relate, found by SVD.

Lee, Kim & Song, "Self-supervised Knowledge Distillation Using Singular Value Decomposition", ECCV 2018
(arXiv:1807.06819). Each layer's map, as X in R^{HW x C} per sample, is compressed by truncated SVD
to its leading right singular vectors V (C x k), unit-normalised, scaled by the (normalised) teacher
singular values; the student keeps k + 3 vectors and, for each teacher vector, the one of largest
|cosine| with it, sign-aligned. Between consecutive layers l-1 and l, the relation is a Gaussian RBF
over every pair of channel entries,
    R_l[b, c, c', j] = exp(-(V_l[b, c, j] - V_{l-1}[b, c', j])^2 / 8)
and the loss sums the squared student-teacher difference, divided by the batch size:
    L_KDSVD = weight * sum_{l >= 1} 1/B * sum (R^S_l - R^T_l)^2,   L = CE + L_KDSVD
as in RepDistiller's ``distiller_zoo/KDSVD.py`` (ported from the authors' TensorFlow code), including
its guards: non-finite SVD outputs and RBF differences are zeroed. One addition: a singular vector's
sign is arbitrary (it differs between SVD backends), and the RBF between two layers' vectors depends on
their relative sign, so each teacher vector is given the sign that makes its largest-magnitude entry
positive; the student's vectors follow the teacher's through the alignment, as published. Student and teacher layer i must
have equal channel counts (the vectors are compared entry by entry). ``k`` 1 is RepDistiller's default;
``weight`` 1.0 is ours: neither RepDistiller's CIFAR script nor the CRD tables run KD-SVD, and the
authors' weight was not checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_positive, require_range
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, LayerListMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import check_layer_lists, conv_pairs, label_cross_entropy

STUDENT_EXTRA_VECTORS = 3  # the student keeps k + 3 singular vectors to choose from
RBF_WIDTH = 8.0


@dataclass(frozen=True)
class KDSVDConfig:
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()
    k: int = 1
    weight: float = 1.0
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        check_layer_lists(self, where, minimum=2)
        require_positive(self, where, "k", "weight")
        require_range(self, where, "label_smoothing", 0.0, 1.0)


def _finite(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def leading_directions(feature: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """(singular values (B, n) normalised over n, right singular vectors (B, C, n) normalised over C)."""
    x = feature.flatten(2).transpose(1, 2)  # (B, HW, C)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    s, v = _finite(s), _finite(vh.transpose(1, 2))
    return F.normalize(s[:, :n], dim=1), F.normalize(v[:, :, :n], dim=1)


def canonical_sign(v: Tensor) -> Tensor:
    """Each column of (B, C, n) flipped so that its largest-magnitude entry is positive."""
    index = v.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(torch.gather(v, 1, index))
    return v * torch.where(sign == 0, torch.ones_like(sign), sign)


def align(student_v: Tensor, teacher_v: Tensor) -> Tensor:
    """For each teacher vector, the student vector of largest |cosine| with it, times the cosine's sign."""
    cosine = student_v.transpose(1, 2) @ teacher_v  # (B, n_s, n_t)
    best = cosine.abs().amax(dim=1, keepdim=True)
    mask = torch.where(cosine.abs() == best, torch.sign(cosine), torch.zeros_like(cosine))
    return student_v @ mask  # (B, C, n_t)


def kdsvd_loss(students: list[Tensor], teachers: list[Tensor], k: int) -> Tensor:
    """sum over consecutive layer pairs of 1/B * sum (RBF_S - RBF_T)^2."""
    total, previous = 0.0, None
    for f_s, f_t in zip(students, teachers):
        s_t, v_t = leading_directions(f_t, k)
        v_t = canonical_sign(v_t)
        _, v_s = leading_directions(f_s, k + STUDENT_EXTRA_VECTORS)
        v_s = align(v_s, v_t) * s_t.unsqueeze(1)
        v_t = v_t * s_t.unsqueeze(1)
        if previous is not None:
            prev_s, prev_t = previous
            rbf_s = torch.exp(-(v_s.unsqueeze(2) - prev_s.unsqueeze(1)).pow(2) / RBF_WIDTH)
            rbf_t = torch.exp(-(v_t.unsqueeze(2) - prev_t.unsqueeze(1)).pow(2) / RBF_WIDTH)
            total = total + _finite((rbf_s - rbf_t.detach()).pow(2)).sum() / f_s.shape[0]
        previous = (v_s, v_t)
    return total


class KDSVD(LayerListMethod):
    Config = KDSVDConfig
    label_terms = frozenset({"ce"})
    unlabelled = "learn"

    def __init__(self, config: KDSVDConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        where = "kdsvd.student_layers/teacher_layers"
        for (s_shape, t_shape), s_layer, t_layer in zip(
            conv_pairs(config, setup, "kdsvd", same_spatial=False), config.student_layers, config.teacher_layers
        ):
            if s_shape[0] != t_shape[0]:
                raise ConfigError(
                    f"{where}: student {s_layer!r} has {s_shape[0]} channels and teacher {t_layer!r} {t_shape[0]}; "
                    "KD-SVD compares singular vectors entry by entry, so pair layers of equal channel counts"
                )

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        s = [student.features[layer] for layer in config.student_layers]
        t = [teacher.features[layer].detach() for layer in config.teacher_layers]
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, config.label_smoothing),
            "kdsvd": config.weight * kdsvd_loss(s, t, config.k),
        }
