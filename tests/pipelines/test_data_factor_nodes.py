"""Data-factor nodes: noisy splits shared by a cell, clean test labels, the equal-labels ce baseline."""

from __future__ import annotations

import torch

from distillation_studies.learning.methods import parse_method_config
from distillation_studies.pipelines.data_processing.nodes import label_subset, noisy_input, transfer_input
from distillation_studies.common.records import DataCell, RunLabels
from distillation_studies.pipelines.distillation.nodes import run_labels, transfer_split
from distillation_studies.study.grid import Arm
from distillation_studies.study.schema import DataConfig

DATA = DataConfig(dataset="digits", split_seed=3, label_noise_model="pair")
SUMMARY = {"num_classes": 10}


def _input() -> dict:
    return {
        part: {"x": torch.arange(float(n))[:, None], "y": torch.arange(n) % 10}
        for part, n in (("train", 400), ("val", 100), ("test", 100))
    }


def test_noisy_input_is_the_same_for_every_consumer_and_keeps_test_clean():
    first, again = noisy_input(_input(), SUMMARY, DATA, rate=0.25), noisy_input(_input(), SUMMARY, DATA, rate=0.25)
    assert torch.equal(first["train"]["y"], again["train"]["y"]) and torch.equal(first["val"]["y"], again["val"]["y"])
    assert torch.equal(first["test"]["y"], torch.arange(100) % 10)
    assert first["label_noise"] == {"rate": 0.25, "model": "pair", "changed": {"train": 0.25, "val": 0.25}}
    changed = first["train"]["y"] != _input()["train"]["y"]
    assert torch.equal(first["train"]["y"][changed], (_input()["train"]["y"][changed] + 1) % 10)  # pair flip


def test_label_fraction_of_noisy_labels_keeps_the_noise_record():
    noisy = noisy_input(_input(), SUMMARY, DATA, rate=0.25)
    subset = label_subset(noisy, DATA, fraction=0.1)
    assert len(subset["train"]["y"]) == 40 and subset["label_noise"]["rate"] == 0.25


def test_ce_of_a_transfer_cell_trains_on_the_labelled_samples_only():
    cell = transfer_input(_input(), DATA, fraction=0.1)
    subset = label_subset(_input(), DATA, fraction=0.1)
    ce_data, ce_mask = transfer_split(cell, "ce", parse_method_config("ce", {}, "methods.ce"))
    assert ce_mask is None and torch.equal(ce_data["x"], subset["x"] if "x" in subset else subset["train"]["x"])
    kd_data, kd_mask = transfer_split(cell, "kd", parse_method_config("kd", {}, "methods.kd"))
    assert kd_data is cell["train"] and int(kd_mask.sum()) == 40
    labels = run_labels(Arm("kd__labels_10__transfer", "kd", cell=DataCell(0.1, True)), "kd", 3, cell, kd_mask, 400)
    assert labels == RunLabels("kd__labels_10__transfer", "kd", "kd", {}, "student", DataCell(0.1, True), 3, 400, 40, 0.0)
    assert {k: labels.summary()[k] for k in ("transfer_set", "label_noise", "labels_changed", "labelled_size")} == {
        "transfer_set": True, "label_noise": 0.0, "labels_changed": 0.0, "labelled_size": 40}
