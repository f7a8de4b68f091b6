"""Reproduced vs published: a study's CIFAR-100 results next to the numbers papers report.

The reference table (``data/01_raw/reference/published_cifar100.csv``, catalog ``published_reference``)
has one row per (teacher, student, method) with columns ``teacher, student, method, top1, source,
protocol``: ``teacher``/``student`` are zoo model names (``resnet32x4``, ``resnet8x4``, ...), ``method``
is a registered method name (``ce`` for the student trained alone; ``crd_kd`` for CRD+KD, the one
combination the tables report) or ``teacher`` for the teacher's own accuracy, and ``top1`` is top-1
test accuracy in percent. An optional ``selection`` column says how the number was produced (epochs,
and which epoch was kept: most published CIFAR code keeps the best test-set epoch); it is carried into
the result as ``published_selection`` (empty when the table has no such column), so a reader can
compare like with like.

A study arm matches a row when the study's dataset is ``cifar100``, its teacher and default student
architectures are the row's pair, the arm's data cell is the published protocol's (every label, clean,
no transfer set: a label-fraction, transfer-set or noisy arm is never set against a clean number), and
the arm's registered method is the row's method. A ``combine`` arm says nothing by its registered name, so it matches by its method key
(``crd_kd``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from distillation_studies.common.errors import ConfigError
from distillation_studies.common.names import DEFAULT_STUDENT
from distillation_studies.common.records import DataCell

PUBLISHED_DATASET = "cifar100"
REFERENCE_COLUMNS = ["teacher", "student", "method", "top1", "source", "protocol"]
SELECTION_COLUMN = "selection"  # optional: epochs and the epoch-selection rule of the published number
TEACHER_ROW = "teacher"
RESULT_COLUMNS = [
    "arm",
    "method",
    "seeds",
    "reproduced_top1_mean",
    "reproduced_top1_ci_low",
    "reproduced_top1_ci_high",
    "reproduced_last_epoch_top1_mean",
    "published_top1",
    "delta_pp",
    "source",
    "protocol",
    "published_selection",
]


def check_reference(reference: pd.DataFrame) -> pd.DataFrame:
    """The reference table with its columns checked (a ConfigError names the missing ones)."""
    missing = [c for c in REFERENCE_COLUMNS if c not in reference.columns]
    if missing:
        raise ConfigError(
            f"published_reference: missing column(s) {missing}; expected columns {REFERENCE_COLUMNS}"
        )
    return reference


def published_pairs(reference: pd.DataFrame) -> set[tuple[str, str]]:
    """Every (teacher, student) pair the reference table has numbers for."""
    check_reference(reference)
    return set(zip(reference["teacher"].astype(str), reference["student"].astype(str)))


def _reference_key(row: Mapping[str, Any]) -> str:
    registered = row.get("registered_method")
    if not isinstance(registered, str) or not registered or registered == "combine":
        return str(row.get("method", row.get("arm")))
    return registered


def _selection(ref: Mapping[str, Any]) -> str:
    value = ref.get(SELECTION_COLUMN)
    return "" if value is None or pd.isna(value) else str(value)


def _percent(value: Any) -> float:
    return 100.0 * float(value) if value is not None and not pd.isna(value) else math.nan


def reproduced_vs_published(
    comparison_table: pd.DataFrame,
    reference: pd.DataFrame,
    teacher_name: str,
    student_name: str,
    dataset: str,
    teacher_metrics: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per matched arm (and the teacher, when ``teacher_metrics`` is given): the study's top-1
    test accuracy (mean and CI over seeds, in %) next to the published number, and the difference
    ``delta_pp = reproduced mean - published`` in percentage points.

    Empty (with the result columns) when the dataset is not CIFAR-100, the pair is not in the reference
    table, or no arm matches.
    """
    empty = pd.DataFrame(columns=RESULT_COLUMNS)
    check_reference(reference)
    if dataset != PUBLISHED_DATASET:
        return empty
    pair = reference[(reference["teacher"].astype(str) == teacher_name) & (reference["student"].astype(str) == student_name)]
    if pair.empty:
        return empty
    published = {str(row["method"]): row for _, row in pair.iterrows()}
    rows: list[dict[str, Any]] = []
    if teacher_metrics is not None and TEACHER_ROW in published and "test_accuracy" in teacher_metrics:
        ref = published[TEACHER_ROW]
        mean = _percent(teacher_metrics["test_accuracy"])
        rows.append({
            "arm": TEACHER_ROW, "method": TEACHER_ROW, "seeds": 1,
            "reproduced_top1_mean": mean, "reproduced_top1_ci_low": math.nan, "reproduced_top1_ci_high": math.nan,
            "reproduced_last_epoch_top1_mean": math.nan,
            "published_top1": float(ref["top1"]), "delta_pp": mean - float(ref["top1"]),
            "source": ref["source"], "protocol": ref["protocol"], "published_selection": _selection(ref),
        })
    order = {method: i for i, method in enumerate(published)}
    matched = []
    for _, arm in comparison_table.iterrows():
        if str(arm.get("student", DEFAULT_STUDENT)) != DEFAULT_STUDENT:
            continue  # a grid.students architecture, not the published student
        if not DataCell.from_row(arm).is_published_protocol:
            continue  # fewer, noisy or extra unlabelled data: not what the published runs trained on
        key = _reference_key(arm)
        if key == TEACHER_ROW or key not in published:
            continue
        ref = published[key]
        mean = _percent(arm.get("test_accuracy_mean"))
        matched.append((order[key], str(arm["arm"]), {
            "arm": arm["arm"], "method": key, "seeds": int(arm.get("seeds", 0)),
            "reproduced_top1_mean": mean,
            "reproduced_top1_ci_low": _percent(arm.get("test_accuracy_ci_low")),
            "reproduced_top1_ci_high": _percent(arm.get("test_accuracy_ci_high")),
            "reproduced_last_epoch_top1_mean": _percent(arm.get("last_test_accuracy_mean")),
            "published_top1": float(ref["top1"]), "delta_pp": mean - float(ref["top1"]),
            "source": ref["source"], "protocol": ref["protocol"], "published_selection": _selection(ref),
        }))
    rows += [row for _, _, row in sorted(matched, key=lambda item: item[:2])]
    if not rows:
        return empty
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
