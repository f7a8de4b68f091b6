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
here a mismatch is a ``ConfigError`` listing the shapes. The helpers ``check_layer_lists`` and
``conv_pairs`` are shared with the other feature-map methods (NST, FSP, OFD).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_positive
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs


def check_layer_lists(config: Any, where: str, minimum: int = 1) -> None:
    """``student_layers`` and ``teacher_layers``: lists of >= ``minimum`` module paths, equally long."""
    for key in ("student_layers", "teacher_layers"):
        value = getattr(config, key)
        if (
            not isinstance(value, tuple)
            or len(value) < minimum
            or not all(isinstance(path, str) and path for path in value)
        ):
            raise ConfigError(
                f"{where}.{key}: required, a list of at least {minimum} module path(s) "
                f"(e.g. [features.0, features.1]), got {value!r}"
            )
    if len(config.student_layers) != len(config.teacher_layers):
        raise ConfigError(
            f"{where}.teacher_layers: {len(config.teacher_layers)} teacher layers for "
            f"{len(config.student_layers)} student layers; give one teacher layer per student layer"
        )


def conv_pairs(
    config: Any, setup: MethodSetup, where: str, same_spatial: bool
) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """(student, teacher) per-sample (C, H, W) shapes of each layer pair; non-maps or unequal H x W fail."""
    pairs = []
    for s_layer, t_layer in zip(config.student_layers, config.teacher_layers):
        s_shape, t_shape = tuple(setup.student_shapes[s_layer]), tuple(setup.teacher_shapes[t_layer])
        for key, layer, shape in (("student_layers", s_layer, s_shape), ("teacher_layers", t_layer, t_shape)):
            if len(shape) != 3:
                raise ConfigError(
                    f"{where}.{key}: layer {layer!r} outputs shape {shape}, not a conv feature map (C, H, W); "
                    "choose convolutional layers"
                )
        if same_spatial and s_shape[1:] != t_shape[1:]:
            raise ConfigError(
                f"{where}.student_layers/teacher_layers: student {s_layer!r} {s_shape} and teacher {t_layer!r} "
                f"{t_shape} have different spatial sizes (H x W {s_shape[1:]} vs {t_shape[1:]}); "
                "pair layers of equal H x W"
            )
        pairs.append((s_shape, t_shape))
    return pairs


@dataclass(frozen=True)
class ATConfig:
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()
    beta: float = 1000.0
    p: float = 2.0

    def check(self, where: str) -> None:
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
            "ce": F.cross_entropy(student.logits, batch.labels),
            "at": self.config.beta * sum(losses),
        }
