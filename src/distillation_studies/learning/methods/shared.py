"""Fit a method's own network for N epochs in ``prepare`` (FT's paraphraser, TAKD's assistant).

Methods sit below the one training loop (``learning.training`` imports ``methods.base``), so a method
that must fit a network before the student trains does it here, not through the loop. The batch
order is the loop's for the same seed and size: one ``randperm`` per epoch from a CPU generator
seeded with ``seed``, cut into batches of ``batch_size`` (the last one shorter). The caller reads its
own data from the batch's sample indices, so tensors and Datasets are both fine.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch
from torch import Tensor, nn

from distillation_studies.learning.divergence import check_finite

log = logging.getLogger(__name__)

BatchTerms = Callable[[Tensor], dict[str, Tensor]]  # sample indices -> named loss terms, batch means


def fit(
    module: nn.Module,
    batch_terms: BatchTerms,
    size: int,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    label: str,
    cosine: bool = False,
) -> list[dict[str, float]]:
    """Minimise the sum of ``batch_terms(indices)`` over ``epochs`` shuffled passes of ``range(size)``.

    One ``optimizer`` step per batch; ``cosine`` anneals its learning rate to 0 over all steps, stepped
    per batch as the loop does. Returns one row per epoch like the loop's history (``epoch``,
    ``loss_<term>`` averaged over samples, ``loss_total``); a non-finite term stops the fit with
    :class:`~distillation_studies.learning.divergence.DivergenceError` naming ``label`` and ``seed``.
    Indices are on the device of ``module``'s first parameter.
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(module.parameters()).device
    steps = epochs * math.ceil(size / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps) if cosine else None
    history: list[dict[str, float]] = []
    module.train()
    with torch.enable_grad():  # prepare may be called under no_grad
        for epoch in range(1, epochs + 1):
            totals: dict[str, Tensor] = {}
            for indices in torch.randperm(size, generator=generator).to(device).split(batch_size):
                terms = batch_terms(indices)
                loss = torch.stack([t.float() for t in terms.values()]).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                for name, value in terms.items():  # summed on the device: no host sync per step
                    totals[name] = totals.get(name, 0.0) + value.detach().float() * len(indices)
            history.append(_epoch_row(epoch, totals, size, label, seed, history))
    return history


def _epoch_row(epoch: int, totals: dict[str, Tensor], size: int, label: str, seed: int, history: list[dict]) -> dict[str, float]:
    """The epoch's sample-averaged terms and their total, checked finite and logged."""
    row: dict[str, float] = {"epoch": epoch, **{f"loss_{k}": v.item() / size for k, v in totals.items()}}
    row["loss_total"] = sum(v for k, v in row.items() if k.startswith("loss_"))
    check_finite(row, label, seed, history)
    log.debug("%s epoch %d %s", label, epoch, " ".join(f"{k[5:]}={v:.6f}" for k, v in row.items() if k.startswith("loss_")))
    return row
