"""The one interface every distillation method implements.

A method is an ``nn.Module``: its own parameters (adapters, projection heads) are trained with the
student and counted, then dropped from the deployed student. ``forward`` returns named, already
weighted loss terms; the training loop only sums them and logs each one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from distillation_studies.common.errors import ConfigError


@dataclass
class ModelOutputs:
    """Logits plus the intermediate features captured at the requested module paths."""

    logits: Tensor
    features: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Batch:
    """One training batch: inputs as fed to the student, labels, and the samples' training-set indices."""

    inputs: Tensor
    labels: Tensor
    indices: Tensor


@dataclass(frozen=True)
class MethodSetup:
    """What a method may need to size itself: feature shapes (per sample) and the data's size.

    ``student_spec`` is the student's model spec (``model.spec``), for methods that build networks
    shaped like the student or sized to its input (e.g. DML's peers, TAKD's assistant); None when
    the caller has none.
    """

    student_shapes: dict[str, tuple[int, ...]]
    teacher_shapes: dict[str, tuple[int, ...]]
    num_classes: int
    num_train: int
    student_spec: dict[str, Any] | None = field(default=None, hash=False)


class DistillationMethod(nn.Module):
    """Base class: subclasses set ``Config`` (a frozen dataclass) and implement ``forward``."""

    Config: ClassVar[type]
    needs_teacher: ClassVar[bool] = True
    # prepare() reads the teacher's outputs on the whole training set (computed for it when the loop
    # does not cache them anyway); methods that fit something to them before training set it True.
    needs_teacher_train: ClassVar[bool] = False

    def __init__(self, config: Any, setup: MethodSetup) -> None:
        super().__init__()
        self.config = config
        self.setup = setup

    @classmethod
    def layers(cls, config: Any) -> tuple[list[str], list[str]]:
        """Module paths whose outputs the method reads, as (student layers, teacher layers)."""
        return [], []

    @classmethod
    def batch_elements(cls, config: Any, setup: MethodSetup, batch_size: int) -> int:
        """Values of the method's own largest per-batch tensors, estimated before it is built, so a
        batch size that cannot fit (RKD's B^3 angles, CRD's negatives) is refused at validation."""
        return 0

    def prepare(self, teacher_train: ModelOutputs | None, train_data: Any) -> None:
        """Called once before the first epoch with the teacher's outputs on the whole training set
        (None unless cached or ``needs_teacher_train``) and the training data as the loop got it
        (``{"x", "y"}`` tensors or a Dataset).

        Methods with a preliminary stage (e.g. a paraphraser fitted to teacher features) do it here.
        """

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch (1-based) so schedules such as warm-ups can follow progress."""
        self.epoch, self.epochs = epoch, epochs

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        raise NotImplementedError


class LayerPairMethod(DistillationMethod):
    """A method that reads one student layer and one teacher layer, named by the config keys
    ``student_layer`` and ``teacher_layer``."""

    @classmethod
    def layers(cls, config: Any) -> tuple[list[str], list[str]]:
        return [config.student_layer], [config.teacher_layer]


def make_adapter(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], where: str) -> nn.Module:
    """A learned map from a student feature to the teacher's shape (identity when they already match).

    Conv maps (C, H, W) bridge channel counts with a 1x1 convolution when spatial sizes agree;
    anything else is flattened and mapped linearly, except conv maps whose spatial sizes differ.
    """
    if tuple(student_shape) == tuple(teacher_shape):
        return nn.Identity()
    if len(student_shape) == 3 and len(teacher_shape) == 3:
        if student_shape[1:] != teacher_shape[1:]:
            raise ConfigError(
                f"{where}: student feature {tuple(student_shape)} and teacher feature {tuple(teacher_shape)} "
                "have different spatial sizes, which a 1x1 adapter cannot bridge; choose layers of equal H x W"
            )
        return nn.Conv2d(student_shape[0], teacher_shape[0], kernel_size=1, bias=False)
    return _FlatLinear(math.prod(student_shape), teacher_shape)


class _FlatLinear(nn.Module):
    """Flatten, project linearly, reshape to the teacher's per-sample shape."""

    def __init__(self, in_features: int, out_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.linear = nn.Linear(in_features, math.prod(out_shape))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1)).view(x.shape[0], *self.out_shape)
