"""Factor Transfer: match a student "factor" to the factor a paraphraser extracts from the teacher.

Kim, Park, Kwak, "Paraphrasing Complex Network: Network Compression via Factor Transfer", NeurIPS 2018
(arXiv:1802.04977), Sec. 3. Two stages:

1. The paraphraser P = (encoder E, decoder D), a conv autoencoder on the teacher's feature map x with
   k * C_T output channels (paraphrase rate k), is trained alone to reconstruct x,
       L_rec = || x - D(E(x)) ||^2                               (here the per-element mean, MSE)
   and then frozen. This runs in ``prepare()`` on the teacher's training-set features:
   ``paraphraser_epochs`` epochs of Adam over mini-batches shuffled by a ``torch.Generator`` seeded
   with ``paraphraser_seed`` (``methods.shared.fit``; the initial weights come from torch's global
   seed, so the stage is deterministic given both).
2. A translator T (trained with the student) maps the student feature to the factor space, and
       F_T = E(x_teacher),  F_S = T(x_student)
       L_FT = || F_T / ||F_T||_2 - F_S / ||F_S||_2 ||_p,   p = 1
       L = CE + beta * L_FT
   Each factor is flattened per sample and L2-normalised. The L1 distance is averaged over batch and
   elements (RepDistiller's ``.abs().mean()``), the reduction under which its ``beta`` was tuned.

Defaults follow RepDistiller's CIFAR-100 setup (``scripts/run_cifar_distill.sh``: ``--distill factor
-a 0 -b 200``; ``--init_epochs 30``; ``models/util.py``: k = 0.5, paraphraser without BatchNorm,
translator with BatchNorm, 3x3 convs with LeakyReLU(0.1)). Differences from RepDistiller, on purpose:
the paraphraser is fitted with Adam (``paraphraser_lr``) on cached teacher features instead of SGD on
fresh forward passes, and the factor is the paper's full normalised factor vector, whereas
RepDistiller's ``FactorTransfer.factor`` first collapses channels with ``f.pow(2).mean(1)``.
When the two factors' spatial sizes differ, the larger is average-pooled to the smaller (as RepDistiller).

Counting: the translator is a trainable adapter (in ``parameters()``, counted). After ``prepare()``
the paraphraser encoder's weights are turned into buffers, so they are frozen, receive no gradient and
are not counted as method parameters (``paraphraser_size`` reports their number); the decoder is
only needed for the reconstruction stage and is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import require_non_negative, require_positive, require_range, require_set
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import fit, label_cross_entropy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FTConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    beta: float = 200.0
    rate: float = 0.5
    paraphraser_epochs: int = 30
    paraphraser_lr: float = 1e-3
    paraphraser_batch_size: int = 64
    paraphraser_seed: int = 0
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        require_set(self, where, "student_layer", "teacher_layer")
        require_positive(self, where, "beta", "paraphraser_lr", "paraphraser_batch_size")
        if not 0.0 < self.rate <= 1.0:
            raise ConfigError(f"{where}.rate: must be in (0, 1], got {self.rate}")
        require_non_negative(self, where, "paraphraser_epochs")


def _conv_stack(convs: list[nn.Module], channels: list[int], batch_norm: bool) -> nn.Sequential:
    """conv -> [BN] -> LeakyReLU(0.1) for each conv, as RepDistiller's Paraphraser / Translator."""
    layers: list[nn.Module] = []
    for conv, width in zip(convs, channels):
        layers += [conv, nn.BatchNorm2d(width) if batch_norm else nn.Identity(), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)


def conv_encoder(in_channels: int, out_channels: int, batch_norm: bool) -> nn.Sequential:
    """Three 3x3 convs: C_in -> C_in -> C_out -> C_out (paraphraser encoder and translator)."""
    convs = [
        nn.Conv2d(in_channels, in_channels, 3, 1, 1),
        nn.Conv2d(in_channels, out_channels, 3, 1, 1),
        nn.Conv2d(out_channels, out_channels, 3, 1, 1),
    ]
    return _conv_stack(convs, [in_channels, out_channels, out_channels], batch_norm)


def conv_decoder(factor_channels: int, out_channels: int) -> nn.Sequential:
    """Three 3x3 transposed convs back to the teacher's channels (paraphraser decoder, no BatchNorm)."""
    convs = [
        nn.ConvTranspose2d(factor_channels, factor_channels, 3, 1, 1),
        nn.ConvTranspose2d(factor_channels, out_channels, 3, 1, 1),
        nn.ConvTranspose2d(out_channels, out_channels, 3, 1, 1),
    ]
    return _conv_stack(convs, [factor_channels, out_channels, out_channels], batch_norm=False)


def freeze_as_buffers(module: nn.Module) -> None:
    """Turn every parameter of ``module`` into a buffer of the same name (frozen, saved, moved by ``.to``)."""
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, param.detach().clone())


def factor_distance(factor_student: Tensor, factor_teacher: Tensor) -> Tensor:
    """mean |F_S/||F_S||_2 - F_T/||F_T||_2| over batch and elements, after matching spatial sizes."""
    if factor_student.shape[2:] != factor_teacher.shape[2:]:
        size = tuple(min(a, b) for a, b in zip(factor_student.shape[2:], factor_teacher.shape[2:]))
        factor_student = F.adaptive_avg_pool2d(factor_student, size)
        factor_teacher = F.adaptive_avg_pool2d(factor_teacher, size)
    student = F.normalize(factor_student.flatten(1), p=2, dim=1)
    teacher = F.normalize(factor_teacher.flatten(1), p=2, dim=1)
    return (student - teacher).abs().mean()


class FactorTransfer(LayerPairMethod):
    Config = FTConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"
    needs_teacher_train = True  # prepare() fits to the teacher's training-set outputs

    def __init__(self, config: FTConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        student_shape = setup.student_shapes[config.student_layer]
        teacher_shape = setup.teacher_shapes[config.teacher_layer]
        for key, shape in (("student_layer", student_shape), ("teacher_layer", teacher_shape)):
            if len(shape) != 3:
                raise ConfigError(
                    f"ft.{key}: Factor Transfer needs a conv feature map (C, H, W), got shape {tuple(shape)}"
                )
        factor_channels = int(teacher_shape[0] * config.rate)
        if factor_channels < 1:
            raise ConfigError(
                f"ft.rate: {config.rate} x {teacher_shape[0]} teacher channels leaves no factor channel"
            )
        self.paraphraser = conv_encoder(teacher_shape[0], factor_channels, batch_norm=False)
        self.decoder: nn.Module | None = conv_decoder(factor_channels, teacher_shape[0])
        self.translator = conv_encoder(student_shape[0], factor_channels, batch_norm=True)
        self.prepared = False
        self.paraphraser_size = sum(p.numel() for p in self.paraphraser.parameters())
        self.paraphraser_mse: dict[str, float] = {}


    def reconstruction_error(self, features: Tensor, batch_size: int = 1024) -> float:
        """Full-set MSE of D(E(x)) against x (only while the decoder exists, i.e. before ``prepare``)."""
        with torch.no_grad():
            total = sum(
                F.mse_loss(self.decoder(self.paraphraser(part)), part, reduction="sum").item()
                for part in features.split(batch_size)
            )
        return total / features.numel()

    def prepare(self, teacher_train: ModelOutputs | None, train_data: Any) -> None:
        """Stage 1: fit the paraphraser to reconstruct the teacher's features, then freeze its encoder."""
        if teacher_train is None:
            raise ConfigError("ft: Factor Transfer needs the teacher's training-set features to fit the paraphraser")
        if self.prepared:
            return
        features = teacher_train.features[self.config.teacher_layer].detach()
        cfg = self.config
        autoencoder = nn.Sequential(self.paraphraser, self.decoder).train()
        optimizer = torch.optim.Adam(autoencoder.parameters(), lr=cfg.paraphraser_lr)
        self.paraphraser_mse = {"before": self.reconstruction_error(features)}

        def batch_terms(indices: Tensor) -> dict[str, Tensor]:
            x = features[indices]
            return {"mse": F.mse_loss(autoencoder(x), x)}

        fit(
            autoencoder, batch_terms, len(features), optimizer, epochs=cfg.paraphraser_epochs,
            batch_size=cfg.paraphraser_batch_size, seed=cfg.paraphraser_seed, label="ft/paraphraser",
        )
        self.paraphraser_mse["after"] = self.reconstruction_error(features)
        log.info(
            "ft paraphraser: %d epochs, reconstruction MSE %.6f -> %.6f",
            cfg.paraphraser_epochs,
            self.paraphraser_mse["before"],
            self.paraphraser_mse["after"],
        )
        freeze_as_buffers(self.paraphraser)
        self.paraphraser.eval()
        self.decoder = None
        self.prepared = True

    def train(self, mode: bool = True) -> "FactorTransfer":
        super().train(mode)
        if self.prepared:
            self.paraphraser.eval()  # frozen: no BatchNorm or dropout in it, but keep it explicit
        return self

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        if not self.prepared:
            raise RuntimeError("ft: prepare() must run first (it trains and freezes the paraphraser)")
        factor_student = self.translator(student.features[self.config.student_layer])
        with torch.no_grad():
            factor_teacher = self.paraphraser(teacher.features[self.config.teacher_layer])
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "ft": self.config.beta * factor_distance(factor_student, factor_teacher),
        }
