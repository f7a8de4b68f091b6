"""Two-stage training: distil on the training inputs without their labels, then fine-tune on the labels.

Motivation: Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015
(arXiv:1503.02531), Sec. 2-3, train the student on a *transfer set* with the teacher's soft targets,
which need no labels (they also show MNIST students learning from soft targets alone); Romero et al.,
"FitNets: Hints for Thin Deep Nets", ICLR 2015 (arXiv:1412.6550), Sec. 2.3 / Algorithm 1, train
stage-wise: first the hint stage, then the whole student on the task. Here both are one schedule of
the one training loop, switched per epoch:

    phase 1, epochs 1..distill_epochs:          L = non-label terms of the ``distill`` sub-method
    phase 2, epochs distill_epochs+1..epochs:   L = CE(y, softmax(z_s))   (term "ce")

Settings: ``distill`` is a sub-method written like a ``combine`` part, ``{method: kd, temperature: 4,
...}`` (default ``{method: kd}``), parsed by that method's own config (errors name
``methods.<key>.distill.<hyperparameter>``); it must need a teacher, and cannot be ``two_stage``.
``distill_epochs`` (required, int > 0) must leave at least one fine-tuning epoch, i.e. be smaller than
the student's ``training.epochs``; the method only learns the epoch count when the loop starts, so
this is checked in ``start_epoch`` and fails with a ``ConfigError`` naming
``methods.<key>.distill_epochs``.

Phase 1 sees no ground-truth label: the sub-method's ``ce`` term is dropped, and the batch it gets
carries the teacher's predicted classes (argmax of its logits) in place of the labels, so sub-methods
whose distillation terms read a class (DKD's target/non-target split) use the teacher's class. The
sub-method's ``start_epoch`` gets ``(epoch, distill_epochs)``, so its warm-ups follow phase 1.

Honest limits of running both stages through one unchanged loop: one optimiser and one learning-rate
schedule span both phases (fine-tuning continues the cosine schedule instead of restarting it), the
sub-method's adapters stay in the optimiser during phase 2 without gradients, and the
best-on-validation selection may pick a phase-1 epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import LABEL_TERM, parse_sub_method


@dataclass(frozen=True)
class TwoStageConfig:
    """``distill`` is written as a mapping; ``check`` replaces it by ``(method name, parsed config)``."""

    distill: Any = None
    distill_epochs: Any = None

    def check(self, where: str) -> None:
        object.__setattr__(self, "where", where)  # for the run-time check in start_epoch
        epochs = self.distill_epochs
        if epochs is None:
            raise ConfigError(f"{where}.distill_epochs: required, the number of label-free distillation epochs (> 0)")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
            raise ConfigError(f"{where}.distill_epochs: must be an integer > 0, got {epochs!r}")
        raw = self.distill
        if isinstance(raw, tuple) and len(raw) == 2:
            return  # already parsed
        raw = {"method": "kd"} if raw is None else raw
        name, _weight, config = parse_sub_method(raw, f"{where}.distill", ("two_stage",), weighted=False)
        object.__setattr__(self, "distill", (name, config))


class TwoStage(DistillationMethod):
    Config = TwoStageConfig
    label_terms = frozenset({"ce"})  # phase 2; phase 1 reads the teacher's classes, never a label
    unlabelled = "learn"

    def __init__(self, config: TwoStageConfig, setup: MethodSetup) -> None:
        from distillation_studies.learning.methods import method_class

        super().__init__(config, setup)
        name, sub_config = config.distill
        self.where = getattr(config, "where", "two_stage")
        try:
            self.distill = method_class(name, "distill.method")(sub_config, setup)
        except ConfigError as error:
            raise ConfigError(f"distill: {error}") from None
        if not self.distill.needs_teacher:
            raise ConfigError(
                f"distill.method: {name!r} does not use a teacher, so phase 1 would have nothing to learn from"
            )
        self.needs_teacher_train = self.distill.needs_teacher_train
        self.phase = 1

    @classmethod
    def layers(cls, config: TwoStageConfig) -> tuple[list[str], list[str]]:
        from distillation_studies.learning.methods import method_class

        name, sub_config = config.distill
        return method_class(name, "two_stage.distill").layers(sub_config)

    @classmethod
    def unlabelled_use(cls, config: TwoStageConfig) -> tuple[str, str]:
        """``learn``, unless the sub-method refuses unlabelled samples (kept conservative: phase 1 hides
        the labels, but a sub-method's ``prepare`` may still read them)."""
        from distillation_studies.learning.methods import method_class

        name, sub_config = config.distill
        use, reason = method_class(name, "two_stage.distill").unlabelled_use(sub_config)
        return ("refuse", f"distill method {name!r}: {reason}") if use == "refuse" else ("learn", "")

    def prepare(self, teacher_train: ModelOutputs | None, train_data: Any) -> None:
        self.distill.prepare(teacher_train, train_data)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        super().start_epoch(epoch, epochs)
        distill_epochs = self.config.distill_epochs
        if epochs <= distill_epochs:
            raise ConfigError(
                f"{self.where}.distill_epochs: {distill_epochs} leaves no fine-tuning epoch; it must be smaller "
                f"than the student's training.epochs ({epochs})"
            )
        self.phase = 1 if epoch <= distill_epochs else 2
        if self.phase == 1:
            self.distill.start_epoch(epoch, distill_epochs)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        if self.phase == 2:
            return {LABEL_TERM: F.cross_entropy(student.logits, batch.labels)}
        if teacher is None:
            raise ConfigError(f"{self.where}: phase 1 needs the teacher's outputs")
        unlabelled = Batch(batch.inputs, teacher.logits.detach().argmax(dim=1), batch.indices)
        terms = self.distill(student, teacher, unlabelled)
        terms = {name: value for name, value in terms.items() if name != LABEL_TERM}
        if not terms:
            raise ConfigError(f"{self.where}.distill.method: returned no term besides the label loss for phase 1")
        return terms
