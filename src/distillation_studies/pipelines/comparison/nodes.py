"""Compare methods across seeds and write the report."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from distillation_studies.core import comparison as core
from distillation_studies.core.config import parse_dataclass
from distillation_studies.core.study import ComparisonConfig


def collect_runs(*student_metrics: dict[str, Any]) -> pd.DataFrame:
    """All (method, seed) metrics as one table."""
    return core.runs_table(list(student_metrics))


def compare_methods(
    runs: pd.DataFrame, teacher_metrics: dict[str, Any], data_summary: dict[str, Any], comparison: dict[str, Any]
) -> tuple[pd.DataFrame, str, Figure]:
    """The comparison table, its Markdown report and the accuracy-against-cost plot."""
    config = parse_dataclass(ComparisonConfig, comparison, "comparison")
    table = core.comparison_table(runs, config.baseline, config.confidence, config.significance)
    report = core.markdown_report(table, teacher_metrics, data_summary, config.baseline, config.confidence)
    return table, report, core.cost_plot(table, teacher_metrics)
