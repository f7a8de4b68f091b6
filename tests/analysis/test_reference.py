"""Reproduced vs published: matching a study's comparison table to the published CIFAR-100 numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS
from distillation_studies.learning.models import MODELS
from distillation_studies.report.sections import reference_markdown
from distillation_studies.analysis.reference import (
    REFERENCE_COLUMNS,
    RESULT_COLUMNS,
    SELECTION_COLUMN,
    published_pairs,
    reproduced_vs_published,
)

REFERENCE_CSV = Path(__file__).resolve().parents[2] / "data" / "01_raw" / "reference" / "published_cifar100.csv"


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return pd.read_csv(REFERENCE_CSV)


def arm(key, method, registered, mean, half_width=0.01, student="student", fraction=1.0, seeds=3):
    return {
        "arm": key, "method": method, "registered_method": registered, "student": student, "label_fraction": fraction,
        "seeds": seeds, "test_accuracy_mean": mean, "test_accuracy_ci_low": mean - half_width,
        "test_accuracy_ci_high": mean + half_width, "last_test_accuracy_mean": mean - 0.002,
    }


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame([
        arm("ce", "ce", "ce", 0.7300),
        arm("kd", "kd", "kd", 0.7333, half_width=0.004),
        arm("crd_kd", "crd_kd", "combine", 0.7500),           # a combination matches by its key
        arm("kd_t2", "kd_t2", "kd", 0.7000),                  # a second kd setting matches kd too
        arm("ctkd", "ctkd", "ctkd", 0.7400),                  # no published number: left out
        arm("kd_wide", "kd", "kd", 0.7600, student="wide"),   # grid.students architecture: not the pair
        arm("kd_half", "kd", "kd", 0.7100, fraction=0.5),     # half the labels: not the published setting
    ])


def test_reference_file_is_well_formed(reference):
    assert list(reference.columns) == [*REFERENCE_COLUMNS, SELECTION_COLUMN]
    assert reference[SELECTION_COLUMN].str.contains("epochs").all()  # every number says its protocol
    assert not reference.duplicated(["teacher", "student", "method"]).any()
    assert reference["top1"].between(50, 100).all()
    assert reference["source"].str.len().gt(10).all() and reference["protocol"].str.len().gt(10).all()
    # Methods are registered names (or the teacher row, or the CRD+KD combination the tables report) ...
    assert set(reference["method"]) <= set(METHODS) | {"teacher", "crd_kd"}
    # ... and models are zoo names, so a study's model names match them directly.
    assert set(reference["teacher"]) | set(reference["student"]) <= set(MODELS)
    assert published_pairs(reference) == {("resnet32x4", "resnet8x4"), ("wrn_40_2", "wrn_16_2")}


def test_reference_holds_the_published_resnet32x4_numbers(reference):
    pair = reference[(reference["teacher"] == "resnet32x4") & (reference["student"] == "resnet8x4")]
    top1 = dict(zip(pair["method"], pair["top1"]))
    assert top1["teacher"] == 79.42 and top1["ce"] == 72.50 and top1["kd"] == 73.33
    assert (top1["crd"], top1["crd_kd"], top1["dkd"], top1["dist"], top1["reviewkd"]) == (75.51, 75.46, 76.32, 76.31, 75.63)
    # issue 24's new methods: ICKD-C w/o KL (authors' README), WTTM (authors' README), AB (CRD Table 1)
    assert (top1["ickd"], top1["wttm"], top1["ab"]) == (75.25, 76.06, 73.17)
    wrn = reference[reference["teacher"] == "wrn_40_2"].set_index("method")["top1"]
    assert (wrn["ickd"], wrn["wttm"], wrn["ab"]) == (75.64, 76.37, 72.50)
    # SKD (authors' README, Ours row); rld, mlkd, srd and dist_plus publish no number for these pairs
    assert (top1["skd"], wrn["skd"]) == (78.33, 76.60)
    assert not reference["method"].isin(["rld", "mlkd", "srd", "dist_plus"]).any()


def test_selection_is_carried_and_a_table_without_it_still_works(table, reference):
    result = reproduced_vs_published(table, reference, "resnet32x4", "resnet8x4", "cifar100")
    assert result.set_index("arm").loc["kd", "published_selection"].startswith("240 epochs; best test-set epoch")
    assert "published: epochs, selection" in reference_markdown(result)
    bare = reproduced_vs_published(table, reference.drop(columns=[SELECTION_COLUMN]), "resnet32x4", "resnet8x4", "cifar100")
    assert list(bare.columns) == RESULT_COLUMNS and set(bare["published_selection"]) == {""}


def test_matching_computes_deltas_in_points(table, reference):
    result = reproduced_vs_published(
        table, reference, "resnet32x4", "resnet8x4", "cifar100", teacher_metrics={"test_accuracy": 0.80}
    )
    assert list(result.columns) == RESULT_COLUMNS
    assert list(result["arm"]) == ["teacher", "ce", "kd", "kd_t2", "crd_kd"]  # reference order, then arm
    rows = result.set_index("arm")
    assert rows.loc["teacher", "delta_pp"] == pytest.approx(80.0 - 79.42)
    assert math.isnan(rows.loc["teacher", "reproduced_top1_ci_low"]) and rows.loc["teacher", "seeds"] == 1
    assert rows.loc["ce", "delta_pp"] == pytest.approx(73.00 - 72.50)
    assert rows.loc["kd", "delta_pp"] == pytest.approx(0.0, abs=1e-9)
    assert rows.loc["kd", "reproduced_top1_ci_low"] == pytest.approx(72.93)
    assert rows.loc["kd", "reproduced_top1_ci_high"] == pytest.approx(73.73)
    assert rows.loc["kd", "reproduced_last_epoch_top1_mean"] == pytest.approx(73.13)
    assert rows.loc["kd_t2", "method"] == "kd" and rows.loc["kd_t2", "delta_pp"] == pytest.approx(70.0 - 73.33)
    assert rows.loc["crd_kd", "published_top1"] == 75.46 and rows.loc["crd_kd", "delta_pp"] == pytest.approx(75.0 - 75.46)
    assert rows.loc["crd_kd", "source"].startswith("Tian")


def test_other_pair_and_other_dataset_give_an_empty_table(table, reference):
    for args in (("resnet32x4", "resnet8x4", "cifar10"), ("resnet14", "resnet8", "cifar100"), ("resnet8x4", "resnet32x4", "cifar100")):
        result = reproduced_vs_published(table, reference, *args, teacher_metrics={"test_accuracy": 0.8})
        assert result.empty and list(result.columns) == RESULT_COLUMNS


def test_no_matching_arm_gives_an_empty_table(reference):
    result = reproduced_vs_published(pd.DataFrame([arm("ctkd", "ctkd", "ctkd", 0.7)]), reference, "wrn_40_2", "wrn_16_2", "cifar100")
    assert result.empty


def test_reference_without_a_column_is_an_error(table, reference):
    with pytest.raises(ConfigError, match=r"published_reference: missing column\(s\) \['source'\]"):
        reproduced_vs_published(table, reference.drop(columns=["source"]), "resnet32x4", "resnet8x4", "cifar100")


def test_markdown_shows_reproduced_published_and_delta(table, reference):
    result = reproduced_vs_published(table, reference, "resnet32x4", "resnet8x4", "cifar100", {"test_accuracy": 0.80})
    text = reference_markdown(result, confidence=0.95)
    assert "95% confidence interval" in text
    assert "| ce " in text and "73.00 ± 1.00" in text and "72.50" in text and "+0.50" in text
    assert "79.42" in text and "+0.58" in text and "-0.46" in text
    assert "Published protocols:" in text and "RepDistiller" in text


@pytest.mark.parametrize(
    "cell",
    [
        {"label_noise": 0.4},                                   # 40% noisy labels: the bug this test pins
        {"label_fraction": 0.5, "transfer_set": True},          # half the labels, the rest as a transfer set
        {"label_fraction": 0.1},                                # a label fraction
        {"label_fraction": 0.5, "transfer_set": True, "label_noise": 0.2},
    ],
)
def test_an_arm_of_another_data_cell_is_never_set_against_a_clean_full_label_number(reference, cell):
    clean = arm("kd", "kd", "kd", 0.7333)
    other = {**arm("kd_other", "kd", "kd", 0.6100), "transfer_set": False, "label_noise": 0.0, **cell}
    alone = reproduced_vs_published(pd.DataFrame([other]), reference, "resnet32x4", "resnet8x4", "cifar100")
    assert alone.empty
    mixed = reproduced_vs_published(pd.DataFrame([clean, other]), reference, "resnet32x4", "resnet8x4", "cifar100")
    assert list(mixed["arm"]) == ["kd"]  # the clean arm still matches, next to the other cell


def test_a_run_saved_before_the_noise_and_transfer_columns_counts_as_clean(reference):
    old = {**arm("kd", "kd", "kd", 0.7333), "transfer_set": math.nan, "label_noise": math.nan}
    result = reproduced_vs_published(pd.DataFrame([old]), reference, "resnet32x4", "resnet8x4", "cifar100")
    assert list(result["arm"]) == ["kd"] and result["delta_pp"].iloc[0] == pytest.approx(0.0, abs=1e-9)
