"""Compare methods across seeds, recommend one under the user's constraints, and write the reports."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from distillation_studies.analysis.metrics import PARETO_COSTS as PARETO_METRICS
from distillation_studies.common.records import LABEL_FRACTION, TRANSFER_SET
from distillation_studies.analysis import comparison as core
from distillation_studies.analysis import reference
from distillation_studies.report.data_factors import data_factor_figures, data_factor_sections
from distillation_studies.analysis.pareto import flat_costs
from distillation_studies.analysis.pooled import mean_per_class, pool_reliability
from distillation_studies.analysis.recommend import Constraints, failed, recommend_per_cell
from distillation_studies.report import plots, sections
from distillation_studies.report.sections import PLOTS_FOLDER
from distillation_studies.report.html import RenderedPlot, html_report, link_run_ids, mlflow_ui_url, recommendation_run_ids, render_plots
from distillation_studies.report.recommendation import recommendation_markdown, title
from distillation_studies.report.search import SEARCH_HEADING, search_section
from distillation_studies.report.text import cell_description
from distillation_studies.study.grid import cell_keys
from distillation_studies.study.identity import ArmRun
from distillation_studies.study.schema import ComparisonConfig, DataConfig, ModelSection, TrackingConfig

log = logging.getLogger(__name__)
PARETO_COSTS = [f"{name}_mean" for name in PARETO_METRICS]  # the plots' cost axes, from the metrics table
REPORT_TITLE = "Distillation study report"


def gather_seeds(*records: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """One arm's per-seed records, its metrics then its histories (as many of each), in one dataset: the
    study-level collection reads one dataset per arm, so kedro-viz keeps the seeds inside their arm."""
    seeds = len(records) // 2
    return {"metrics": list(records[:seeds]), "histories": list(records[seeds:])}


def collect_study_runs(*arms: dict[str, list[dict[str, Any]]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`collect_runs` over every arm's gathered seeds."""
    return collect_runs(*(metrics for arm in arms for metrics in arm["metrics"]))


def collect_study_histories(*arms: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """:func:`collect_histories` over every arm's gathered seeds."""
    return collect_histories(*(history for arm in arms for history in arm["histories"]))


def collect_runs(*student_metrics: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """All (arm, seed) metrics as one table, and the per-run details (reliability bins, per-class
    accuracy) keyed by run key ``<arm>/seed_<n>``."""
    rows, details = [], {}
    for metrics in student_metrics:
        row = {k: v for k, v in metrics.items() if k != "details"}
        details[ArmRun(row["arm"], row["seed"]).key] = metrics.get("details", {})
        rows.append(row)
    return pd.DataFrame(rows), details


def collect_histories(*histories: dict[str, Any]) -> dict[str, Any]:
    """Every student's per-epoch history keyed ``<arm>/seed_<n>``, for learning curves."""
    return {ArmRun(h["summary"]["arm"], h["summary"]["seed"]).key: h for h in histories}


def compare_methods(
    study_runs: pd.DataFrame, teacher_metrics: dict[str, Any], comparison: ComparisonConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Figure]:
    """Comparison table of the selected settings, its family of paired tests, sensitivity table and the cost plot."""
    statistics = comparison.statistics()
    selected, sensitivity = core.select_settings(study_runs, statistics.confidence)
    table, tests = core.comparison_table(selected, statistics)
    return table, tests, sensitivity, plots.cost_plot(table, teacher_metrics)


def recommend_method(
    comparison_table: pd.DataFrame,
    study_runs: pd.DataFrame,
    recommendation: Constraints,
    mlflow_run_ids: dict[str, str],
    comparison: ComparisonConfig,
    paired_tests: pd.DataFrame,
) -> dict[str, Any]:
    """Per data cell, candidates filtered by the configured constraints and ranked, ties kept as ties,
    with evidence: a user's data is their situation, so no ranking mixes cells.

    The paired tests are the comparison's within-cell family, ``paired_tests``, read as given (never
    recomputed), so a pair gets the table's verdict. The record is JSON data (each cell with its
    ``description`` and its ``key``, the registry alias suffix) plus its rendering under ``markdown``.
    """
    runs = study_runs.rename(columns={"arm": "candidate"})
    runs["run_id"] = [mlflow_run_ids.get(ArmRun(c, s).key, "") for c, s in zip(runs["candidate"], runs["seed"])]
    runs = runs[runs["candidate"].isin(set(comparison_table["arm"]))]
    result = recommend_per_cell(
        comparison_table.rename(columns={"arm": "candidate"}), runs, recommendation, comparison.statistics(), paired_tests
    )
    record = result.to_dict()
    for cell, key in zip(record["cells"], cell_keys([c["cell"] for c in record["cells"]])):
        cell.update(description=cell_description(cell["cell"]), key=key)
    markdown = recommendation_markdown(record, heading=True)
    log.info("Which method should I use?\n%s", markdown)
    failures = [e for answer in result.cells for e in answer.recommendation.excluded if failed(e)]
    if failures:
        log.warning("%d arm(s) failed and are not ranked:\n%s", len(failures), "\n".join(
            f"- {e.candidate}: training failed: {e.violations[0].quantity}" for e in failures))
    return {**record, "markdown": markdown}


def compare_with_published(
    comparison_table: pd.DataFrame,
    teacher_metrics: dict[str, Any],
    published_reference: pd.DataFrame,
    data: DataConfig,
    teacher: ModelSection,
    student: ModelSection,
) -> pd.DataFrame:
    """The study's arms next to the published CIFAR-100 numbers for its teacher/student pair (empty if none)."""
    return reference.reproduced_vs_published(
        comparison_table,
        published_reference,
        teacher_name=teacher.spec["name"],
        student_name=student.spec["name"],
        dataset=data.dataset,
        teacher_metrics=teacher_metrics,
    )


def build_report(
    comparison_table: pd.DataFrame,
    paired_tests: pd.DataFrame,
    sensitivity_table: pd.DataFrame,
    recommendation: dict[str, Any],
    capacity_report: dict[str, Any],
    protocol_card: dict[str, Any],
    study_histories: dict[str, Any],
    run_details: dict[str, Any],
    teacher_metrics: dict[str, Any],
    data_summary: dict[str, Any],
    comparison: ComparisonConfig,
    tracking: TrackingConfig | None = None,
    reproduced_vs_published: pd.DataFrame | None = None,
    *,
    search: tuple[str, dict[str, Figure]] | None = None,
) -> tuple[str, str, dict[str, RenderedPlot]]:
    """The study report as Markdown and as one self-contained HTML page, plus its plots, each rendered
    to a PNG once for both the page and the plots folder.

    The Markdown links its plots as ``plots/<name>``: where the tracking hook logs them beside the
    report in MLflow (``report/plots/``); the catalog's ``MarkdownReportDataset`` points the saved
    file's links at the plots' versioned folder on disk. With a non-empty ``reproduced_vs_published``
    table (CIFAR-100 studies of a published pair) the report gains a "Reproduced vs published" section;
    with ``search`` (a search study, ``build_search_report``) a "Search" section. With ``tracking`` on, the
    MLflow run ids the recommendation cites link to their pages in the MLflow UI of ``tracking.uri``.
    """
    statistics = comparison.statistics()
    figures = _figures(comparison_table, sensitivity_table, study_histories, run_details)
    published = []
    if reproduced_vs_published is not None and not reproduced_vs_published.empty:
        published = [("Reproduced vs published", sections.reference_markdown(reproduced_vs_published, statistics.confidence))]
    figures.update(data_factor_figures(comparison_table))
    figures.update(search[1] if search else {})
    data_factors = data_factor_sections(
        comparison_table, paired_tests, list(statistics.baselines), statistics.confidence, statistics.correction, statistics.significance
    )
    parts = [
        (title(recommendation), recommendation_markdown(recommendation)),
        ("Comparison", sections.comparison_markdown(comparison_table, paired_tests, teacher_metrics, data_summary, statistics)),
        *data_factors,
        *([(SEARCH_HEADING, search[0])] if search else []),
        *published,
        ("Capacity gap", sections.capacity_markdown(capacity_report)),
        ("Hyperparameter settings (validation only)", sections.sensitivity_markdown(sensitivity_table)),
        ("Paired tests", sections.paired_tests_markdown(paired_tests, statistics)),
        ("Protocol", sections.protocol_markdown(protocol_card)),
    ]
    flat = {cost: float(comparison_table[cost].dropna().iloc[0]) for cost in flat_costs(comparison_table, PARETO_COSTS)}
    markdown = sections.report_markdown(REPORT_TITLE, [*parts, ("Plots", plots.plots_markdown(figures, flat, PLOTS_FOLDER))], [])
    if tracking is not None and tracking.enabled:
        markdown = link_run_ids(markdown, recommendation_run_ids(recommendation), mlflow_ui_url(tracking.uri))
    rendered = render_plots(figures)
    return markdown, html_report(REPORT_TITLE, markdown, rendered, PLOTS_FOLDER), rendered


def build_search_report(
    search_trials: pd.DataFrame, search_events: pd.DataFrame, search_finalists: dict[str, Any], *report_inputs: Any
) -> tuple[str, str, dict[str, RenderedPlot]]:
    """``build_report`` of a search study (its ``report_inputs``, in order), with the "Search" section:
    compute against the grid, the anytime plot, and what the search dropped, when and why."""
    return build_report(*report_inputs, search=search_section(search_trials, search_events, search_finalists))


def _by_arm(details: dict[str, Any], kind: str) -> dict[str, list]:
    """Each arm's per-seed ``kind`` details (``details`` is keyed by run key)."""
    by_arm: dict[str, list] = {}
    for key, value in details.items():
        if kind in value:
            by_arm.setdefault(ArmRun.from_key(key).arm, []).append(value[kind])
    return by_arm


def _seeds_title(name: str, how: str, by_arm: dict[str, list]) -> str:
    """'<name>: <how> all seeds of each arm (2 seeds)': a per-seed figure says which seeds it shows."""
    counts = sorted({len(v) for v in by_arm.values()}) or [0]
    seeds = f"{counts[0]} seed{'s' if counts[0] != 1 else ''}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} seeds"
    return f"{name}: {how} all seeds of each arm ({seeds})"


def _figures(table: pd.DataFrame, sensitivity: pd.DataFrame, histories: dict, details: dict) -> dict[str, Figure]:
    flat = flat_costs(table, PARETO_COSTS)
    figures = {
        f"pareto_{cost.removesuffix('_mean')}.png": plots.pareto_plot(table, cost, label_column="arm")
        for cost in PARETO_COSTS if cost in table.columns and cost not in flat
    }
    by_arm: dict[str, list] = {}
    for key, history in histories.items():
        by_arm.setdefault(ArmRun.from_key(key).arm, []).append(history["epochs"])
    figures["learning_curves.png"] = plots.learning_curves(by_arm, table)
    reliability = _by_arm(details, "reliability")
    figures["reliability.png"] = plots.reliability_diagram(
        {arm: pool_reliability(bins) for arm, bins in reliability.items()},
        _seeds_title("Reliability diagrams", "test predictions pooled over", reliability),
    )
    per_class = _by_arm(details, "per_class_accuracy")
    figures["per_class_accuracy.png"] = plots.per_class_heatmap(
        {arm: mean_per_class(values) for arm, values in per_class.items()},
        title=_seeds_title("Per-class test accuracy", "mean over", per_class),
    )
    for column in [c for c in sensitivity.columns if c.startswith("hp_") and sensitivity[c].nunique() > 1]:
        figures[f"sensitivity_{column[3:]}.png"] = plots.sensitivity_curve(
            sensitivity, column, "best_val_accuracy_mean", group_column="method"
        )
    if table[LABEL_FRACTION].nunique() > 1 and not (TRANSFER_SET in table and table[TRANSFER_SET].any()):
        figures["label_fraction.png"] = plots.label_fraction_curve(table, LABEL_FRACTION, group_column="method")
    return figures
