"""Every arm of a data cell trains for the same budget: ``ce`` on the labelled 10% cycles over it for as
many optimiser steps as ``kd`` takes over the whole transfer set."""

from __future__ import annotations

import torch

from distillation_studies.common.records import DataCell
from distillation_studies.study.grid import Arm
from distillation_studies.learning.data import SplitConfig, load_embedded, stratified_split
from distillation_studies.learning.models import build_model, make_spec
from distillation_studies.learning.training import TrainConfig
from distillation_studies.pipelines.data_processing.nodes import transfer_input
from distillation_studies.pipelines.distillation.nodes import cell_steps_per_epoch, distil_student
from distillation_studies.study.schema import DataConfig, parse_method_entry

SHAPE = [1, 8, 8]
SUMMARY = {"input_shape": SHAPE, "num_classes": 10}
TRAINING = TrainConfig(epochs=2, batch_size=32, lr=3e-3)


def _cell() -> dict:
    """A 10%-labels transfer cell of 300 digits: 180 training samples, 18 of them labelled."""
    full = load_embedded("digits")
    splits = stratified_split({"x": full["x"][:300], "y": full["y"][:300]}, SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=0))
    return transfer_input(splits, DataConfig(dataset="digits"), fraction=0.1)


def _distil(cell: dict, key: str, raw: dict, training: TrainConfig = TRAINING) -> dict:
    torch.manual_seed(0)
    teacher = build_model(make_spec({"name": "mlp", "hidden": [32]}, tuple(SHAPE), 10))
    student = make_spec({"name": "mlp", "hidden": [16]}, tuple(SHAPE), 10)
    arm = Arm(f"{key}__labels_10__transfer", key, {}, "default", DataCell(0.1, True))
    _, _, history = distil_student(teacher, cell, SUMMARY, student, training, parse_method_entry(key, raw), arm=arm, seed=0)
    return history["summary"]


def test_ce_and_kd_of_a_ten_percent_cell_take_the_same_optimiser_steps():
    cell = _cell()
    assert len(cell["train"]["y"]) == 180 and int(cell["labelled"].sum()) == 18
    ce, kd = _distil(cell, "ce", {}), _distil(cell, "kd", {"temperature": 4.0, "alpha": 0.9})
    assert ce["train_size"] == 18 and kd["train_size"] == 180  # ce on the labelled part alone, kd on all
    # ceil(180 / 32) = 6 steps per epoch, two epochs, full batches of 32, for both arms.
    assert cell_steps_per_epoch(cell, TRAINING) == 6
    assert ce["optimizer_steps"] == kd["optimizer_steps"] == 12
    assert ce["samples_seen"] == kd["samples_seen"] == 12 * 32


def test_a_step_budget_in_the_config_holds_for_every_arm():
    cell, training = _cell(), TrainConfig(epochs=2, batch_size=32, lr=3e-3, steps=9)
    ce, kd = _distil(cell, "ce", {}, training), _distil(cell, "kd", {}, training)
    assert ce["optimizer_steps"] == kd["optimizer_steps"] == 9


def test_the_protocol_states_the_budget_rule():
    from distillation_studies.pipelines.teacher.nodes import budget_rule

    by_epochs = budget_rule({"epochs": 60, "batch_size": 64})
    assert by_epochs.startswith(
        "every student arm of a data cell takes the same budget: 60 epochs of ceil(N / 64) optimiser steps, "
        "N being the size of the cell's largest training set (its labelled samples, plus its transfer set when it has one)"
    )
    assert "ce on the labelled part of a transfer cell) cycles over it" in by_epochs and "cost/optimizer_steps" in by_epochs
    assert "1200 optimiser steps, split over 6 epochs, each step a full batch of 32;" in budget_rule({"epochs": 6, "steps": 1200, "batch_size": 32})


def test_a_diverged_run_counts_the_budget_of_the_epochs_it_made():
    from distillation_studies.pipelines.distillation.nodes import _budget_spent

    # Diverged in epoch 2 of 3 at 6 steps per epoch: 12 steps of 32 samples made.
    assert _budget_spent(TrainConfig(epochs=3, batch_size=32), 6, 2) == {"optimizer_steps": 12, "samples_seen": 384}
    assert _budget_spent(TrainConfig(epochs=4, batch_size=8, steps=10), 6, 3) == {"optimizer_steps": 7, "samples_seen": 56}
