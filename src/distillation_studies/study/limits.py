"""Size limits checked before any work: values that cannot fit in memory or time are refused here.

A careless ``batch_size: 1e9`` or ``hidden: [1e9]`` used to pass validation and fail minutes later in
the allocator (or, with ``epochs: 1e9``, never finish). Every limit below is documented in
``docs/reliability.md``; memory is estimated from the real architecture (built on PyTorch's ``meta``
device, which allocates nothing) and the data's size, in fp32 bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.models import model_footprint
from distillation_studies.learning.training import TrainConfig

# One accelerator (or the host) must hold one training step; 64 GiB leaves headroom on an 80 GiB GPU.
MAX_STEP_MEMORY_GB = 64.0
MAX_PARAMETERS = 2_000_000_000  # 8 GB of fp32 weights, before gradients and optimiser state
MAX_EPOCHS = 100_000
MAX_SAMPLE_PASSES = 10**10  # epochs x training samples of one run: ImageNet for ~8,000 epochs
MAX_SEEDS = 1_000
MAX_RUNS = 1_000  # arms x seeds: building the namespaced pipelines grows ~quadratically (docs/reliability.md)
MAX_SEED_VALUE = 2**32 - 1  # every RNG the project seeds accepts this range
MAX_WORKERS = 256
MAX_IMAGE_SIZE = 4096  # image_folder: pixels a side after resizing
MAX_LATENCY_REPEATS = 100_000
MAX_ECE_BINS = 10_000
BYTES = 4  # fp32
# Weights, gradients and Adam's two moments: four copies of every trainable parameter.
TRAINING_COPIES = 4


def _gib(count: float) -> str:
    return f"{count / 2**30:.3g} GiB"


def check_seed_value(seed: Any, where: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED_VALUE:
        raise ConfigError(f"{where}: must be an integer in [0, {MAX_SEED_VALUE}], got {seed!r}")
    return seed


def check_seed_count(seeds: tuple[int, ...], arms: int) -> None:
    """Refused before any pipeline is built: 10,000 seeds would spend minutes building pipelines."""
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"seeds: {len(seeds)} seeds; at most {MAX_SEEDS} are allowed (docs/reliability.md)")
    if len(seeds) * arms > MAX_RUNS:
        raise ConfigError(
            f"seeds: {len(seeds)} seeds x {arms} arm(s) = {len(seeds) * arms} runs; at most {MAX_RUNS} runs "
            "per study are allowed (docs/reliability.md): split the study or use fewer seeds"
        )


def check_model_size(spec: dict[str, Any], where: str) -> tuple[int, int]:
    """(parameters, activations per sample) of ``spec``; too many parameters is a ConfigError."""
    parameters, activations = model_footprint(spec)
    if parameters > MAX_PARAMETERS:
        raise ConfigError(
            f"{where}: this architecture has {parameters:,} parameters ({_gib(parameters * BYTES)} of fp32 weights); "
            f"at most {MAX_PARAMETERS:,} are allowed (docs/reliability.md)"
        )
    return parameters, activations


def available_memory() -> int:
    """Bytes this host (or its container's cgroup v2 memory limit, when lower) can still allocate."""
    available = psutil.virtual_memory().available
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):  # no cgroup v2 memory controller: the host's figure stands
        pass
    return available


def check_host_memory(parameters: int, where: str, teacher_parameters: int = 0) -> None:
    """Validation builds the teacher and each student for real, on the CPU: a model within the documented
    limits but beyond this host's free memory used to fail there in the allocator
    (``DefaultCPUAllocator: can't allocate memory``), naming no key. ``teacher_parameters`` are held too."""
    needed, available = BYTES * (parameters + teacher_parameters), available_memory()
    if needed > available:
        held = f" (with the teacher's {_gib(BYTES * teacher_parameters)} held too)" if teacher_parameters else ""
        raise ConfigError(
            f"{where}: its {parameters:,} parameters need about {_gib(BYTES * parameters)} of fp32 weights{held}, "
            f"more than the {_gib(available)} of memory this host has available; use a smaller model or a "
            "host with more memory"
        )


def check_training(
    training: TrainConfig,
    where: str,
    train_size: int | None,
    footprint: tuple[int, int],
    frozen_footprint: tuple[int, int] = (0, 0),
) -> None:
    """Batch size, epochs and workers against the training split and the step's memory.

    ``footprint`` is the trained model's (parameters, activations per sample), ``frozen_footprint``
    the teacher's during distillation (weights and activations, no gradients).
    """
    if train_size is not None and training.batch_size > train_size:
        raise ConfigError(
            f"{where}.batch_size: {training.batch_size} is larger than the training split ({train_size} samples); "
            f"use at most {train_size} (one batch per epoch)"
        )
    if training.epochs > MAX_EPOCHS:
        raise ConfigError(f"{where}.epochs: {training.epochs}; at most {MAX_EPOCHS} are allowed (docs/reliability.md)")
    if train_size is not None and training.epochs * train_size > MAX_SAMPLE_PASSES:
        raise ConfigError(
            f"{where}.epochs: {training.epochs} epochs x {train_size} training samples = "
            f"{training.epochs * train_size:.3g} sample passes; at most {MAX_SAMPLE_PASSES:.0e} per run (docs/reliability.md)"
        )
    if training.workers > MAX_WORKERS:
        raise ConfigError(f"{where}.workers: {training.workers}; at most {MAX_WORKERS} are allowed")
    parameters, activations = footprint
    frozen_parameters, frozen_activations = frozen_footprint
    batch = training.batch_size if train_size is None else min(training.batch_size, train_size)
    needed = BYTES * (
        TRAINING_COPIES * parameters + frozen_parameters + batch * (activations + frozen_activations)
    )
    if needed > MAX_STEP_MEMORY_GB * 2**30:
        raise ConfigError(
            f"{where}.batch_size: one training step at batch {batch} needs about {_gib(needed)} "
            f"({parameters:,} trained parameters x {TRAINING_COPIES} copies, {activations:,} activations per sample); "
            f"at most {MAX_STEP_MEMORY_GB:g} GiB is allowed (docs/reliability.md): use a smaller batch or model"
        )


def check_evaluation(evaluation: Any, footprints: dict[str, tuple[int, int]]) -> None:
    """Evaluation repeats and batch against documented limits and every evaluated model's activations."""
    if evaluation.latency_repeats > MAX_LATENCY_REPEATS:
        raise ConfigError(f"evaluation.latency_repeats: {evaluation.latency_repeats}; at most {MAX_LATENCY_REPEATS}")
    if evaluation.ece_bins > MAX_ECE_BINS:
        raise ConfigError(f"evaluation.ece_bins: {evaluation.ece_bins}; at most {MAX_ECE_BINS}")
    if evaluation.workers > MAX_WORKERS:
        raise ConfigError(f"evaluation.workers: {evaluation.workers}; at most {MAX_WORKERS} are allowed")
    for role, (parameters, activations) in footprints.items():
        needed = BYTES * (parameters + evaluation.throughput_batch * activations)
        if needed > MAX_STEP_MEMORY_GB * 2**30:
            raise ConfigError(
                f"evaluation.throughput_batch: {evaluation.throughput_batch} images through the {role} need about "
                f"{_gib(needed)}; at most {MAX_STEP_MEMORY_GB:g} GiB is allowed (docs/reliability.md)"
            )
