"""The one interface every distillation method implements.

A method is an ``nn.Module``: its own parameters (adapters, projection heads) are trained with the
student and counted, then dropped from the deployed student. ``forward`` returns named, already
weighted loss terms; the training loop only sums them and logs each one.

Labels and transfer sets: a sample the study keeps unlabelled (a transfer set) reaches ``forward``
with the label ``UNLABELLED`` (-100, ``F.cross_entropy``'s default ``ignore_index``), so a label
term written as ``F.cross_entropy(logits, batch.labels)`` averages over the labelled samples only
while teacher terms see every sample. A method names its label terms in ``label_terms`` (the loop
drops them from batches without a labelled sample and logs them per labelled sample) and says in
``unlabelled_use`` what it does with an unlabelled sample: ``learn`` (its teacher terms use it),
``skip`` (nothing: it has only label terms, so it trains on the labelled samples alone, e.g. ``ce``)
or ``refuse`` (a term reads every sample's label in a way that cannot be masked, e.g. DKD's
target/non-target split; a transfer-set cell with such a method is a ConfigError at config time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

UNLABELLED = -100  # the label an unlabelled (transfer-set) sample carries; F.cross_entropy ignores it


@dataclass
class ModelOutputs:
    """Logits plus the intermediate features captured at the requested module paths."""

    logits: Tensor
    features: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Batch:
    """One training batch: inputs as fed to the student, labels (``UNLABELLED`` on transfer-set
    samples), and the samples' training-set indices."""

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
    # The terms computed from labels (averaged over labelled samples only), and what the method does
    # with an unlabelled sample (module docstring). Most methods: a "ce" term plus teacher terms.
    label_terms: ClassVar[frozenset[str]] = frozenset({"ce"})
    unlabelled: ClassVar[str] = "learn"
    unlabelled_reason: ClassVar[str] = ""  # for "refuse": why, in the ConfigError

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

    @classmethod
    def unlabelled_use(cls, config: Any) -> tuple[str, str]:
        """(``learn`` | ``skip`` | ``refuse``, reason) for this config; composite methods derive it from their parts."""
        return cls.unlabelled, cls.unlabelled_reason

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


class LayerListMethod(DistillationMethod):
    """A method that reads paired lists of layers, named by the config keys ``student_layers`` and
    ``teacher_layers`` (checked by ``shared.check_layer_lists``)."""

    @classmethod
    def layers(cls, config: Any) -> tuple[list[str], list[str]]:
        return list(config.student_layers), list(config.teacher_layers)
