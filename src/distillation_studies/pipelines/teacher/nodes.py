"""Train the teacher with the same loop as every student (the ``ce`` method)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import torch
from torch import nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.models import build_model
from distillation_studies.learning.streaming import labels_of
from distillation_studies.study.schema import ModelSection
from distillation_studies.learning.checkpoints import load_weights
from distillation_studies.learning.imported import attach_input_pipeline, describe_inputs
from distillation_studies.learning.divergence import chance_accuracy, failure_reason
from distillation_studies.learning.training import TrainConfig, TrainResult, accuracy, predict, train
from distillation_studies.provenance import config_hash, git_commit, package_versions
from distillation_studies.common.epochs import reporter

log = logging.getLogger(__name__)


def history_record(result: TrainResult, extra: dict[str, Any]) -> dict[str, Any]:
    """What a history dataset stores: per-epoch rows plus a summary of the run."""
    return {
        "epochs": result.history,
        "summary": {
            "best_epoch": result.best_epoch,
            "wall_time_s": result.wall_time_s,
            "method_parameters": result.method_parameters,
            **result.summary,
            **extra,
        },
    }


def check_data_shape(spec: dict[str, Any], data_summary: dict, where: str) -> None:
    """The loaded data must have the shape the model spec was validated for (``data.shape()``, read
    before any image is loaded), or the checked feature layers are not the ones that train."""
    found = [int(d) for d in data_summary["input_shape"]], int(data_summary["num_classes"])
    if found != (spec["in_shape"], spec["num_classes"]):
        raise ConfigError(
            f"{where}: validated for inputs {spec['in_shape']} and {spec['num_classes']} classes, "
            f"but the loaded data has inputs {found[0]} and {found[1]} classes"
        )


def train_teacher(model_input: dict, data_summary: dict, teacher: ModelSection) -> tuple[nn.Module, nn.Module, dict]:
    """Best-on-validation teacher, its last-epoch weights, and its training history.

    With ``teacher.checkpoint`` the weights are imported from that file instead of trained.
    """
    study_shape = tuple(int(d) for d in data_summary["input_shape"])
    inputs = teacher.checkpoint_inputs
    spec = teacher.spec if inputs is None else {**teacher.spec, "in_shape": list(study_shape)}
    check_data_shape(spec, data_summary, "teacher.model")  # an imported teacher's own shape follows from the study's
    torch.manual_seed(teacher.seed)
    model = build_model(teacher.spec)
    if teacher.checkpoint:
        load_weights(model, teacher.checkpoint)
        if inputs is not None:
            attach_input_pipeline(model, inputs.pipeline(study_shape, data_summary["normalisation"]))
        return _imported_teacher(model, teacher, model_input["val"])
    from distillation_studies.progress import epoch_lines  # progress imports the hooks, which import these nodes

    method = build_method("ce", parse_method_config("ce", {}, "teacher"), model, None, len(labels_of(model_input["train"])))
    result = train(
        model, method, model_input["train"], model_input["val"], teacher.training, teacher.seed, label="teacher",
        on_epoch=_both(reporter("teacher"), epoch_lines("teacher", teacher.training.epochs)),
    )
    check_teacher(failure_reason(result.history, chance_accuracy(labels_of(model_input["val"]))), "teacher.training")
    last = build_model(teacher.spec)
    last.load_state_dict(result.last_state)
    model.load_state_dict(result.best_state)
    return model, last, history_record(result, {"seed": teacher.seed, "model": teacher.spec})


def _both(*callbacks):
    """One ``on_epoch`` callback calling each of ``callbacks`` in turn."""

    def call_each(row: dict[str, float]) -> None:
        for callback in callbacks:
            callback(row)

    return call_each


def check_teacher(failure: str | None, key: str) -> None:
    """A teacher that exploded or never beat chance stops the study before any student trains: every
    student would learn from it, and the study would compare methods of distilling noise. (A non-finite
    loss already stops it, with the training loop's DivergenceError naming the teacher.)"""
    if failure:
        raise ConfigError(
            f"{key}: the teacher is unusable ({failure}); the study stops before any student trains. "
            "Fix the teacher's settings (teacher.training, teacher.model) or its checkpoint and rerun."
        )


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of a model's weights (names and values): the same teacher, whatever file it came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def protocol_card(data_summary: dict, teacher_model: nn.Module, parameters: dict[str, Any]) -> dict[str, Any]:
    """What a reader needs to reproduce or judge the study, recorded with every run."""
    return {
        "dataset": data_summary["dataset"],
        "split_sizes": data_summary["sizes"],
        "split_seed": parameters["data"].get("split_seed", 0),
        "teacher": {"model": parameters["teacher"].get("model"), "training": parameters["teacher"].get("training")},
        "student": {"model": parameters["student"].get("model"), "training": parameters["student"].get("training")},
        "grid": parameters.get("grid") or {},
        "methods": parameters["methods"],
        "seeds": parameters["seeds"],
        "augmentation": {
            role: (parameters[role].get("training") or {}).get("augment", "none") for role in ("teacher", "student")
        },
        "teacher_outputs": "cached once per run when the student has no augmentation and they fit in "
        "teacher_cache_gb, else recomputed per batch",
        "training_budget": budget_rule(parameters["student"].get("training") or {}),
        "selection_rule": "best epoch on validation accuracy; swept settings picked on mean validation accuracy; "
        "test evaluated once for the picked setting",
        "teacher_checkpoint_sha256": weights_digest(teacher_model),
        "config_hash": config_hash(parameters),
        "git_commit": git_commit(),
        "package_versions": package_versions(),
        "torch_threads": torch.get_num_threads(),
    }


def budget_rule(training: dict[str, Any]) -> str:
    """The students' training budget in words: the same optimiser steps for every arm of a data cell."""
    defaults = TrainConfig()
    epochs, batch = training.get("epochs", defaults.epochs), training.get("batch_size", defaults.batch_size)
    steps = training.get("steps")
    budget = (
        f"{steps} optimiser steps, split over {epochs} epochs"
        if steps is not None
        else f"{epochs} epochs of ceil(N / {batch}) optimiser steps, N being the size of the cell's largest "
        "training set (its labelled samples, plus its transfer set when it has one)"
    )
    return (
        f"every student arm of a data cell takes the same budget: {budget}, each step a full batch of {batch}; "
        "an arm on less data (ce on the labelled part of a transfer cell) cycles over it in reshuffled passes. "
        "Logged per run as cost/optimizer_steps and cost/samples_seen"
    )


def _imported_teacher(model: nn.Module, teacher: ModelSection, val: dict) -> tuple[nn.Module, nn.Module, dict]:
    """The imported teacher's accuracy on the validation split, printed and logged at once (epoch 0 of
    its run): a teacher fed other inputs than it was trained on scores far below what its author saw."""
    val_accuracy = accuracy(predict(model, val).logits, labels_of(val))
    pipeline = model.spec.get("input_pipeline")
    fed = describe_inputs(pipeline) if pipeline else "the study's own inputs (teacher.checkpoint.inputs not set)"
    log.info("Imported teacher %s: validation accuracy %.4f; it is fed %s", teacher.checkpoint, val_accuracy, fed)
    reporter("teacher")({"epoch": 0, "val_accuracy": val_accuracy})
    chance = chance_accuracy(labels_of(val))
    if val_accuracy <= chance:
        check_teacher(f"never beat chance: validation accuracy {val_accuracy:.4f} <= {chance:.4f}, the majority-class share", "teacher.checkpoint")
    summary = {"best_epoch": 0, "wall_time_s": 0.0, "method_parameters": 0, "best_val_accuracy": val_accuracy}
    summary |= {"optimizer_steps": 0, "samples_seen": 0}  # trained elsewhere: no budget spent here
    summary |= {"min_val_accuracy": teacher.min_val_accuracy}
    if val_accuracy < teacher.min_val_accuracy:
        summary["below_floor"] = (
            f"imported teacher's validation accuracy {val_accuracy:.4f} is below teacher.checkpoint.min_val_accuracy "
            f"{teacher.min_val_accuracy:g}: check teacher.checkpoint.inputs (it is fed {fed})"
        )
        log.warning(summary["below_floor"])
    record = {**summary, "seed": teacher.seed, "model": model.spec, "imported_from": teacher.checkpoint}
    return model, model, {"epochs": [], "summary": record}
