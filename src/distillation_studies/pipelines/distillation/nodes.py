"""Distil one student for one arm of the study grid and one seed, through the one training loop."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from distillation_studies.learning.data import labelled_part
from distillation_studies.learning.methods import build_method, method_class
from distillation_studies.learning.models import build_model
from distillation_studies.learning.streaming import labels_of
from distillation_studies.common.records import LABEL_NOISE, RunLabels
from distillation_studies.study.grid import Arm
from distillation_studies.study.schema import MethodEntry
from distillation_studies.study.identity import ArmRun, student_model_key
from distillation_studies.learning.divergence import DivergenceError, chance_accuracy, failure_reason
from distillation_studies.learning.training import TrainConfig, TrainResult, accuracy, epoch_steps, predict, train
from distillation_studies.pipelines.teacher.nodes import check_data_shape, history_record
from distillation_studies.common.epochs import reporter

log = logging.getLogger(__name__)


def distil_student(
    teacher_model: nn.Module,
    model_input: dict,
    data_summary: dict,
    student_model: dict[str, Any],
    student_training: TrainConfig,
    method: MethodEntry,
    *,
    arm: Arm,
    seed: int,
) -> tuple[nn.Module, nn.Module, dict]:
    """Best-on-validation student, its last-epoch weights, and the history of every loss term.

    ``student_model`` is the arm's validated model spec, ``method`` its validated method entry; ``seed``
    fixes the student's initialisation, batch order and any randomness of the method; ``arm`` names the
    method setting, student architecture and data cell of this grid point. Every arm of a data cell
    trains for the same budget (:func:`cell_steps_per_epoch`), whatever part of the cell's data it uses.
    """
    spec, entry = student_model, method
    check_data_shape(spec, data_summary, student_model_key(arm.student))
    config = entry.config_for(arm.setting)
    train_data, labelled = transfer_split(model_input, entry.method, config)
    torch.manual_seed(seed)
    model = build_model(spec)
    train_size = len(labels_of(train_data))
    loss = build_method(entry.method, config, model, teacher_model, train_size, f"methods.{entry.key}")
    teacher = teacher_model if loss.needs_teacher else None  # e.g. dml, or a combine of teacher-free parts
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    chance = chance_accuracy(labels_of(model_input["val"]))
    label = ArmRun(arm.key, seed).key
    steps_per_epoch = cell_steps_per_epoch(model_input, student_training)
    try:
        result = train(
            model, loss, train_data, model_input["val"], student_training, seed, teacher=teacher, label=label,
            labelled=labelled, on_epoch=reporter(label),
            steps_per_epoch=steps_per_epoch,
        )
        failure = failure_reason(result.history, chance)
    except DivergenceError as error:  # this arm stops; the study goes on and reports it as failed
        for module in (model, loss, teacher):
            if module is not None:
                module.to("cpu")  # train() moves them back only when it finishes
        model.load_state_dict(initial)
        result, failure = _diverged_result(model, error, model_input["val"], loss), error.reason
        result.summary.update(_budget_spent(student_training, steps_per_epoch, error.epoch))
    last = build_model(spec)
    last.load_state_dict(result.last_state)
    model.load_state_dict(result.best_state)
    if failure:
        log.error("%s is flagged unusable: %s", label, failure)
    extra = {
        **run_labels(arm, entry.method, seed, model_input, labelled, train_size).summary(),
        "hyperparameters": {**entry.raw, **arm.setting},
        "model": spec,
        "chance_accuracy": chance,
        **({"failure": failure} if failure else {}),
    }
    return model, last, history_record(result, extra)


def cell_steps_per_epoch(model_input: dict, training: TrainConfig) -> int:
    """The optimiser steps every arm of a cell takes per epoch: those of one pass over the cell's largest
    training set (its whole ``train`` split, the transfer set when it has one) in batches of ``batch_size``.
    ``ce`` on a cell's labelled part alone thus cycles over it for as many steps as ``kd`` takes."""
    return -(-len(labels_of(model_input["train"])) // training.batch_size)


def _budget_spent(training: TrainConfig, steps_per_epoch: int, epochs_run: int) -> dict[str, int]:
    """The optimiser steps and samples of the epochs a diverged run made, the failing one included."""
    steps = sum((epoch_steps(training, steps_per_epoch) or [])[:epochs_run])
    return {"optimizer_steps": steps, "samples_seen": steps * training.batch_size}


def _diverged_result(model: nn.Module, error: DivergenceError, val: Any, method: nn.Module) -> TrainResult:
    """What a diverged run keeps: its untrained weights (scored honestly on validation) and the epochs
    completed before the non-finite loss."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    val_accuracy = accuracy(predict(model, val).logits, labels_of(val))
    return TrainResult(
        best_state=state,
        last_state=state,
        history=list(error.history),
        best_epoch=0,
        wall_time_s=0.0,
        method_parameters=sum(p.numel() for p in method.parameters()),
        summary={"best_val_accuracy": val_accuracy, "diverged_epoch": error.epoch},
    )


def transfer_split(model_input: dict, method: str, config: Any) -> tuple[Any, Any]:
    """(training data, labelled mask or None) of a cell: a transfer-set cell gives the whole training
    split and its mask, except to a method with nothing to learn from unlabelled samples (``ce``),
    which trains on the labelled samples alone: the equal-labels baseline."""
    labelled = model_input.get("labelled")
    if labelled is None:
        return model_input["train"], None
    if method_class(method, "method").unlabelled_use(config)[0] == "skip":
        return labelled_part(model_input["train"], labelled), None
    return model_input["train"], labelled


def run_labels(arm: Arm, registered_method: str, seed: int, model_input: dict, labelled: Any, train_size: int) -> RunLabels:
    """A run's labels, for histories, metrics and MLflow: its arm and seed, and what its data really held
    (training samples, labelled ones, training labels the noise model changed)."""
    noise = model_input.get(LABEL_NOISE) or {}  # what the noise node changed
    return RunLabels(
        arm=arm.key, method=arm.method_key, registered_method=registered_method, setting=dict(arm.setting),
        student=arm.student, cell=arm.cell, seed=seed, train_size=train_size,
        labelled_size=int(labelled.sum()) if labelled is not None else train_size,
        labels_changed=float((noise.get("changed") or {}).get("train", 0.0)),
    )
