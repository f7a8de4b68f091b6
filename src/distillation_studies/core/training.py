"""The one training loop: teacher training and every distillation method go through ``train``.

The loop knows nothing about methods: it captures the features a method asks for, sums the named
loss terms the method returns, logs each one per epoch, and keeps the best-on-validation weights.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from distillation_studies.core.config import require_choice, require_positive
from distillation_studies.core.errors import ConfigError
from distillation_studies.core.features import capture_features
from distillation_studies.core.methods.base import Batch, DistillationMethod, ModelOutputs

log = logging.getLogger(__name__)

OPTIMIZERS = ["adam", "sgd"]
SCHEDULES = ["cosine", "constant"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by teacher and students."""

    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"

    def check(self, where: str) -> None:
        require_positive(self, where, "epochs", "batch_size", "lr")
        require_choice(self, where, "optimizer", OPTIMIZERS)
        require_choice(self, where, "schedule", SCHEDULES)
        if self.weight_decay < 0:
            raise ConfigError(f"{where}.weight_decay: must be >= 0, got {self.weight_decay}")


@dataclass
class TrainResult:
    """Best-on-validation and last-epoch weights, with the per-epoch history of every loss term."""

    best_state: dict[str, Tensor]
    last_state: dict[str, Tensor]
    history: list[dict[str, float]]
    best_epoch: int
    wall_time_s: float
    method_parameters: int
    summary: dict[str, float] = field(default_factory=dict)


def forward_with_features(model: nn.Module, x: Tensor, layers: list[str]) -> ModelOutputs:
    with capture_features(model, layers) as features:
        logits = model(x)
    return ModelOutputs(logits, dict(features))


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, layers: list[str] | None = None, batch_size: int = 256) -> ModelOutputs:
    """Eval-mode outputs over a whole tensor, in batches (features concatenated too)."""
    was_training = model.training
    model.eval()
    parts = [forward_with_features(model, x[i : i + batch_size], layers or []) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return ModelOutputs(
        torch.cat([p.logits for p in parts]),
        {name: torch.cat([p.features[name] for p in parts]) for name in (layers or [])},
    )


def _select(outputs: ModelOutputs, indices: Tensor) -> ModelOutputs:
    return ModelOutputs(outputs.logits[indices], {k: v[indices] for k, v in outputs.features.items()})


def _teacher_view(teacher: nn.Module | None, x: Tensor, layers: list[str]) -> ModelOutputs | None:
    """Teacher outputs on un-augmented training inputs, for methods that prepare on them."""
    return None if teacher is None else predict(teacher, x, layers)


def _optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps: int):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)


def train(
    model: nn.Module,
    method: DistillationMethod,
    train_data: dict[str, Tensor],
    val_data: dict[str, Tensor],
    config: TrainConfig,
    seed: int,
    teacher: nn.Module | None = None,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    label: str = "model",
) -> TrainResult:
    """Train ``model`` (and the method's own parameters) on ``method``'s summed loss terms.

    The teacher, if any, stays frozen in eval mode under no-grad. Without augmentation its outputs
    on the training set are computed once and indexed per batch, since they never change.
    """
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    student_layers, teacher_layers = method.layers(method.config)
    x, y = train_data["x"], train_data["y"]
    teacher_cache = None
    if teacher is not None:
        teacher.eval().requires_grad_(False)
        if augment is None:
            teacher_cache = predict(teacher, x, teacher_layers)
    method.prepare(teacher_cache if teacher_cache is not None else _teacher_view(teacher, x, teacher_layers), train_data)

    trainable = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    optimizer = _optimizer(trainable, config)
    steps_per_epoch = -(-len(x) // config.batch_size)
    scheduler = _scheduler(optimizer, config, config.epochs * steps_per_epoch)

    history: list[dict[str, float]] = []
    best_accuracy, best_epoch, best_state = -1.0, 0, None
    for epoch in range(1, config.epochs + 1):
        model.train()
        method.train()
        method.start_epoch(epoch, config.epochs)
        totals: dict[str, float] = {}
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            indices = order[start : start + config.batch_size]
            inputs = x[indices] if augment is None else augment(x[indices], generator)
            student_out = forward_with_features(model, inputs, student_layers)
            teacher_out = None
            if teacher is not None:
                teacher_out = (
                    _select(teacher_cache, indices) if teacher_cache is not None else predict(teacher, inputs, teacher_layers)
                )
            terms = method(student_out, teacher_out, Batch(inputs, y[indices], indices))
            loss = torch.stack(list(terms.values())).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + value.item() * len(indices)
        val_accuracy = accuracy(predict(model, val_data["x"]).logits, val_data["y"])
        row = {"epoch": epoch, **{f"loss_{k}": v / len(x) for k, v in totals.items()}}
        row["loss_total"] = sum(v for k, v in row.items() if k.startswith("loss_"))
        row["val_accuracy"] = val_accuracy
        history.append(row)
        if val_accuracy > best_accuracy:
            best_accuracy, best_epoch = val_accuracy, epoch
            best_state = copy.deepcopy(model.state_dict())
        log.info(
            "%s epoch %d/%d %s val_acc=%.4f",
            label,
            epoch,
            config.epochs,
            " ".join(f"{k[5:]}={v:.4f}" for k, v in row.items() if k.startswith("loss_")),
            val_accuracy,
        )
    return TrainResult(
        best_state=best_state,
        last_state=copy.deepcopy(model.state_dict()),
        history=history,
        best_epoch=best_epoch,
        wall_time_s=time.perf_counter() - started,
        method_parameters=sum(p.numel() for p in method.parameters()),
        summary={"best_val_accuracy": best_accuracy},
    )


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return (logits.argmax(dim=1) == labels).float().mean().item()
