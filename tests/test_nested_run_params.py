"""A nested run's params are its history's RunLabels: the data cell included, old histories filled with defaults."""

from __future__ import annotations

from distillation_studies.common.records import DataCell, RunLabels
from distillation_studies.tracking.hooks import _arm_params


def test_a_nested_run_carries_its_data_cell_and_what_really_ran():
    labels = RunLabels("kd__labels_10__transfer__noise_20", "kd", "kd", {"temperature": 4.0}, cell=DataCell(0.1, True, 0.2),
                       seed=1, train_size=400, labelled_size=40, labels_changed=0.2)
    history = {"summary": {**labels.summary(), "hyperparameters": {"temperature": 4.0}, "model": {"name": "cnn"}, "best_epoch": 2}}
    params = _arm_params("kd__labels_10__transfer__noise_20/seed_1", history)
    assert {k: params[k] for k in ("label_fraction", "transfer_set", "label_noise", "labelled_size", "labels_changed")} == {
        "label_fraction": 0.1, "transfer_set": True, "label_noise": 0.2, "labelled_size": 40, "labels_changed": 0.2}
    assert params["hyperparameters"] == {"temperature": 4.0} and params["model"] == {"name": "cnn"} and "best_epoch" not in params


def test_a_history_saved_before_the_data_factors_gets_the_clean_full_label_cell():
    params = _arm_params("kd/seed_0", {"summary": {"arm": "kd", "method": "kd", "setting": {}, "label_fraction": 1.0, "seed": 0}})
    assert (params["transfer_set"], params["label_noise"], params["registered_method"]) == (False, 0.0, "kd")
    assert _arm_params("teacher", {"summary": {"model": {"name": "cnn"}}}) == {"model": {"name": "cnn"}}
