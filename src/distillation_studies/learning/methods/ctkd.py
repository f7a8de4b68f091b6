"""Curriculum temperature KD: a learnable temperature trained adversarially, on an easy-to-hard curriculum.

Li et al., "Curriculum Temperature for Knowledge Distillation", AAAI 2023 (arXiv:2211.16231).
The student minimises the KD loss while the temperature module maximises it:
    min_{theta_s} max_{theta_T} L(theta_s, theta_T),
    L = (1 - alpha) * CE(y, softmax(z_s)) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
implemented with a gradient reversal layer (GRL) in front of the temperature parameter: identity
forward, gradient multiplied by -lambda backward, so one optimiser step moves the student down and
the temperature up the loss. The reversal strength follows the paper's cosine curriculum:
    lambda_n = lambda_min + 1/2 (lambda_max - lambda_min) (1 + cos((1 + min(n, E) / E) pi))
with n the (1-based) epoch and E = ``curriculum_epochs``, so lambda rises from lambda_min to reach
lambda_max at epoch E and stays there (E = 0: lambda_max throughout).
Global temperature module (the authors' ``Global_T``): one scalar parameter theta, bounded as
    T = min_temperature + temperature_range * sigmoid(theta),   T in (1, 21) by default,
theta initialised to ``init_logit`` = 1 (T_0 = 1 + 20 sigmoid(1) ~= 15.6), as in the released code.
CIFAR-100 settings of the paper's code: CE weight 0.1, KD weight 0.9 (alpha = 0.9), T in [1, 21],
lambda from 0 to 1 over 10 epochs. The instance-wise temperature variant is not implemented.
``logit_standardization`` z-scores the logits before the temperature (``shared.distillation_logits``,
Sun et al., CVPR 2024, who report CTKD with it); ``label_smoothing`` smooths the CE term's labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from distillation_studies.common.config import require_non_negative, require_positive, require_range
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import distillation_logits, label_cross_entropy, soft_target_kl


@dataclass(frozen=True)
class CTKDConfig:
    alpha: float = 0.9
    min_temperature: float = 1.0
    temperature_range: float = 20.0
    init_logit: float = 1.0
    lambda_min: float = 0.0
    lambda_max: float = 1.0
    curriculum_epochs: int = 10
    logit_standardization: bool = False
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "alpha", 0.0, 1.0)
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        require_positive(self, where, "min_temperature", "temperature_range")
        require_non_negative(self, where, "lambda_min", "lambda_max", "curriculum_epochs")
        if self.lambda_max < self.lambda_min:
            raise ConfigError(f"{where}.lambda_max: must be >= lambda_min ({self.lambda_min}), got {self.lambda_max}")
        if not math.isfinite(self.init_logit):
            raise ConfigError(f"{where}.init_logit: must be finite, got {self.init_logit}")


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by -lambda (Ganin & Lempitsky, 2015)."""

    @staticmethod
    def forward(ctx, x: Tensor, strength: float) -> Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        return grad_output.neg() * ctx.strength, None


def reverse_gradient(x: Tensor, strength: float) -> Tensor:
    return GradientReversal.apply(x, strength)


def cosine_curriculum(epoch: int, epochs: int, low: float, high: float) -> float:
    """low + (high - low) * (1 - cos(pi * min(epoch, epochs) / epochs)) / 2; ``high`` when epochs == 0."""
    if epochs == 0:
        return high
    progress = min(max(epoch, 0), epochs) / epochs
    return low + (high - low) * 0.5 * (1.0 - math.cos(math.pi * progress))


class CurriculumTemperatureKD(DistillationMethod):
    Config = CTKDConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def __init__(self, config: CTKDConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        self.temperature_logit = nn.Parameter(torch.full((1,), float(config.init_logit)))

    def reversal_strength(self) -> float:
        """lambda for the current epoch; lambda_max if no epoch has been started."""
        config = self.config
        epoch = getattr(self, "epoch", None)
        if epoch is None:
            return config.lambda_max
        return cosine_curriculum(epoch, config.curriculum_epochs, config.lambda_min, config.lambda_max)

    def temperature(self, strength: float = 0.0) -> Tensor:
        """The bounded temperature as a 0-dim tensor, behind a GRL of the given strength."""
        logit = reverse_gradient(self.temperature_logit, strength)
        return (self.config.min_temperature + self.config.temperature_range * torch.sigmoid(logit)).squeeze(0)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        temperature = self.temperature(self.reversal_strength())
        student_logits, teacher_logits = distillation_logits(
            student.logits, teacher.logits.detach(), config.logit_standardization
        )
        return {
            "ce": (1.0 - config.alpha) * label_cross_entropy(student.logits, batch.labels, config.label_smoothing),
            "kd": config.alpha * soft_target_kl(student_logits, teacher_logits, temperature),
        }
