"""Transfer sets and label noise in the study config: arms, dataset names and errors naming the key."""

from __future__ import annotations

import pytest

from distillation_studies.common.errors import ConfigError
from distillation_studies.common.records import DataCell, check_label_noise, check_transfer_sets
from distillation_studies.study.grid import expand_arms
from distillation_studies.study.schema import teacher_label_noise, validate_study
from tests.study.test_schema import base_config


def _study(grid: dict, methods: dict | None = None, data: dict | None = None):
    config = base_config()
    config["grid"] = grid
    if methods is not None:
        config["methods"] = methods
        config["comparison"] = {"baselines": [next(iter(methods))]}
    config["data"].update(data or {})
    return validate_study(config)


def test_transfer_set_arms_exist_only_below_full_labels():
    cells = DataCell.grid_cells({"label_fractions": [0.1, 1.0], "transfer_set": [False, True]})
    arms = expand_arms({"kd": [{}]}, ["student"], cells)
    assert [(a.key, a.cell.label_fraction, a.cell.transfer_set) for a in arms] == [
        ("kd__labels_10", 0.1, False),
        ("kd__labels_10__transfer", 0.1, True),
        ("kd__labels_100", 1.0, False),
    ]


def test_noise_rates_make_their_own_arms_and_keys():
    arms = expand_arms({"ce": [{}]}, ["student"], DataCell.grid_cells({"label_noise": [0.0, 0.2]}))
    assert [(a.key, a.cell.label_noise) for a in arms] == [("ce__noise_0", 0.0), ("ce__noise_20", 0.2)]
    assert arms[1].cell.as_dict() == {"label_fraction": 1.0, "transfer_set": False, "label_noise": 0.2}


def test_model_input_names_spell_out_the_data_cell():
    assert DataCell().dataset == "model_input"
    assert DataCell(0.1).dataset == "model_input_labels_10"
    assert DataCell(0.1, True).dataset == "model_input_labels_10_transfer"
    assert DataCell(0.05, True, 0.2).dataset == "model_input_noise_20_labels_5_transfer"
    assert DataCell(1.0, True, 0.2).dataset == "model_input_noise_20"  # full labels: no transfer set


def test_a_study_with_transfer_sets_and_noise_validates():
    study = _study({"label_fractions": [0.2, 1.0], "transfer_set": [False, True], "label_noise": [0.0, 0.3]})
    cells = {(a.cell.label_fraction, a.cell.transfer_set, a.cell.label_noise) for a in study.arms}
    assert cells == {(0.2, False, 0.0), (0.2, True, 0.0), (1.0, False, 0.0), (0.2, False, 0.3), (0.2, True, 0.3), (1.0, False, 0.3)}
    assert teacher_label_noise(study) == 0.0


@pytest.mark.parametrize(
    "grid, methods, data, message",
    [
        ({"label_fractions": [1.0], "transfer_set": [True]}, None, None, r"grid\.transfer_set: .*label fraction below 1"),
        ({"label_fractions": [0.5], "transfer_set": "yes"}, None, None, r"grid\.transfer_set: must be a list of booleans"),
        ({"label_noise": [0.0, 1.0]}, None, None, r"grid\.label_noise: every rate must be in \[0, 1\)"),
        ({"label_noise": [0.2, 0.2]}, None, None, r"grid\.label_noise: rates must be distinct"),
        ({"label_noise": [0.2]}, None, {"label_noise_model": "uniform"}, r"data\.label_noise_model: .*symmetric"),
        ({"label_noise": [0.1, 0.3]}, None, {"teacher_labels": "noisy"}, r"data\.teacher_labels: noisy .*exactly one rate"),
        ({}, None, {"teacher_labels": "dirty"}, r"data\.teacher_labels"),
        (
            {"label_fractions": [0.5], "transfer_set": [True]},
            {"kd": {}, "dkd": {}},
            None,
            r"grid\.transfer_set: method 'dkd' \(methods\.dkd\) cannot train on unlabelled samples: .*true label",
        ),
        (
            {"label_fractions": [0.5], "transfer_set": [True]},
            {"kd": {}, "mix": {"method": "combine", "parts": {"kd": {"method": "kd"}, "dkd": {"method": "dkd"}}}},
            None,
            r"grid\.transfer_set: method 'mix' \(methods\.mix\) .*part 'dkd'",
        ),
    ],
)
def test_impossible_combinations_name_the_key(grid, methods, data, message):
    with pytest.raises(ConfigError, match=message):
        _study(grid, methods, data)


def test_dkd_is_fine_without_a_transfer_set():
    study = _study({"label_fractions": [0.5], "transfer_set": [False]}, {"kd": {}, "dkd": {}})
    assert {a.key for a in study.arms} == {"kd__labels_50", "dkd__labels_50"}


def test_noisy_teacher_trains_on_the_one_noise_rate():
    study = _study({"label_noise": [0.0, 0.4]}, data={"teacher_labels": "noisy"})
    assert teacher_label_noise(study) == 0.4


def test_checkers_accept_the_documented_forms():
    assert check_transfer_sets([False, True], [0.1]) == [False, True]
    assert check_transfer_sets(True, [0.1]) == [True]
    assert check_label_noise([0, 0.25]) == [0.0, 0.25]
