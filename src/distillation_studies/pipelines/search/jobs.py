"""Train the search's jobs through the study arms' own code (``distil_student``), one nested MLflow run
each, sequentially or on the Dask cluster whose worker runs the node."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Protocol, TypeVar

import torch
from torch import nn

from distillation_studies.analysis.search_driver import Job, Outcome, TrialSpec
from distillation_studies.common.errors import Superseded
from distillation_studies.study.grid import Arm
from distillation_studies.learning.methods import parse_method_config
from distillation_studies.learning.training import TrainConfig
from distillation_studies.pipelines.distillation.nodes import distil_student
from distillation_studies.pipelines.evaluation.nodes import evaluate_student
from distillation_studies.study.identity import ArmRun
from distillation_studies.study.schema import EvaluationConfig, MethodEntry

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class JobTracking(Protocol):
    """How a search node tracks its jobs (``tracking.runs.SearchTracking``, injected as ``search_tracking``
    when tracking is on): each context yields the job's live run, closed when the block ends."""

    def job(self, name: str, label: str, params: dict[str, Any], tags: dict[str, str]) -> ContextManager[Any]: ...

    def arm(self, key: str, seed: int | None, params: dict[str, Any]) -> ContextManager[Any]: ...

    def tag_jobs(self, statuses: dict[str, str]) -> None: ...


@dataclass(frozen=True)
class Shared:
    """What every job of a node trains from: sent to each Dask worker once."""

    teacher_model: nn.Module
    model_input: dict
    data_summary: dict
    student_model: dict[str, Any]
    student_training: TrainConfig
    methods: dict[str, MethodEntry]
    tracking: JobTracking | None = None  # None: tracking is off


def trial_arm(trial: TrialSpec, arm_key: str) -> Arm:
    """The arm a trial trains as: the default student on all clean labels (a search study has one data cell)."""
    return Arm(arm_key, trial.method_key, dict(trial.setting))


def trial_entry(entry: MethodEntry, setting: dict[str, Any]) -> MethodEntry:
    """``entry`` with ``setting`` as its one setting, checked as the method's own config."""
    config = parse_method_config(entry.method, {**entry.raw, **setting}, f"methods.{entry.key}")
    return dataclasses.replace(entry, settings=(dict(setting),), configs=(config,))


def train(shared: Shared, trial: TrialSpec, epochs: int, seed: int, arm_key: str) -> tuple[nn.Module, nn.Module, dict]:
    """(best model, last model, history) of one trial trained from scratch for ``epochs`` on ``seed``."""
    training = dataclasses.replace(shared.student_training, epochs=epochs)
    entry = trial_entry(shared.methods[trial.method_key], trial.setting)
    arm = trial_arm(trial, arm_key)
    return distil_student(
        shared.teacher_model, shared.model_input, shared.data_summary, shared.student_model, training, entry, arm=arm, seed=seed
    )


def job_params(job: Job) -> dict[str, Any]:
    """A job run's MLflow params: method, setting (``hp_*``), rung epochs, seed and stage."""
    return {
        "method": job.trial.method_key,
        "trial": job.trial.trial_id,
        **{f"hp_{k}": v for k, v in job.trial.setting.items()},
        "epochs": job.epochs,
        "seed": job.seed,
        "stage": job.stage,
    }


def run_search_job(job: Job, shared: Shared) -> Outcome:
    """Train one search job; its outcome is the best validation accuracy over its epochs and its cost."""
    arm_key = job.key.replace(f"__s{job.seed}", "")
    label = ArmRun(arm_key, job.seed).key
    started = time.perf_counter()
    tags = {"stage": job.stage, "status": "completed"}
    with shared.tracking.job(job.key, label, job_params(job), tags) if shared.tracking else nullcontext() as run:
        _, _, history = train(shared, job.trial, job.epochs, job.seed, arm_key)
        stop_if_orphaned(job.key)
        outcome = job_outcome(job, history, shared.student_training.batch_size, time.perf_counter() - started)
        if run is not None:
            run.log_values(job_metrics(outcome))
            if outcome.failed:
                run.set_tags({"failure": str(history["summary"]["failure"])})
    return outcome


def job_metrics(outcome: Outcome) -> dict[str, float]:
    """What every job run logs besides its epochs (``val/accuracy`` per epoch): the selection metric (the
    best epoch's) and the compute it cost."""
    return {
        "val/best_accuracy": outcome.val_accuracy,
        "cost/optimizer_steps": outcome.optimizer_steps,
        "cost/train_seconds": outcome.train_seconds,
    }


def job_outcome(job: Job, history: dict[str, Any], batch_size: int, seconds: float) -> Outcome:
    """The driver's view of a trained job. Optimiser steps: the training loop's count when it records one,
    else one per batch of every epoch run (the loop keeps the last, smaller batch)."""
    summary = history["summary"]
    steps = summary.get("optimizer_steps")
    if steps is None:
        steps = len(history["epochs"]) * math.ceil(summary["train_size"] / batch_size)
    return Outcome(
        job=job,
        val_accuracy=float(summary["best_val_accuracy"]),
        optimizer_steps=int(steps),
        train_seconds=float(summary.get("wall_time_s") or seconds),
        failed=bool(summary.get("failure")),
    )


def run_confirmation(job: Job, shared: Shared, evaluation: EvaluationConfig) -> tuple[dict, dict]:
    """(test metrics, history) of one finalist or baseline trained at full length on a fresh seed, as a
    study arm's run named by its method (``role=arm``, ``<method>/seed_<n>``): the comparison, the
    recommendation and the registry read it like any arm's."""
    arm_key = job.trial.method_key
    key = ArmRun(arm_key, job.seed).key
    with shared.tracking.arm(key, job.seed, job_params(job)) if shared.tracking else nullcontext() as run:
        model, last, history = train(shared, job.trial, job.epochs, job.seed, arm_key)
        stop_if_orphaned(key)
        history["summary"]["search_trial"] = job.trial.trial_id
        metrics = evaluate_student(model, last, shared.teacher_model, shared.model_input, history, evaluation)
        if run is not None:
            run.log_params({k: history["summary"][k] for k in ("registered_method", "setting", "hyperparameters") if k in history["summary"]})
            run.log_history(history)
            run.log_metrics(metrics)
            run.set_tags({"stage": job.stage})
    return metrics, history


def run_all(function: Callable[..., R], items: list[T], *shared: Any, on_result: Callable[[T, R], None] = lambda i, r: None) -> list[R]:
    """``function(item, *shared)`` for every item, in order of ``items``: on the Dask cluster when this
    runs inside one of its workers (the project's DaskRunner), else one after the other. ``on_result`` is
    called as soon as each result is in (the search saves each outcome then, for a resume)."""
    if not _in_dask_worker() or len(items) < 2:
        results = []
        for item in items:
            results.append(function(item, *shared))
            on_result(item, results[-1])
        return results
    return _on_cluster(function, items, shared, on_result)


def stop_if_orphaned(name: str) -> None:
    """Raise ``Superseded`` when this job's Dask task was cancelled while it trained: the search node that
    submitted it died with its worker, Dask reruns the node, and the rerun trains the job again (a thread
    cannot be stopped, so the orphan runs to its end). Its run then closes KILLED instead of a second
    FINISHED run of the same job. Outside a Dask task there is nothing to check."""
    if not _in_dask_worker():
        return
    from distributed import get_worker

    worker = get_worker()
    key = worker.active_threads.get(threading.get_ident())
    if key is None:
        return
    task = worker.state.tasks.get(key)
    if task is None or task.state == "cancelled":
        raise Superseded(f"{name}: Dask cancelled it while it trained (the search node that submitted it left with its worker); the node's rerun trains it again")


def _in_dask_worker() -> bool:
    try:
        from distributed import get_worker
    except ImportError:
        return False
    try:
        get_worker()
    except ValueError:
        return False
    return True


def _on_cluster(function: Callable, items: list, shared: tuple, on_result: Callable) -> list:
    """Each item a Dask task; this thread leaves the worker's pool meanwhile (``worker_client`` secedes),
    so the jobs use every worker, this one included. A job whose worker dies is rescheduled by Dask
    (the cluster's ``allowed_failures``). Each job uses the torch threads the runner gave this task."""
    from distributed import as_completed, worker_client

    threads = torch.get_num_threads()
    with worker_client() as client:
        scattered = [client.scatter(value, broadcast=True, hash=False) for value in shared]  # a fresh key per batch
        futures = {
            client.submit(_with_threads, threads, function, item, *scattered, pure=False): index for index, item in enumerate(items)
        }
        results: list[Any] = [None] * len(items)
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            on_result(items[index], results[index])
    return results



def _with_threads(threads: int, function: Callable[..., R], item: Any, *shared: Any) -> R:
    """``function(item, *shared)`` with ``threads`` torch threads (``runner.dask.torch_threads``)."""
    torch.set_num_threads(threads)
    return function(item, *shared)
