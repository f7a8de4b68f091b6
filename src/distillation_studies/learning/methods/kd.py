"""Knowledge distillation with soft targets.

Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015 (arXiv:1503.02531):
    L = ce_weight * CE(y, softmax(z_s)) + kd_weight * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
The T^2 factor keeps the soft-target gradients on the same scale as T changes. The two weights are
independent, as in mdistiller's ``KD.LOSS.CE_WEIGHT`` / ``KD_WEIGHT``; the defaults 0.1 / 0.9 (T 4)
are RepDistiller's and mdistiller's CIFAR-100 setting (``-r 0.1 -a 0.9``).
``alpha`` (weights 1 - alpha and alpha) is deprecated: it still works for one release, with a
FutureWarning naming ``ce_weight`` and ``kd_weight``, and cannot be combined with them.

Optional logit standardisation (``logit_standardization: true``), Sun et al., "Logit Standardization
in Knowledge Distillation", CVPR 2024 (arXiv:2403.01427), Algorithm 1:
    Z(x; T) = (x - mean(x)) / sigma(x) / T
applied per sample to both teacher and student logits in place of x / T (the CE term keeps raw
logits; T^2 still scales the KL term, Algorithm 2). sigma is Bessel-corrected as in the authors'
code (``shared.standardize_logits``). The authors' CIFAR-100 KD run is
``--logit-stand --base-temp 2 --kd-weight 9`` on mdistiller's CE weight 0.1: here
``{temperature: 2, ce_weight: 0.1, kd_weight: 9, logit_standardization: true}``.
``label_smoothing`` smooths the CE term's labels (``shared.label_cross_entropy``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import Tensor

from distillation_studies.common.config import require_non_negative, require_positive, require_range
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, DistillationMethod, ModelOutputs
from distillation_studies.learning.methods.shared import distillation_logits, label_cross_entropy, soft_target_kl

DEFAULT_CE_WEIGHT, DEFAULT_KD_WEIGHT = 0.1, 0.9


@dataclass(frozen=True)
class KDConfig:
    temperature: float = 4.0
    ce_weight: float | None = None  # None: DEFAULT_CE_WEIGHT (or 1 - alpha)
    kd_weight: float | None = None  # None: DEFAULT_KD_WEIGHT (or alpha)
    alpha: float | None = None  # deprecated: ce_weight = 1 - alpha, kd_weight = alpha
    logit_standardization: bool = False
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_positive(self, where, "temperature")
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        for key in ("ce_weight", "kd_weight"):
            if getattr(self, key) is not None:
                require_non_negative(self, where, key)
        if self.alpha is None:
            return
        require_range(self, where, "alpha", 0.0, 1.0)
        if self.ce_weight is not None or self.kd_weight is not None:
            raise ConfigError(
                f"{where}.alpha: deprecated and cannot be combined with ce_weight/kd_weight; "
                f"drop alpha and set ce_weight and kd_weight only"
            )
        warnings.warn(
            f"{where}.alpha is deprecated and will be removed in the next release: set "
            f"ce_weight: {1.0 - self.alpha:g} and kd_weight: {self.alpha:g} instead (the two weights are independent)",
            FutureWarning,
            stacklevel=2,
        )

    def weights(self) -> tuple[float, float]:
        """(CE weight, KD weight) in effect."""
        if self.alpha is not None:
            return 1.0 - self.alpha, self.alpha
        ce = DEFAULT_CE_WEIGHT if self.ce_weight is None else self.ce_weight
        kd = DEFAULT_KD_WEIGHT if self.kd_weight is None else self.kd_weight
        return ce, kd


class KnowledgeDistillation(DistillationMethod):
    Config = KDConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        ce_weight, kd_weight = config.weights()
        student_logits, teacher_logits = distillation_logits(student.logits, teacher.logits, config.logit_standardization)
        return {
            "ce": ce_weight * label_cross_entropy(student.logits, batch.labels, config.label_smoothing),
            "kd": kd_weight * soft_target_kl(student_logits, teacher_logits, config.temperature),
        }
