"""Contrastive representation distillation: a student/teacher critic trained with NCE over a memory bank.

Tian, Krishnan, Isola, "Contrastive Representation Distillation", ICLR 2020 (arXiv:1910.10699),
Eqs. 18-19, as implemented in the authors' RepDistiller (``crd/criterion.py``, ``crd/memory.py``):
    g_S(s) = normalise(W_S s),  g_T(t) = normalise(W_T t)        (linear embed heads, feat_dim wide)
    P(a, v) = exp(a . v / tau) / Z                               (Z fixed on the first batch to
                                                                  M * mean(exp(a . v / tau)))
    h(a, v) = P(a, v) / (P(a, v) + K / M)                        (Eq. 19, M = num_train, K negatives)
    L_anchor = -1/b * sum_i [ log h(a_i, v_i) + sum_{k=1}^{K} log(1 - h(a_i, v_{n_ik})) ]   (Eq. 18)
    L_CRD = L_anchor(student embeds vs teacher memory) + L_anchor(teacher embeds vs student memory)
    L = CE + beta * L_CRD
v_i is sample i's row of the other model's memory bank; the n_ik are K indices drawn uniformly with
replacement from the other num_train - 1 samples. After the scores are computed each bank's rows
at batch.indices move towards the new embeddings, v <- normalise(m * v + (1 - m) * g), momentum m.
The logs are computed in a numerically stable form (log h = -softplus(log(K/M) - log P)), without
RepDistiller's 1e-7 in the denominators.

Defaults are RepDistiller's CIFAR-100 settings (``train_student.py``: ``--feat_dim 128 --nce_k 16384
--nce_t 0.07 --nce_m 0.5``; ``scripts/run_cifar_distill.sh``: ``--distill crd -a 0 -b 0.8``, CE weight 1).
Differences, on purpose: ``negatives`` is clamped to num_train - 1 when the training set has fewer
other samples (K in K / M is then the clamped value); negatives exclude the anchor itself but are not
restricted to other classes (RepDistiller's default ``--mode exact`` draws them from other classes);
they are drawn with ``torch.randint`` from torch's global generator, so runs repeat given the seed.
The memory banks and Z are buffers, not parameters; only the two embed heads are trained.
Memory rows are only updated in training mode (Z is set by the first call, as in RepDistiller).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import require_positive, require_range, require_set
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, LayerPairMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import label_cross_entropy


@dataclass(frozen=True)
class CRDConfig:
    student_layer: str | None = None
    teacher_layer: str | None = None
    beta: float = 0.8
    feat_dim: int = 128
    negatives: int = 16384
    nce_t: float = 0.07
    momentum: float = 0.5
    label_smoothing: float = 0.0

    def check(self, where: str) -> None:
        require_range(self, where, "label_smoothing", 0.0, 1.0)
        require_set(self, where, "student_layer", "teacher_layer")
        require_positive(self, where, "beta", "feat_dim", "negatives", "nce_t")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{where}.momentum: must be in [0, 1), got {self.momentum}")


class Embed(nn.Module):
    """Flatten, project linearly, L2-normalise."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.linear(x.flatten(1)), p=2, dim=1)


def sample_contrast_indices(indices: Tensor, num_train: int, negatives: int) -> Tensor:
    """(b, 1 + K): each row is the positive index then K uniform draws from the other samples.

    Drawn on the CPU from torch's global generator, so the draw does not depend on the device; on
    CUDA the draws travel through pinned memory, so the copy does not wait for the GPU.
    """
    positives = indices.detach().long()
    draws = torch.randint(0, num_train - 1, (len(positives), negatives))
    if positives.device.type == "cuda":
        draws = draws.pin_memory().to(positives.device, non_blocking=True)
    else:
        draws = draws.to(positives.device)
    draws = draws + (draws >= positives.unsqueeze(1)).long()  # skip the anchor's own index
    return torch.cat([positives.unsqueeze(1), draws], dim=1)


def memory_scores(anchors: Tensor, memory: Tensor, contrast: Tensor) -> Tensor:
    """anchor_i . memory[contrast[i, k]] for every (i, k), by the cheaper of two equal routes."""
    if memory.shape[0] <= contrast.shape[1] * memory.shape[1]:
        return (anchors @ memory.T).gather(1, contrast)
    return torch.bmm(memory[contrast], anchors.unsqueeze(2)).squeeze(2)


def nce_loss(log_p: Tensor, negatives: int, num_train: int) -> Tensor:
    """Eq. 18 with h = P / (P + K/M): column 0 holds the positive, the rest the K negatives."""
    log_noise = math.log(negatives / num_train)
    log_h_positive = -F.softplus(log_noise - log_p[:, 0])
    log_one_minus_h_negative = -F.softplus(log_p[:, 1:] - log_noise)
    return -(log_h_positive.sum() + log_one_minus_h_negative.sum()) / len(log_p)


class ContrastiveRepresentationDistillation(LayerPairMethod):
    Config = CRDConfig
    label_terms = frozenset({"ce"})  # positives are the sample itself (its index), not its class: no label
    unlabelled = "learn"

    @classmethod
    def batch_elements(cls, config: CRDConfig, setup: MethodSetup, batch_size: int) -> int:
        """Two memory banks (num_train x feat_dim) and, per anchor side, the (B, K + 1, feat_dim) gathered rows."""
        negatives = min(config.negatives, max(setup.num_train - 1, 1))
        return 2 * setup.num_train * config.feat_dim + 2 * batch_size * (negatives + 1) * config.feat_dim

    def __init__(self, config: CRDConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        if setup.num_train < 2:
            raise ConfigError(f"crd: needs at least 2 training samples to draw negatives, got {setup.num_train}")
        self.num_train = setup.num_train
        self.negatives = min(config.negatives, setup.num_train - 1)
        self.embed_student = Embed(math.prod(setup.student_shapes[config.student_layer]), config.feat_dim)
        self.embed_teacher = Embed(math.prod(setup.teacher_shapes[config.teacher_layer]), config.feat_dim)
        bound = 1.0 / math.sqrt(config.feat_dim / 3.0)  # uniform init with E||v||^2 = 1, as RepDistiller
        self.register_buffer("memory_student", torch.rand(setup.num_train, config.feat_dim) * 2 * bound - bound)
        self.register_buffer("memory_teacher", torch.rand(setup.num_train, config.feat_dim) * 2 * bound - bound)
        # log Z for the student-anchored and teacher-anchored scores; NaN until the first batch sets it
        self.register_buffer("log_normaliser", torch.full((2,), float("nan")))
        self._normaliser_set = False  # checked against the buffer once an epoch, not every step (a GPU sync)


    def start_epoch(self, epoch: int, epochs: int) -> None:
        super().start_epoch(epoch, epochs)
        self._normaliser_set = False  # the buffer may have been loaded since

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        s = self.embed_student(student.features[self.config.student_layer])
        t = self.embed_teacher(teacher.features[self.config.teacher_layer].detach())
        indices = batch.indices.to(s.device).long()
        contrast = sample_contrast_indices(indices, self.num_train, self.negatives)
        logits_s = memory_scores(s, self.memory_teacher, contrast) / self.config.nce_t
        logits_t = memory_scores(t, self.memory_student, contrast) / self.config.nce_t
        if not self._normaliser_set and torch.isnan(self.log_normaliser).any():
            with torch.no_grad():  # Z = M * mean(exp(logits)) on the first batch, then fixed
                for slot, logits in enumerate((logits_s, logits_t)):
                    log_mean = torch.logsumexp(logits.flatten(), 0) - math.log(logits.numel())
                    self.log_normaliser[slot] = log_mean + math.log(self.num_train)
        self._normaliser_set = True
        loss = nce_loss(logits_s - self.log_normaliser[0], self.negatives, self.num_train) + nce_loss(
            logits_t - self.log_normaliser[1], self.negatives, self.num_train
        )
        if self.training:
            self._update_memory("memory_student", s, indices)
            self._update_memory("memory_teacher", t, indices)
        return {
            "ce": label_cross_entropy(student.logits, batch.labels, self.config.label_smoothing),
            "crd": self.config.beta * loss,
        }

    @torch.no_grad()
    def _update_memory(self, name: str, embeddings: Tensor, indices: Tensor) -> None:
        """Out of place: autograd saved the old bank for this step's backward pass."""
        memory, momentum = getattr(self, name), self.config.momentum
        rows = memory.index_select(0, indices) * momentum + embeddings.detach() * (1.0 - momentum)
        setattr(self, name, memory.index_copy(0, indices, F.normalize(rows, p=2, dim=1)))
