"""Cross-entropy on labels alone: the student trained without a teacher (the baseline)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from distillation_studies.common.config import require_range
from distillation_studies.learning.methods.base import Batch, DistillationMethod, ModelOutputs
from distillation_studies.learning.methods.shared import label_cross_entropy


@dataclass(frozen=True)
class CEConfig:
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)


class CrossEntropy(DistillationMethod):
    """L = CE(y, softmax(z_s)), labels smoothed by ``label_smoothing`` (``shared.label_cross_entropy``)."""

    Config = CEConfig
    label_terms = frozenset({"ce"})
    unlabelled = "skip"  # only a label term: a transfer-set cell trains it on the labelled samples alone
    needs_teacher = False

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        return {"ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing)}
