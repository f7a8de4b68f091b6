"""Grid expansion: sweeps x students x label fractions become uniquely keyed arms."""

import pytest

from distillation_studies.common.errors import ConfigError
from distillation_studies.common.records import DataCell, check_label_fractions
from distillation_studies.study.grid import cell_keys, expand_arms, sweep_settings


def test_no_sweep_gives_one_arm_per_method_keyed_by_the_method():
    arms = expand_arms({"ce": [{}], "kd": [{}]}, ["student"], [DataCell()])
    assert [a.key for a in arms] == ["ce", "kd"]
    assert all(a.setting == {} and a.cell == DataCell() for a in arms)


def test_sweep_is_the_cartesian_product_of_values():
    settings = sweep_settings({"temperature": [1, 4.0], "alpha": [0.5, 0.9]}, "methods.kd.sweep")
    assert settings == [
        {"temperature": 1, "alpha": 0.5},
        {"temperature": 1, "alpha": 0.9},
        {"temperature": 4.0, "alpha": 0.5},
        {"temperature": 4.0, "alpha": 0.9},
    ]


def test_full_grid_has_every_combination_with_readable_unique_keys():
    arms = expand_arms(
        {"ce": [{}], "kd": sweep_settings({"temperature": [2.0, 4.0]}, "s")}, ["small", "big"], [DataCell(0.1), DataCell(1.0)]
    )
    assert len(arms) == (1 + 2) * 2 * 2
    keys = [a.key for a in arms]
    assert len(set(keys)) == len(keys)
    assert "kd__temperature_2__small__labels_10" in keys
    assert "ce__big__labels_100" in keys
    assert all("." not in key for key in keys)  # dots would split Kedro namespaces


def test_a_single_partial_fraction_is_still_named():
    assert [a.key for a in expand_arms({"ce": [{}]}, ["student"], [DataCell(0.3)])] == ["ce__labels_30"]


@pytest.mark.parametrize(
    "sweep, message",
    [
        ({"temperature": []}, r"methods\.kd\.sweep\.temperature: must be a non-empty list"),
        ({"temperature": 4}, r"methods\.kd\.sweep\.temperature: must be a non-empty list"),
        ({"temperature": [1, 1]}, r"methods\.kd\.sweep\.temperature: values must be distinct"),
    ],
)
def test_bad_sweeps_name_the_key(sweep, message):
    with pytest.raises(ConfigError, match=message):
        sweep_settings(sweep, "methods.kd.sweep")


@pytest.mark.parametrize("fractions", [[], [0.0], [1.5], [0.5, 0.5], "0.5"])
def test_bad_label_fractions(fractions):
    with pytest.raises(ConfigError, match=r"grid\.label_fractions"):
        check_label_fractions(fractions)


def _cell(student="student", fraction=1.0, transfer=False, noise=0.0):
    return {"student": student, "label_fraction": fraction, "transfer_set": transfer, "label_noise": noise}


def test_cell_keys_name_what_varies_and_are_empty_for_a_single_cell():
    assert cell_keys([_cell(fraction=0.1, transfer=True)]) == [""]  # one cell: plain @recommended
    assert cell_keys([_cell(), _cell(fraction=0.1, transfer=True)]) == ["labels_100", "labels_10__transfer"]
    # Transfer set alone varies: both keys still say the fraction, so neither is empty.
    assert cell_keys([_cell(fraction=0.1), _cell(fraction=0.1, transfer=True)]) == ["labels_10", "labels_10__transfer"]
    assert cell_keys([_cell(), _cell(noise=0.2)]) == ["noise_0", "noise_20"]
    assert cell_keys([_cell(), _cell(student="wide"), _cell(student="wide", fraction=0.5)]) == [
        "student__labels_100", "wide__labels_100", "wide__labels_50"
    ]
