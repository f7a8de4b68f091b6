"""The report's warnings about the teacher itself, word for word."""

from __future__ import annotations

import pandas as pd

from distillation_studies.report.sections import teacher_flags


def test_a_teacher_below_its_floor_and_below_the_student_alone_is_flagged():
    table = pd.DataFrame({"method": ["ce", "ce", "kd"], "test_accuracy_mean": [0.91, 0.93, 0.80]})
    teacher = {"test_accuracy": 0.844, "flag": "imported teacher's validation accuracy 0.8400 is below teacher.checkpoint.min_val_accuracy 0.9"}
    assert teacher_flags(teacher, table) == [
        "",
        "**Teacher flagged:** imported teacher's validation accuracy 0.8400 is below teacher.checkpoint.min_val_accuracy 0.9.",
        "**Teacher flagged:** its test accuracy 84.40% is below the student trained alone (`ce`, 93.00%): "
        "distilling from it copies a weaker model.",
    ]


def test_a_teacher_above_the_student_alone_and_without_a_floor_is_not_flagged():
    table = pd.DataFrame({"method": ["ce", "kd"], "test_accuracy_mean": [0.91, 0.95]})
    assert teacher_flags({"test_accuracy": 0.92}, table) == []
    assert teacher_flags({"test_accuracy": 0.5}, pd.DataFrame({"method": ["kd"], "test_accuracy_mean": [0.9]})) == []
