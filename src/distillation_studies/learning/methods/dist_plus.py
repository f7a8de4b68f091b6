"""DIST+: DIST's correlation losses on the logits, extended to a feature map's channels and positions.

Huang, You, Wang, Qian, Xu, "DIST+: Knowledge Distillation From a Stronger Adaptive Teacher",
TPAMI 47(7), 2025 (doi:10.1109/TPAMI.2025.3554235). With d(u, v) = 1 - Pearson(u, v):
    L_inter = tau^2 * mean over samples of d(Y^S_i, Y^T_i),   Y = softmax(Z / tau)    (as DIST)
    L_intra = tau^2 * mean over classes of d(Y^S_:j, Y^T_:j)                          (as DIST)
    L_channel = mean over samples and positions (b, h, w) of d(F^S_b:hw, F^T_b:hw)    (across channels)
    L_spatial = mean over positions (h, w) of d(A^S_:hw, A^T_:hw),  A = sum_c F_c     (across the batch)
    L = ce_weight * CE + beta * L_inter + gamma * L_intra + channel_weight * L_channel + spatial_weight * L_spatial
F^S is the student's feature through a learned adapter to the teacher's shape (a 1x1 conv when only
channels differ, linear for flat features: ``shared.make_adapter``); flat (D,) features are 1x1 maps.
The feature terms follow the structure of torchdistill's ``DISTPlusLoss`` (its channel and spatial
relations) with one correction: torchdistill adds the raw mean channel correlation rho, which
minimising pushes the student's channels to anti-correlate with the teacher's; the paper extends
the DIST loss, a distance 1 - rho, to features (its abstract), and torchdistill's own spatial term
is 1 - rho, so both feature terms here are 1 - rho. The paper's teacher acclimation (adapting the
teacher during distillation) is not implemented: the study's teacher stays frozen.
Defaults: DIST's released loss (beta = gamma = tau = 1, CE weight 1) and torchdistill's unit
feature weights; the authors publish no DIST+ classification code or CIFAR-100 setting
(hunto/DIST_KD holds DIST's loss only). The spatial term needs batches of at least 2 samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distillation_studies.common.config import require_non_negative, require_positive, require_set
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import as_map, make_adapter


@dataclass(frozen=True)
class DISTPlusConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    beta: float = 1.0
    gamma: float = 1.0
    tau: float = 1.0
    ce_weight: float = 1.0
    channel_weight: float = 1.0
    spatial_weight: float = 1.0

    def check(self, where: str) -> None:
        require_set(self, where, "student_layer", "teacher_layer")
        require_positive(self, where, "tau")
        require_non_negative(self, where, "beta", "gamma", "ce_weight", "channel_weight", "spatial_weight")


def correlation_distance(student: Tensor, teacher: Tensor, eps: float = 1e-8) -> Tensor:
    """Mean over rows of 1 - Pearson(student row, teacher row) for two (N, D) tensors; a constant row correlates 0."""
    return (1.0 - F.cosine_similarity(student - student.mean(1, keepdim=True), teacher - teacher.mean(1, keepdim=True), dim=1, eps=eps)).mean()


def channel_relation(student_map: Tensor, teacher_map: Tensor) -> Tensor:
    """Correlation distance across channels at every (sample, position) of two (B, C, H, W) maps."""
    channels = student_map.shape[1]
    return correlation_distance(student_map.movedim(1, -1).reshape(-1, channels), teacher_map.movedim(1, -1).reshape(-1, channels))


def spatial_relation(student_map: Tensor, teacher_map: Tensor) -> Tensor:
    """Correlation distance across the batch at every position of the channel-summed maps."""
    return correlation_distance(student_map.sum(1).flatten(1).T, teacher_map.sum(1).flatten(1).T)


class DISTPlus(LayerPairMethod):
    Config = DISTPlusConfig
    label_terms = frozenset({"ce"})  # CE(y, z_s); the other terms need the teacher only
    unlabelled = "learn"

    def __init__(self, config: DISTPlusConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        self.adapter = make_adapter(
            setup.student_shapes[config.student_layer], setup.teacher_shapes[config.teacher_layer], "dist_plus.student_layer/teacher_layer"
        )

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        config = self.config
        student_probs = F.softmax(student.logits / config.tau, dim=1)
        teacher_probs = F.softmax(teacher.logits.detach() / config.tau, dim=1)
        student_map = as_map(self.adapter(student.features[config.student_layer]))
        teacher_map = as_map(teacher.features[config.teacher_layer].detach())
        scale = config.tau**2
        return {
            "ce": config.ce_weight * F.cross_entropy(student.logits, batch.labels),
            "dist_inter": config.beta * scale * correlation_distance(student_probs, teacher_probs),
            "dist_intra": config.gamma * scale * correlation_distance(student_probs.T, teacher_probs.T),
            "channel": config.channel_weight * channel_relation(student_map, teacher_map),
            "spatial": config.spatial_weight * spatial_relation(student_map, teacher_map),
        }
