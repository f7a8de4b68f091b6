"""AB: transfer the teacher's activation boundaries (which hidden neurons fire), not their values.

Heo, Lee, Yun & Choi, "Knowledge Transfer via Distillation of Activation Boundaries Formed by Hidden
Neurons", AAAI 2019 (arXiv:1811.03233), Eq. 5-6: with s = r(student pre-activation) (r the connector),
t the teacher's pre-activation and margin mu, the alternative (differentiable) loss per element is
    l(s, t) = (s + mu)^2 * 1[s > -mu and t <= 0] + (s - mu)^2 * 1[s <= mu and t > 0]
i.e. a student neuron is pushed below -mu where the teacher's is off and above mu where it is on.
Implemented as RepDistiller's ``distiller_zoo/AB.py`` (from the authors' code, github.com/bhheo/AB_distillation):
over n layer pairs, pair i (0-based, shallow to deep) weighs 2^(i - n + 1), each summed over
elements and divided by the batch size, then scaled by 3/1000 (``weight`` 3e-3 here):
    L_AB = weight * sum_i 2^(i - n + 1) * 1/B * sum_elements l(r_i(s_i), t_i)
The connector r_i is identity when channels and H agree, otherwise RepDistiller's ``ConvReg`` without
ReLU (conv + BatchNorm; ``shared.ConvRegressor``); trained with the student, never deployed.
Layers should be pre-ReLU maps (RepDistiller's ``preact=True``): e.g. ``layer<i>.<last>.preact`` of the
CIFAR ResNets, ``features.<i>.1`` of ``cnn``.

Training: RepDistiller trains AB in two stages: ``--init_epochs 30`` of L_AB alone (connector and the
student's feature layers), then 240 epochs of CE alone (``-a 0``; its main loop sets the AB term to 0).
``init_epochs: k`` reproduces the two stages inside the one loop (epochs 1..k: L_AB only; later: CE
only), sharing the loop's one schedule, so the CE stage gets ``epochs - k`` epochs rather than a fresh
240. The default ``init_epochs: 0`` trains jointly, L = CE + L_AB (a setting the paper does not use)
so that short studies run; the CIFAR-100 benchmark sets 30.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from distillation_studies.common.config import require_non_negative, require_positive, require_range
from distillation_studies.learning.methods.base import Batch, LayerListMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import (
    ConvRegressor,
    check_layer_lists,
    check_stage_epochs,
    label_cross_entropy,
    map_shape,
    staged_terms,
)


@dataclass(frozen=True)
class ABConfig:
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()
    weight: float = 3e-3
    margin: float = 1.0
    init_epochs: int = 0
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        check_layer_lists(self, where)
        require_positive(self, where, "weight", "margin")
        require_non_negative(self, where, "init_epochs")
        require_range(self, where, "label_smoothing", 0.0, 1.0)


def boundary_loss(student: Tensor, teacher: Tensor, margin: float) -> Tensor:
    """sum over elements of the alternative AB loss, divided by the batch size."""
    teacher_on = teacher > 0
    below = (student + margin).pow(2) * ((student > -margin) & ~teacher_on)
    above = (student - margin).pow(2) * ((student <= margin) & teacher_on)
    return (below + above).sum() / student.shape[0]


def ab_loss(students: list[Tensor], teachers: list[Tensor], margin: float) -> Tensor:
    """sum_i 2^(i - n + 1) * boundary_loss(pair i), shallow to deep."""
    n = len(students)
    return sum(2.0 ** (i - n + 1) * boundary_loss(s, t, margin) for i, (s, t) in enumerate(zip(students, teachers)))


def connector(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], where: str) -> nn.Module:
    """Identity when channels and H agree (RepDistiller's ``Connector``), else conv + BatchNorm."""
    s, t = map_shape(student_shape, where), map_shape(teacher_shape, where)
    if s[0] == t[0] and s[1] == t[1]:
        return nn.Identity()
    return ConvRegressor(student_shape, teacher_shape, where, relu=False)


class ActivationBoundaries(LayerListMethod):
    Config = ABConfig
    label_terms = frozenset({"ce"})
    unlabelled = "learn"

    def __init__(self, config: ABConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        where = "ab.student_layers/teacher_layers"
        self.connectors = nn.ModuleList(
            connector(setup.student_shapes[s], setup.teacher_shapes[t], where)
            for s, t in zip(config.student_layers, config.teacher_layers)
        )

    def start_epoch(self, epoch: int, epochs: int) -> None:
        super().start_epoch(epoch, epochs)
        check_stage_epochs("ab", "init_epochs", self.config.init_epochs, epochs)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        s = [c(student.features[layer]) for c, layer in zip(self.connectors, config.student_layers)]
        t = [teacher.features[layer].detach() for layer in config.teacher_layers]
        ce = label_cross_entropy(student.logits, batch.labels, config.label_smoothing)
        ab = config.weight * ab_loss(s, t, config.margin)
        return staged_terms(ce, "ab", ab, getattr(self, "epoch", None), config.init_epochs)
