"""Diverged training: stopped when a loss is no longer a number, flagged when it explodes or learns nothing.

A learning rate of 1e6 used to finish "successfully" with losses of 6e12 and students at chance, which
the recommender then ranked. Three rules, documented in docs/reliability.md:

* a non-finite epoch loss (NaN or inf in any term) stops the run with :class:`DivergenceError`, naming
  the run, seed, epoch and term (checked once per epoch: a per-step check would wait for the GPU);
* an epoch loss above ``EXPLODED_LOSS`` flags the run as exploded;
* a best validation accuracy not above the majority-class share of the validation split (what always
  answering the most frequent class scores) flags the run as never beating chance.

Flagged runs keep their results but are marked unusable: the comparison shows why and the
recommender never ranks them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

# Epoch-mean loss terms of every method here are O(1)-O(100) (weights included); 1e6 is far outside.
EXPLODED_LOSS = 1e6


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss; the message names the run, seed, epoch and loss term."""

    def __init__(self, label: str, seed: int, epoch: int, term: str, value: float, history: list[dict]) -> None:
        self.label, self.seed, self.epoch, self.term, self.value = label, seed, epoch, term, value
        self.history = history  # the epochs completed before, for the record
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        return (
            f"diverged: {self.label} (seed {self.seed}) epoch {self.epoch}: non-finite loss ({self.value}) in term(s) "
            f"{self.term}; "
            "lower the learning rate (training.lr) or the method's weights"
        )


def check_finite(row: Mapping[str, float], label: str, seed: int, history: list[dict]) -> None:
    """Raise DivergenceError for the first loss term of an epoch row that is NaN or infinite."""
    bad = {k.removeprefix("loss_"): v for k, v in row.items() if k.startswith("loss_") and k != "loss_total" and not math.isfinite(v)}
    if bad:  # every non-finite term is named: after one NaN step all of them usually are
        raise DivergenceError(label, seed, int(row["epoch"]), ", ".join(bad), next(iter(bad.values())), history)


def chance_accuracy(labels: Tensor) -> float:
    """The accuracy of always answering the most frequent class."""
    if len(labels) == 0:
        return 0.0
    return torch.bincount(labels.long().flatten()).max().item() / len(labels)


def failure_reason(history: Sequence[Mapping[str, float]], chance: float) -> str | None:
    """Why a finished run is unusable (exploded loss, never above chance), or None when it is fine."""
    for row in history:
        for key, value in row.items():
            if key.startswith("loss_") and abs(value) > EXPLODED_LOSS:
                return (
                    f"loss exploded: epoch {int(row['epoch'])} loss term {key.removeprefix('loss_')!r} is {value:.3g}, "
                    f"beyond {EXPLODED_LOSS:.0e}; lower the learning rate (training.lr)"
                )
    best = max((row["val_accuracy"] for row in history), default=0.0)
    if best <= chance:
        return (
            f"never beat chance: best validation accuracy {best:.4f} <= {chance:.4f}, the majority-class share; "
            "check the learning rate and the data"
        )
    return None
