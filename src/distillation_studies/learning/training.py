"""The one training loop: teacher training and every distillation method go through ``train``.

The loop knows nothing about methods: it captures the features a method asks for, sums the named
loss terms the method returns, logs each one per epoch, and keeps the best-on-validation weights.

Data comes in memory (``{"x", "y"}`` tensors, moved to the device once and indexed there) or as a
torch ``Dataset`` such as a :class:`~distillation_studies.learning.streaming.StreamedSplit`, read through a
DataLoader (``workers`` processes, pinned memory on CUDA). Both paths draw the same batch order
from the seed and augment on the device, so the same data trains the same weights either way.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager, nullcontext
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Callable, Union

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from distillation_studies.common.config import require_choice, require_non_negative, require_positive
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.features import capture_features
from distillation_studies.learning.methods.base import UNLABELLED, Batch, DistillationMethod, ModelOutputs
from distillation_studies.learning.methods.shared import LossTotals, total_loss
from distillation_studies.learning.streaming import labels_of
from distillation_studies.learning.vision_data import IndexedDataset, standard_augmentation

log = logging.getLogger(__name__)

OPTIMIZERS = ["adam", "sgd"]
SCHEDULES = ["cosine", "constant", "multistep"]
DEVICES = ["auto", "cpu", "cuda", "mps"]
PRECISIONS = ["auto", "fp32", "bf16"]
AUGMENTATIONS = ["none", "standard"]
TrainingData = Union[Mapping[str, Tensor], Dataset]  # {"x", "y"} in memory, or a Dataset of (x, y)
Augment = Callable[[Tensor, torch.Generator], Tensor]  # (inputs, generator on their device) -> augmented inputs


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
    workers: int = 0  # DataLoader worker processes, for data read from disk (Dataset inputs) only
    teacher_cache_gb: float = 4.0  # largest cache of teacher outputs kept on the device; above, recomputed per batch
    # Transfer sets only (some samples unlabelled): 0 shuffles labelled and unlabelled samples together,
    # so a batch holds them in the data's proportion; k > 0 puts exactly k labelled samples (cycled,
    # reshuffled each pass) beside batch_size - k unlabelled ones, an epoch being one pass over the unlabelled
    # when no budget (below) sets its steps.
    labelled_per_batch: int = 0
    # The budget in optimiser steps, split over ``epochs`` rounds (validation once per round); every step
    # is a full batch drawn from reshuffled passes over the run's data. None: ``epochs`` times the steps
    # per epoch the caller sets (a study cell: one pass over its largest training set), else one pass.
    steps: int | None = None

    def check(self, where: str) -> None:
        require_positive(self, where, "epochs", "batch_size", "lr")
        if self.steps is not None and self.steps < self.epochs:
            raise ConfigError(
                f"{where}.steps: must be at least epochs={self.epochs} (one optimiser step per epoch) or null "
                f"(epochs times the cell's steps per epoch), got {self.steps}"
            )
        require_non_negative(self, where, "workers", "teacher_cache_gb", "weight_decay", "labelled_per_batch")
        if self.labelled_per_batch >= self.batch_size:
            raise ConfigError(
                f"{where}.labelled_per_batch: must leave room for unlabelled samples (< batch_size={self.batch_size}), "
                f"got {self.labelled_per_batch}"
            )
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
    """Logits plus the features at ``layers`` for one call (the loop keeps its hooks on for a whole run)."""
    with capture_features(model, layers) as features:
        logits = model(x)
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


def _inputs_in_order(data: Tensor | TrainingData, batch_size: int, workers: int = 0) -> Iterator[Tensor]:
    """The inputs of a tensor, an {"x", "y"} mapping or a Dataset of (x, y, ...), batch by batch in order."""
    if isinstance(data, Mapping):
        data = data["x"]
    if isinstance(data, Tensor):
        for start in range(0, len(data), batch_size):
            yield data[start : start + batch_size]
        return
    for batch in DataLoader(data, batch_size=batch_size, num_workers=workers):
        yield batch[0]


@torch.no_grad()
def predict(
    model: nn.Module,
    x: Tensor | TrainingData,
    layers: list[str] | None = None,
    batch_size: int = 256,
    workers: int = 0,
) -> ModelOutputs:
    """Eval-mode outputs over all inputs (a tensor, an {"x", "y"} split or a Dataset), in batches on the
    model's device (features concatenated too)."""
    device = _device_of(model)
    with _eval_mode(model), capture_features(model, layers or []) as features:
        parts = [ModelOutputs(model(batch.to(device)), dict(features)) for batch in _inputs_in_order(x, batch_size, workers)]
    return _concatenate(parts, layers or [])


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside, as it was after; a model already in eval mode is left alone
    (switching walks every sub-module)."""
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _concatenate(parts: list[ModelOutputs], layers: list[str]) -> ModelOutputs:
    if len(parts) == 1:
        return parts[0]
    return ModelOutputs(torch.cat([p.logits for p in parts]), {name: torch.cat([p.features[name] for p in parts]) for name in layers})


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


def _to(x: Tensor, device: torch.device, layout: torch.memory_format, non_blocking: bool = False) -> Tensor:
    if x.dim() == 4:
        return x.to(device, memory_format=layout, non_blocking=non_blocking)
    return x.to(device, non_blocking=non_blocking)


def _use_bf16(config: TrainConfig, device: torch.device) -> bool:
    return config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")


def _autocast(config: TrainConfig, device: torch.device) -> torch.autocast | nullcontext:
    """bf16 autocast where configured; fp32 otherwise, without a context to enter at every step unless
    a caller's autocast must be switched off."""
    bf16 = _use_bf16(config, device)
    if bf16 or torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    return nullcontext()


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    """A detached CPU copy of the weights (safe to keep while training continues on any device)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


class _PlannedBatches(Sampler[list[int]]):
    """Batch sampler of the DataLoader path: yields the index groups the loop planned for the epoch."""

    def __init__(self) -> None:
        self.plan: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.plan)

    def __len__(self) -> int:
        return len(self.plan)


class _InMemory:
    """Tensors moved to the device once; batches are index lookups there."""

    def __init__(self, data: Mapping[str, Tensor], device: torch.device, layout: torch.memory_format) -> None:
        self.x, self.y, self.device = _to(data["x"], device, layout), data["y"].to(device), device

    def __len__(self) -> int:
        return len(self.y)

    def first_input(self) -> Tensor:
        return self.x[:1]

    def batches(self, groups: list[Tensor]) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        if not groups:
            return
        if self.device.type != "cpu":
            # One host-to-device copy per epoch: a copy per batch would wait for the GPU at every step.
            groups = torch.cat(groups).to(self.device).split([len(group) for group in groups])
        for indices in groups:
            yield self.x[indices], self.y[indices], indices

    def predict(self, model: nn.Module, layers: list[str] | None = None) -> ModelOutputs:
        return predict(model, self.x, layers)


class _Streamed:
    """A Dataset read through one persistent DataLoader per use (training batches, in-order passes)."""

    def __init__(self, data: Dataset, device: torch.device, layout: torch.memory_format, workers: int) -> None:
        self.data, self.device, self.layout = data, device, layout
        self.y = labels_of(data).to(device)
        self.plan = _PlannedBatches()
        pin = device.type == "cuda"
        self.loader = DataLoader(
            IndexedDataset(data), batch_sampler=self.plan, num_workers=workers, pin_memory=pin, persistent_workers=workers > 0
        )

    def __len__(self) -> int:
        return len(self.y)

    def first_input(self) -> Tensor:
        return _to(self.data[0][0].unsqueeze(0), self.device, self.layout)

    def batches(self, groups: list[Tensor]) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        self.plan.plan = [indices.tolist() for indices in groups]
        for x, y, indices in self.loader:
            yield (
                _to(x, self.device, self.layout, non_blocking=True),
                y.to(self.device, non_blocking=True),
                indices.to(self.device, non_blocking=True),
            )

    @torch.no_grad()
    def predict(self, model: nn.Module, layers: list[str] | None = None, batch_size: int = 256) -> ModelOutputs:
        """Eval-mode outputs over the whole dataset in order, read through the same workers."""
        groups = [torch.arange(i, min(i + batch_size, len(self))) for i in range(0, len(self), batch_size)]
        with _eval_mode(model), capture_features(model, layers or []) as features:
            parts = [ModelOutputs(model(x), dict(features)) for x, _, _ in self.batches(groups)]
        return _concatenate(parts, layers or [])


def _source(data: TrainingData, device: torch.device, layout: torch.memory_format, workers: int) -> _InMemory | _Streamed:
    return _InMemory(data, device, layout) if isinstance(data, Mapping) else _Streamed(data, device, layout, workers)


def _cache_bytes(teacher: nn.Module, source: _InMemory | _Streamed, layers: list[str]) -> int:
    """What caching the teacher's logits and ``layers`` features for the whole training set would take."""
    outputs = predict(teacher, source.first_input(), layers)
    per_sample = outputs.logits[0].numel() + sum(f[0].numel() for f in outputs.features.values())
    return per_sample * outputs.logits.element_size() * len(source)


def _optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def epoch_steps(config: TrainConfig, steps_per_epoch: int | None = None) -> list[int] | None:
    """The optimiser steps of each epoch under a budget, None without one (each epoch one pass).

    ``config.steps`` splits into ``epochs`` near-equal rounds (the later ones take the remainder);
    otherwise ``steps_per_epoch`` (a study cell's, the same for all its arms) is taken every epoch.
    """
    if config.steps is not None:
        if config.steps < config.epochs:
            raise ConfigError(f"training.steps: must be at least epochs={config.epochs}, got {config.steps}")
        ends = [epoch * config.steps // config.epochs for epoch in range(config.epochs + 1)]
        return [after - before for before, after in zip(ends, ends[1:])]
    if steps_per_epoch is not None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch: must be at least 1, got {steps_per_epoch}")
        return [steps_per_epoch] * config.epochs
    return None


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps: list[int]):
    """Stepped once per batch (``steps[e]`` in epoch e + 1): cosine over the whole run, constant, or
    x gamma after each milestone epoch."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=sum(steps))
    if config.schedule == "multistep":
        ends = torch.tensor(steps).cumsum(0).tolist()  # the step count at the end of each epoch
        milestones = config.milestones

        def factor(step: int) -> float:
            return config.gamma ** sum(step >= ends[m - 1] for m in milestones)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)


@dataclass
class _Loop:
    """What every epoch of one ``train`` call reads, built once by :func:`_set_up`."""

    model: nn.Module
    forward_model: nn.Module  # ``model``, or it compiled or DDP-wrapped: hooks stay on ``model``
    method: DistillationMethod
    teacher: nn.Module | None
    config: TrainConfig
    label: str
    seed: int
    device: torch.device
    train_source: _InMemory | _Streamed
    val_source: _InMemory | _Streamed
    generator: torch.Generator  # batch order, on the CPU
    augment: Augment | None
    augment_generator: torch.Generator  # on the training device
    autocast: torch.autocast | nullcontext
    student_layers: list[str]
    teacher_layers: list[str]
    teacher_cache: ModelOutputs | None  # the teacher's outputs on the training set, when fixed
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    mask: Tensor | None  # labelled samples of a transfer set, on the CPU
    mask_on_device: Tensor | None
    budget: list[int] | None  # optimiser steps per epoch, None: one pass
    rank: int
    world: int


@dataclass
class _Epoch:
    """One epoch's sums, still on the device, and its batch plan (for the denominators)."""

    totals: LossTotals
    predictions: list[Tensor]  # per batch: the student's class for each sample, compared with
    labels: list[Tensor]  # the batch's labels (UNLABELLED never matches) at the epoch's end
    labelled_seen: Tensor
    groups: list[Tensor]  # this process's share of each batch
    label_counts: list[int]
    lr: float  # the rate the epoch started with
    steps: int  # optimiser steps over every process
    samples: int


def train(
    model: nn.Module,
    method: DistillationMethod,
    train_data: TrainingData,
    val_data: TrainingData,
    config: TrainConfig,
    seed: int,
    teacher: nn.Module | None = None,
    augment: Augment | None = None,
    label: str = "model",
    labelled: Tensor | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    steps_per_epoch: int | None = None,
) -> TrainResult:
    """Train ``model`` (and the method's own parameters) on ``method``'s summed loss terms.

    ``labelled`` (bool per training sample, None: all) marks a transfer set: the other samples reach
    the method with the label ``UNLABELLED``, so its label terms (``method.label_terms``) average over
    labelled samples only and are dropped from batches without one, while teacher terms see every
    sample; ``config.labelled_per_batch`` sets the batch mix (:func:`_epoch_groups`).

    ``augment(x, generator)`` gets a generator on the training device (the loop's own on the CPU).
    The teacher, if any, stays frozen in eval mode under no-grad. Without augmentation its outputs
    on the training set are computed once and indexed per batch, since they never change (unless
    they would exceed ``config.teacher_cache_gb``). Models and data move to ``config.device`` for
    training and come back to the CPU afterwards. ``on_epoch(row)``, if given, receives each epoch's
    history row as soon as the epoch ends (e.g. to track a long run live).

    ``steps_per_epoch`` (a study cell's, the same for every arm of it) sets the budget when
    ``config.steps`` does not (:func:`epoch_steps`): each epoch then takes exactly that many full batches,
    cycling over data smaller than the cell's, so arms on different data make the same number of steps.
    The summary counts the ``optimizer_steps`` made and the ``samples_seen`` by them.
    """
    started = time.perf_counter()
    loop = _set_up(model, method, teacher, (train_data, val_data), config, seed, label, augment, labelled, steps_per_epoch)
    history: list[dict[str, float]] = []
    best_accuracy, best_epoch, best_state = -1.0, 0, None
    optimizer_steps, samples_seen = 0, 0
    # Feature hooks go on once for the whole run, not per batch (each forward refills the dicts).
    teacher_hooks = capture_features(teacher, loop.teacher_layers) if teacher is not None else nullcontext({})
    with capture_features(model, loop.student_layers) as student_features, teacher_hooks as teacher_features:
        for epoch in range(1, config.epochs + 1):
            done = _run_epoch(loop, epoch, student_features, teacher_features)
            optimizer_steps, samples_seen = optimizer_steps + done.steps, samples_seen + done.samples
            row = _epoch_row(loop, epoch, done, history)
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
            if row["val_accuracy"] > best_accuracy:
                best_accuracy, best_epoch = row["val_accuracy"], epoch
                best_state = _cpu_state(model)
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
        summary={"best_val_accuracy": best_accuracy, "optimizer_steps": optimizer_steps, "samples_seen": samples_seen},
    )


def _set_up(
    model: nn.Module, method: DistillationMethod, teacher: nn.Module | None, data: tuple[TrainingData, TrainingData],
    config: TrainConfig, seed: int, label: str, augment: Augment | None, labelled: Tensor | None, steps_per_epoch: int | None,
) -> _Loop:
    """Models and data on the device, the teacher frozen (and cached when it can be), the method
    prepared, the optimiser and schedule built for the planned steps."""
    train_data, val_data = data
    device = resolve_device(config.device)
    generator = torch.Generator().manual_seed(seed)  # batch order: drawn on the CPU for both data paths
    # Augmentation draws on the training device: a per-batch copy of CPU draws to a GPU waits for the GPU.
    augment_generator = generator if device.type == "cpu" else torch.Generator(device).manual_seed(seed)
    augment = augment or (standard_augmentation() if config.augment == "standard" else None)
    student_layers, teacher_layers = method.layers(method.config)
    layout = torch.channels_last if config.channels_last and device.type == "cuda" else torch.contiguous_format
    model.to(device, memory_format=layout)
    method.to(device)
    train_source = _source(train_data, device, layout, config.workers)
    forward_model = torch.compile(model) if config.compile and device.type == "cuda" else model
    rank, world = _process_group()
    if world > 1:  # launched with torchrun: each process takes its share of every global batch
        forward_model = DistributedDataParallel(forward_model, device_ids=[device.index] if device.type == "cuda" else None)
    if teacher is not None:
        teacher.to(device, memory_format=layout).eval().requires_grad_(False)
    teacher_cache = _teacher_cache(teacher, train_source, teacher_layers, augment is None, config, label)
    if teacher_cache is None and teacher is not None and method.needs_teacher_train:
        method.prepare(train_source.predict(teacher, teacher_layers), train_data)
    else:
        method.prepare(teacher_cache, train_data)
    optimizer = _optimizer([p for p in [*model.parameters(), *method.parameters()] if p.requires_grad], config)
    mask = _transfer_mask(labelled, len(train_source))
    budget = epoch_steps(config, steps_per_epoch)
    planned = budget or [len(_epoch_groups(len(train_source), config, torch.Generator(), mask))] * config.epochs
    return _Loop(
        model, forward_model, method, teacher, config, label, seed, device, train_source,
        _source(val_data, device, layout, config.workers), generator, augment, augment_generator,
        _autocast(config, device),
        student_layers, teacher_layers, teacher_cache, optimizer, _scheduler(optimizer, config, planned),
        mask, mask.to(device) if mask is not None else None, budget, rank, world,
    )


def _run_epoch(loop: _Loop, epoch: int, student_features: dict[str, Tensor], teacher_features: dict[str, Tensor]) -> _Epoch:
    """One epoch of optimiser steps; its loss sums and counts stay on the device."""
    model, method, config = loop.model, loop.method, loop.config
    model.train()
    method.train()
    method.start_epoch(epoch, config.epochs)
    totals = LossTotals(method.label_terms)
    predictions: list[Tensor] = []  # compared with the labels once at the epoch's end, not per step
    batch_labels: list[Tensor] = []
    lr = loop.optimizer.param_groups[0]["lr"]  # the rate the epoch starts with (the schedule steps per batch)
    groups = _epoch_groups(len(loop.train_source), config, loop.generator, loop.mask, loop.budget[epoch - 1] if loop.budget else None)
    # A batch too small to give every process a sample is dropped on all of them.
    groups = [indices for indices in groups if len(indices) >= loop.world]
    steps, samples = len(groups), sum(len(g) for g in groups)
    if loop.world > 1:
        groups = [indices[loop.rank :: loop.world] for indices in groups]
    label_counts = [int(loop.mask[g].sum()) for g in groups] if loop.mask is not None else [len(g) for g in groups]
    for (inputs, labels, indices), labelled_count in zip(loop.train_source.batches(groups), label_counts):
        if loop.mask_on_device is not None:
            labels = labels.masked_fill(~loop.mask_on_device[indices], UNLABELLED)
        if loop.augment is not None:
            inputs = loop.augment(inputs, loop.augment_generator)
        with loop.autocast:
            student_out = ModelOutputs(loop.forward_model(inputs), dict(student_features))
            terms = method(student_out, _teacher_outputs(loop, inputs, indices, teacher_features), Batch(inputs, labels, indices))
            if labelled_count == 0:  # a label term averaged over no sample is 0/0
                terms = {k: v for k, v in terms.items() if k not in method.label_terms}
            loss = total_loss(terms)
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if loop.world > 1:
            _average_gradients(method)  # DDP averages the student's; the method's parts are averaged here
        loop.optimizer.step()
        loop.scheduler.step()
        totals.add(terms, len(indices), labelled_count)
        predictions.append(student_out.logits.argmax(dim=1))
        batch_labels.append(labels)
    labelled_seen = torch.tensor(float(sum(label_counts)), device=loop.device)
    return _Epoch(totals, predictions, batch_labels, labelled_seen, groups, label_counts, lr, steps, samples)


def _teacher_outputs(loop: _Loop, inputs: Tensor, indices: Tensor, features: dict[str, Tensor]) -> ModelOutputs | None:
    """The frozen teacher's outputs on a batch: looked up in the cache, or one no-grad forward pass."""
    if loop.teacher is None:
        return None
    if loop.teacher_cache is not None:
        return _select(loop.teacher_cache, indices)
    with torch.no_grad():
        return ModelOutputs(loop.teacher(inputs), dict(features))


def _epoch_row(loop: _Loop, epoch: int, done: _Epoch, history: list[dict[str, float]]) -> dict[str, float]:
    """The epoch's history row: loss terms averaged over the samples they saw (summed over processes),
    training accuracy, and validation accuracy and loss; logged."""
    if done.predictions:
        correct = (torch.cat(done.predictions) == torch.cat(done.labels)).sum().float()
    else:
        correct = torch.zeros((), device=loop.device)
    if loop.world > 1:  # loss terms and counts summed over every process's share of the data
        for value in [*done.totals.sums.values(), correct, done.labelled_seen]:
            dist.all_reduce(value)
    with loop.autocast:
        val_logits = loop.val_source.predict(loop.model).logits
    masked = loop.mask is not None or loop.budget is not None
    seen = _samples_seen(len(loop.train_source), done.groups, done.label_counts, loop.world, masked)
    row = done.totals.row(epoch, seen[False], seen[True], loop.label, loop.seed, history)
    val_accuracy = accuracy(val_logits, loop.val_source.y)
    row.update(
        train_accuracy=correct.item() / max(1.0, done.labelled_seen.item()),  # on the batches as trained (augmented)
        val_accuracy=val_accuracy,
        val_loss=F.cross_entropy(val_logits.float(), loop.val_source.y).item(),
        lr=done.lr,
    )
    if log.isEnabledFor(logging.INFO):
        losses = " ".join(f"{k[5:]}={v:.4f}" for k, v in row.items() if k.startswith("loss_"))
        log.info("%s epoch %d/%d %s val_acc=%.4f", loop.label, epoch, loop.config.epochs, losses, val_accuracy)
    return row


def _transfer_mask(labelled: Tensor | None, size: int) -> Tensor | None:
    """The labelled-sample mask on the CPU, or None when every sample is labelled (the plain loop)."""
    if labelled is None:
        return None
    mask = torch.as_tensor(labelled, dtype=torch.bool).cpu()
    if mask.shape != (size,):
        raise ValueError(f"labelled: expected one flag per training sample ({size}), got shape {tuple(mask.shape)}")
    if not mask.any():
        raise ValueError("labelled: no training sample is labelled")
    return None if mask.all() else mask


def _epoch_groups(
    size: int, config: TrainConfig, generator: torch.Generator, mask: Tensor | None, steps: int | None = None
) -> list[Tensor]:
    """One epoch's batches as index groups, drawn from ``generator``.

    Without a budget (``steps`` None): without a transfer set, or with ``labelled_per_batch`` 0, a
    shuffled pass over every sample; with ``labelled_per_batch`` k, the unlabelled samples, shuffled, in
    chunks of batch_size - k, each joined by the next k labelled samples of a shuffled stream that
    restarts when exhausted. With a budget: exactly ``steps`` full batches, each part (all samples, or
    the k labelled and batch_size - k unlabelled) drawn from its own stream of reshuffled passes, so a
    set smaller than the budget is cycled over (a batch may then hold a sample more than once).
    """
    per_batch = config.labelled_per_batch if mask is not None else 0
    if steps is not None:
        return _budgeted_groups(size, config.batch_size, per_batch, generator, mask, steps)
    if per_batch == 0:
        return list(torch.randperm(size, generator=generator).split(config.batch_size))
    labelled, unlabelled = mask.nonzero().flatten(), (~mask).nonzero().flatten()
    chunks = unlabelled[torch.randperm(len(unlabelled), generator=generator)].split(config.batch_size - per_batch)
    stream = _cycled(labelled, per_batch * len(chunks), generator)
    return [torch.cat([stream[i * per_batch : (i + 1) * per_batch], chunk]) for i, chunk in enumerate(chunks)]


def _budgeted_groups(
    size: int, batch_size: int, per_batch: int, generator: torch.Generator, mask: Tensor | None, steps: int
) -> list[Tensor]:
    """``steps`` batches of ``batch_size`` samples, ``per_batch`` of them labelled (0: as they come)."""
    if per_batch == 0:
        return list(_cycled(torch.arange(size), steps * batch_size, generator).split(batch_size))
    labelled, unlabelled = mask.nonzero().flatten(), (~mask).nonzero().flatten()
    unlabelled_parts = _cycled(unlabelled, steps * (batch_size - per_batch), generator).split(batch_size - per_batch)
    labelled_parts = _cycled(labelled, steps * per_batch, generator).split(per_batch)
    return [torch.cat([known, unknown]) for known, unknown in zip(labelled_parts, unlabelled_parts)]


def _cycled(indices: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """The first ``count`` entries of reshuffled passes over ``indices``, one pass after another."""
    passes = -(-count // len(indices)) if count else 0
    if passes == 0:
        return indices[:0]
    return torch.cat([indices[torch.randperm(len(indices), generator=generator)] for _ in range(passes)])[:count]


def _samples_seen(size: int, groups: list[Tensor], label_counts: list[int], world: int, masked: bool) -> dict[bool, int]:
    """Per-epoch denominators of the logged terms: {is a label term: samples it was averaged over}."""
    if not masked:
        return {False: size, True: size}
    return {False: max(1, world * sum(len(g) for g in groups)), True: max(1, world * sum(label_counts))}


def _teacher_cache(
    teacher: nn.Module | None,
    source: _InMemory | _Streamed,
    layers: list[str],
    fixed_inputs: bool,
    config: TrainConfig,
    label: str,
) -> ModelOutputs | None:
    """The frozen teacher's outputs on the whole training set, when the inputs never change and they fit."""
    if teacher is None or not fixed_inputs:
        return None
    needed = _cache_bytes(teacher, source, layers)
    if needed > config.teacher_cache_gb * 2**30:
        log.info(
            "%s: teacher outputs recomputed per batch: caching them would take %.1f GiB > teacher_cache_gb %.1f",
            label, needed / 2**30, config.teacher_cache_gb,
        )
        return None
    return source.predict(teacher, layers)


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return (logits.argmax(dim=1) == labels).float().mean().item()
