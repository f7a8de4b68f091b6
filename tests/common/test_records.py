"""The data cell and run-label records: the keys every table, history and MLflow run is made from."""

from __future__ import annotations

import math

import pytest

from distillation_studies.common.records import DataCell, RunLabels, varying_factors


def test_a_cell_reads_rows_of_older_runs_with_defaults_and_normalises_values():
    assert DataCell.from_row({"label_fraction": 0.5}) == DataCell(0.5, False, 0.0)
    assert DataCell.from_row({"label_fraction": 0.5, "transfer_set": math.nan, "label_noise": None}) == DataCell(0.5)
    assert DataCell.from_row({}) == DataCell() and DataCell().is_published_protocol
    # A transfer set is the unlabelled rest: with every label there is none.
    assert DataCell(1.0, True) == DataCell() and DataCell(1, 1, 0).as_dict() == {
        "label_fraction": 1.0, "transfer_set": False, "label_noise": 0.0}
    assert not DataCell(label_noise=0.4).is_published_protocol and not DataCell(0.5, True).is_published_protocol


def test_a_cell_names_itself_in_tokens_datasets_and_words():
    cell = DataCell(0.05, True, 0.2)
    assert cell.tokens() == ["labels_5", "transfer", "noise_20"]
    assert DataCell().tokens() == [] and DataCell().tokens({"label_noise"}) == ["noise_0"]
    assert DataCell(0.1).tokens(non_default=False) == [] and DataCell(0.1, True).tokens({"transfer_set"}, non_default=False) == [
        "labels_10", "transfer"]
    assert cell.dataset == "model_input_noise_20_labels_5_transfer"
    assert cell.source == DataCell(label_noise=0.2) and cell.source.source == DataCell() and DataCell().source is None
    assert cell.description() == "5% labels + transfer set, 20% label noise"
    assert DataCell(0.1).description() == "10% labels, no transfer set" and DataCell().description() == "all labels"


def test_cells_sort_best_data_first_and_say_which_factors_vary():
    cells = [DataCell(0.1, True), DataCell(label_noise=0.2), DataCell(0.1), DataCell()]
    assert sorted(cells, key=DataCell.sort_key) == [DataCell(), DataCell(0.1), DataCell(0.1, True), DataCell(label_noise=0.2)]
    assert varying_factors(cells) == {"label_fraction", "transfer_set", "label_noise"}
    assert varying_factors([DataCell(0.1), DataCell(0.1)]) == set()


def test_grid_cells_are_the_product_without_full_label_transfer_sets():
    cells = DataCell.grid_cells({"label_fractions": [0.1, 1.0], "transfer_set": [False, True], "label_noise": [0.0, 0.3]})
    assert cells == (DataCell(0.1), DataCell(0.1, False, 0.3), DataCell(0.1, True), DataCell(0.1, True, 0.3),
                     DataCell(), DataCell(label_noise=0.3))


LABELS = RunLabels("kd__labels_10__transfer", "kd", "kd", {"temperature": 4.0}, "wide", DataCell(0.1, True), 2, 400, 40, 0.0)
# The history-summary keys and MLflow params users rely on (before the records, listed by hand in five files).
SUMMARY_KEYS = ["arm", "method", "registered_method", "setting", "student", "label_fraction", "transfer_set", "label_noise",
                "train_size", "labelled_size", "labels_changed", "seed"]


def test_run_labels_make_the_summary_params_and_row_with_the_same_keys():
    assert list(LABELS.summary()) == SUMMARY_KEYS and LABELS.params() == LABELS.summary()
    assert LABELS.summary()["setting"] == {"temperature": 4.0} and LABELS.summary()["transfer_set"] is True
    row = LABELS.row()
    assert row["setting"] == "temperature=4.0" and row["hp_temperature"] == 4.0
    assert RunLabels("ce", "ce", "ce", {}).row()["setting"] == "default"
    assert RunLabels.from_summary({**LABELS.summary(), "hyperparameters": {}, "best_epoch": 3}) == LABELS


def test_run_labels_of_an_old_history_take_their_defaults():
    old = RunLabels.from_summary({"arm": "kd", "method": "kd", "setting": {}, "label_fraction": 1.0, "train_size": 90, "seed": 1})
    assert old == RunLabels("kd", "kd", "kd", {}, "student", DataCell(), 1, 90, 90, 0.0)


def test_arm_columns_are_the_comparison_table_labels():
    assert RunLabels.arm_columns() == ["arm", "method", "registered_method", "setting", "student", "label_fraction",
                                       "transfer_set", "label_noise", "labels_changed", "train_size"]


@pytest.mark.parametrize("bad", [{"label_fractions": [0.0]}, {"transfer_set": "yes"}, {"label_noise": [1.0]}])
def test_bad_grid_values_name_their_key(bad):
    from distillation_studies.common.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"grid\.{next(iter(bad))}:"):
        DataCell.grid_cells(bad)
