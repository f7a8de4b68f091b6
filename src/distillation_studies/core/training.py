"""The one training loop: teacher training and every distillation method go through ``train``.

The loop knows nothing about methods: it captures the features a method asks for, sums the named
loss terms the method returns, logs each one per epoch, and keeps the best-on-validation weights.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from distillation_studies.core.config import require_choice, require_positive
from distillation_studies.core.errors import ConfigError
from distillation_studies.core.features import capture_features
from distillation_studies.core.methods.base import Batch, DistillationMethod, ModelOutputs
from distillation_studies.core.vision_data import standard_augmentation

log = logging.getLogger(__name__)

OPTIMIZERS = ["adam", "sgd"]
SCHEDULES = ["cosine", "constant", "multistep"]
DEVICES = ["auto", "cpu", "cuda", "mps"]
PRECISIONS = ["auto", "fp32", "bf16"]
AUGMENTATIONS = ["none", "standard"]


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
    milestones: tuple[int, ...] = ()  # multistep: epochs after which the learning rate is multiplied by gamma
    gamma: float = 0.1
    device: str = "auto"  # auto: cuda if visible, else mps, else cpu
    precision: str = "auto"  # auto: bf16 autocast on cuda, fp32 elsewhere
    channels_last: bool = True  # conv memory layout on cuda only
    compile: bool = False  # torch.compile the model (cuda only)
    augment: str = "none"  # standard: random crop (padding 4) + horizontal flip; disables teacher caching

    def check(self, where: str) -> None:
        require_positive(self, where, "epochs", "batch_size", "lr")
        require_choice(self, where, "optimizer", OPTIMIZERS)
        require_choice(self, where, "schedule", SCHEDULES)
        require_choice(self, where, "device", DEVICES)
        require_choice(self, where, "precision", PRECISIONS)
        require_choice(self, where, "augment", AUGMENTATIONS)
        if self.schedule == "multistep" and not self.milestones:
            raise ConfigError(f"{where}.milestones: required by schedule multistep (e.g. [150, 180, 210])")
        if any(not 0 < m < self.epochs for m in self.milestones) or list(self.milestones) != sorted(set(self.milestones)):
            raise ConfigError(f"{where}.milestones: must be increasing epochs in (0, epochs={self.epochs}), got {list(self.milestones)}")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"{where}.gamma: must be in (0, 1], got {self.gamma}")
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


def forward_with_features(model: nn.Module, x: Tensor, layers: list[str], wrapper: nn.Module | None = None) -> ModelOutputs:
    """Logits plus the features at ``layers``; hooks go on ``model``, the call through ``wrapper``
    (a DDP- or compile-wrapped ``model``) when given, so module paths never change."""
    with capture_features(model, layers) as features:
        logits = (wrapper or model)(x)
    return ModelOutputs(logits, dict(features))


def resolve_device(name: str) -> torch.device:
    """The torch device for a ``device`` setting; an unavailable accelerator is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())  # the process's GPU under torchrun
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available[name]:
        raise ConfigError(f"training.device: {name!r} requested but not available on this machine; use auto or cpu")
    return torch.device("cuda", torch.cuda.current_device()) if name == "cuda" else torch.device(name)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, layers: list[str] | None = None, batch_size: int = 256) -> ModelOutputs:
    """Eval-mode outputs over a whole tensor, in batches on the model's device (features concatenated too)."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    parts = [
        forward_with_features(model, x[i : i + batch_size].to(device), layers or []) for i in range(0, len(x), batch_size)
    ]
    model.train(was_training)
    return ModelOutputs(
        torch.cat([p.logits for p in parts]),
        {name: torch.cat([p.features[name] for p in parts]) for name in (layers or [])},
    )


def _select(outputs: ModelOutputs, indices: Tensor) -> ModelOutputs:
    return ModelOutputs(outputs.logits[indices], {k: v[indices] for k, v in outputs.features.items()})


def _process_group() -> tuple[int, int]:
    """(rank, world size) under torch.distributed, (0, 1) otherwise."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _average_gradients(module: nn.Module) -> None:
    world = dist.get_world_size()
    for parameter in module.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world


def _to(x: Tensor, device: torch.device, layout: torch.memory_format) -> Tensor:
    return x.to(device, memory_format=layout) if x.dim() == 4 else x.to(device)


def _use_bf16(config: TrainConfig, device: torch.device) -> bool:
    return config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    """A detached CPU copy of the weights (safe to keep while training continues on any device)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _teacher_view(teacher: nn.Module | None, x: Tensor, layers: list[str]) -> ModelOutputs | None:
    """Teacher outputs on un-augmented training inputs, for methods that prepare on them."""
    return None if teacher is None else predict(teacher, x, layers)


def _optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Stepped once per batch: cosine over the whole run, constant, or x gamma after each milestone epoch."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    if config.schedule == "multistep":
        milestones = config.milestones

        def factor(step: int) -> float:
            return config.gamma ** sum(step >= m * steps_per_epoch for m in milestones)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
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
    on the training set are computed once and indexed per batch, since they never change. Models
    and data move to ``config.device`` for training and come back to the CPU afterwards.
    """
    started = time.perf_counter()
    device = resolve_device(config.device)
    generator = torch.Generator().manual_seed(seed)
    augment = augment or (standard_augmentation() if config.augment == "standard" else None)
    student_layers, teacher_layers = method.layers(method.config)
    layout = torch.channels_last if config.channels_last and device.type == "cuda" else torch.contiguous_format
    model.to(device, memory_format=layout)
    method.to(device)
    x, y = _to(train_data["x"], device, layout), train_data["y"].to(device)
    val_x, val_y = _to(val_data["x"], device, layout), val_data["y"].to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=_use_bf16(config, device))
    forward_model = torch.compile(model) if config.compile and device.type == "cuda" else model
    rank, world = _process_group()
    if world > 1:  # launched with torchrun: each process takes its share of every global batch
        forward_model = DistributedDataParallel(forward_model, device_ids=[device.index] if device.type == "cuda" else None)
    teacher_cache = None
    if teacher is not None:
        teacher.to(device, memory_format=layout).eval().requires_grad_(False)
        if augment is None:
            teacher_cache = predict(teacher, x, teacher_layers)
    method.prepare(teacher_cache if teacher_cache is not None else _teacher_view(teacher, x, teacher_layers), {"x": x, "y": y})

    trainable = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    optimizer = _optimizer(trainable, config)
    steps_per_epoch = -(-len(x) // config.batch_size)
    scheduler = _scheduler(optimizer, config, steps_per_epoch)

    history: list[dict[str, float]] = []
    best_accuracy, best_epoch, best_state = -1.0, 0, None
    for epoch in range(1, config.epochs + 1):
        model.train()
        method.train()
        method.start_epoch(epoch, config.epochs)
        totals: dict[str, Tensor] = {}
        order = torch.randperm(len(x), generator=generator).to(device)
        for start in range(0, len(x), config.batch_size):
            indices = order[start : start + config.batch_size]
            if len(indices) < world:  # too small to give every process a sample: dropped on all of them
                continue
            indices = indices[rank::world]
            inputs = x[indices] if augment is None else augment(x[indices], generator)
            with autocast:
                student_out = forward_with_features(model, inputs, student_layers, wrapper=forward_model)
                teacher_out = None
                if teacher is not None:
                    teacher_out = (
                        _select(teacher_cache, indices) if teacher_cache is not None else predict(teacher, inputs, teacher_layers)
                    )
                terms = method(student_out, teacher_out, Batch(inputs, y[indices], indices))
                loss = torch.stack([t.float() for t in terms.values()]).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1:
                _average_gradients(method)  # DDP averages the student's; the method's parts are averaged here
            optimizer.step()
            scheduler.step()
            for name, value in terms.items():  # summed on the device: no host sync per step
                totals[name] = totals.get(name, 0.0) + value.detach().float() * len(indices)
        if world > 1:  # loss terms summed over every process's share of the data
            for value in totals.values():
                dist.all_reduce(value)
        with autocast:
            val_accuracy = accuracy(predict(model, val_x).logits, val_y)
        row = {"epoch": epoch, **{f"loss_{k}": v.item() / len(x) for k, v in totals.items()}}
        row["loss_total"] = sum(v for k, v in row.items() if k.startswith("loss_"))
        row["val_accuracy"] = val_accuracy
        history.append(row)
        if val_accuracy > best_accuracy:
            best_accuracy, best_epoch = val_accuracy, epoch
            best_state = _cpu_state(model)
        log.info(
            "%s epoch %d/%d %s val_acc=%.4f",
            label,
            epoch,
            config.epochs,
            " ".join(f"{k[5:]}={v:.4f}" for k, v in row.items() if k.startswith("loss_")),
            val_accuracy,
        )
    last_state = _cpu_state(model)
    for module in (model, method, teacher):
        if module is not None:
            module.to("cpu", memory_format=torch.contiguous_format)
    return TrainResult(
        best_state=best_state,
        last_state=last_state,
        history=history,
        best_epoch=best_epoch,
        wall_time_s=time.perf_counter() - started,
        method_parameters=sum(p.numel() for p in method.parameters()),
        summary={"best_val_accuracy": best_accuracy},
    )


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return (logits.argmax(dim=1) == labels).float().mean().item()
