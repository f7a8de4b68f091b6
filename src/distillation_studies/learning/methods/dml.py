"""Deep mutual learning: the student and peer copies of it teach each other; no pre-trained teacher.

Zhang, Xiang, Hospedales, Lu, "Deep Mutual Learning", CVPR 2018 (arXiv:1706.00384), Sec. 3.
Each network k of the cohort (the student and ``peers`` networks built from the student's own spec)
minimises its cross-entropy plus a KL divergence towards the other networks' predictions:

    L_k = CE(y, p_k) + T^2 * KL(p_others || p_k),   p_others = mean of p_l over the cohort's l != k

with p = softmax(z / T), the targets detached (each network treats the others as fixed, as in the
paper's updates). Terms: ``ce`` and ``mutual`` for the student, ``peer_ce`` and ``peer_mutual`` summed
over the peers. With ``peers: 1`` (the default) this is exactly the paper's two-network DML. With more
peers the target is the *average distribution* of the other networks, the paper's ensemble-teacher
variant ("DML_e", Sec. 3.2), not the mean of the pairwise KLs that is its default for larger cohorts.
``temperature`` defaults to 1 as in the paper (no temperature); the T^2 factor only keeps gradient
scales comparable when it is changed.

Honest simplification: the paper updates the networks in turn within each mini-batch step (update
network 1, recompute its predictions, then update network 2). Here the whole cohort is updated
jointly by one backward pass of the summed loss: since every target is detached, each network's
gradient is exactly its own L_k's gradient, but all are taken at the same (pre-update) predictions,
like a simultaneous instead of an alternating update; all networks share the student's optimiser and
learning-rate schedule.

The peers are method parameters: trained with the student, counted in ``training_parameters``,
and dropped at deployment (only the student is evaluated). Initialisation: nn.Module initialisers
take no generator, so the peers are built from the global torch RNG right after the student, when
the method is built. The loop runs ``torch.manual_seed(seed)`` just before building the student, so
for reproducibility independent of anything drawn in between, peer k (1-based) is built inside
``torch.random.fork_rng`` with the CPU generator re-seeded to ``torch.initial_seed() + seed_offset + k``;
the global RNG stream is left as it was. Peers therefore never start from the student's weights, and
with ``seed_offset`` (default 1000) larger than the spread of a study's seeds no peer starts from
another seed arm's student weights (peers of different arms can still share a start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import require_non_negative, require_positive
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.models import build_model


@dataclass(frozen=True)
class DMLConfig:
    peers: int = 1
    temperature: float = 1.0
    seed_offset: int = 1000

    def check(self, where: str) -> None:
        require_positive(self, where, "peers", "temperature")
        require_non_negative(self, where, "seed_offset")


def mutual_kl(log_probs: list[Tensor], k: int, temperature: float) -> Tensor:
    """T^2 * KL(mean_{l != k} p_l || p_k), batch mean; the target is detached."""
    others = torch.stack([lp.detach() for i, lp in enumerate(log_probs) if i != k])
    log_target = torch.logsumexp(others, dim=0) - math.log(len(others))
    return F.kl_div(log_probs[k], log_target, reduction="batchmean", log_target=True) * temperature**2


class DeepMutualLearning(DistillationMethod):
    Config = DMLConfig
    label_terms = frozenset({"ce", "peer_ce"})  # the mutual KL terms need no label
    unlabelled = "learn"
    needs_teacher = False

    def __init__(self, config: DMLConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        if setup.student_spec is None:
            raise ConfigError("dml: needs the student's model spec to build its peers")
        base = torch.initial_seed()
        peers = []
        for k in range(1, config.peers + 1):
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed((base + config.seed_offset + k) % 2**64)
                peers.append(build_model(setup.student_spec))
        self.peers = nn.ModuleList(peers)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        temperature = self.config.temperature
        peer_logits = [peer(batch.inputs) for peer in self.peers]
        log_probs = [F.log_softmax(z / temperature, dim=1) for z in [student.logits, *peer_logits]]
        return {
            "ce": F.cross_entropy(student.logits, batch.labels),
            "mutual": mutual_kl(log_probs, 0, temperature),
            "peer_ce": torch.stack([F.cross_entropy(z, batch.labels) for z in peer_logits]).sum(),
            "peer_mutual": torch.stack([mutual_kl(log_probs, k, temperature) for k in range(1, len(log_probs))]).sum(),
        }
