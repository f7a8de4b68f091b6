"""Compare methods across seeds, recommend one under the user's constraints, and write the reports."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from distillation_studies.analysis import comparison as core
from distillation_studies.analysis import reference
from distillation_studies.learning import diagnostics
from distillation_studies.report import plots
from distillation_studies.report.data_factors import data_factor_figures, data_factor_sections
from distillation_studies.common.config import parse_dataclass
from distillation_studies.report.html import HTML, html_report, markdown_to_html
from distillation_studies.analysis.pareto import pareto_fronts
from distillation_studies.analysis.recommend import Constraints, recommend
from distillation_studies.study.schema import ComparisonConfig

log = logging.getLogger(__name__)
PARETO_COSTS = ["training_parameters_mean", "flops_mean", "latency_ms_mean", "train_time_s_mean"]


def collect_runs(*student_metrics: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """All (arm, seed) metrics as one table, and the per-run details (reliability bins, per-class accuracy)."""
    return core.split_details(list(student_metrics))


def collect_histories(*histories: dict[str, Any]) -> dict[str, Any]:
    """Every student's per-epoch history keyed ``<arm>/seed_<n>``, for learning curves."""
    return {f"{h['summary']['arm']}/seed_{h['summary']['seed']}": h for h in histories}


def compare_methods(
    study_runs: pd.DataFrame, teacher_metrics: dict[str, Any], comparison: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Figure]:
    """Comparison table of the selected settings, paired tests, sensitivity table and the cost plot."""
    config = parse_dataclass(ComparisonConfig, comparison, "comparison")
    selected, sensitivity = core.select_settings(study_runs, config.confidence)
    table, tests = core.comparison_table(
        selected, list(config.baselines), config.confidence, config.significance, config.correction
    )
    return table, tests, sensitivity, plots.cost_plot(table, teacher_metrics)


def recommend_method(
    comparison_table: pd.DataFrame,
    study_runs: pd.DataFrame,
    recommendation: dict[str, Any] | None,
    mlflow_run_ids: dict[str, str],
) -> dict[str, Any]:
    """Candidates filtered by the configured constraints and ranked, ties kept as ties, with evidence."""
    constraints = parse_dataclass(Constraints, recommendation, "recommendation")
    runs = study_runs.rename(columns={"arm": "candidate"})
    runs["run_id"] = [mlflow_run_ids.get(f"{c}/seed_{s}", "") for c, s in zip(runs["candidate"], runs["seed"])]
    runs = runs[runs["candidate"].isin(set(comparison_table["arm"]))]
    result = recommend(comparison_table.rename(columns={"arm": "candidate"}), runs, constraints)
    log.info("Which method should I use?\n%s", result.to_markdown())
    return {**result.to_dict(), "markdown": result.to_markdown()}


def compare_with_published(
    comparison_table: pd.DataFrame,
    teacher_metrics: dict[str, Any],
    published_reference: pd.DataFrame,
    data: dict[str, Any],
    teacher: dict[str, Any],
    student: dict[str, Any],
) -> pd.DataFrame:
    """The study's arms next to the published CIFAR-100 numbers for its teacher/student pair (empty if none)."""
    return reference.reproduced_vs_published(
        comparison_table,
        published_reference,
        teacher_name=str((teacher.get("model") or {}).get("name", "")),
        student_name=str((student.get("model") or {}).get("name", "")),
        dataset=str(data.get("dataset", "")),
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
    comparison: dict[str, Any],
    reproduced_vs_published: pd.DataFrame | None = None,
) -> tuple[str, str, dict[str, Figure]]:
    """The study report as Markdown and as one self-contained HTML page, plus its plots as PNGs.

    With a non-empty ``reproduced_vs_published`` table (CIFAR-100 studies of a published pair) the
    report gains a "Reproduced vs published" section after the comparison.
    """
    config = parse_dataclass(ComparisonConfig, comparison, "comparison")
    baselines = list(config.baselines)
    comparison_md = core.markdown_report(
        comparison_table, teacher_metrics, data_summary, baselines, config.confidence, config.correction
    )
    figures = _figures(comparison_table, sensitivity_table, study_histories, run_details)
    published = []
    if reproduced_vs_published is not None and not reproduced_vs_published.empty:
        published = [("Reproduced vs published", reference.markdown(reproduced_vs_published, config.confidence))]
    figures.update(data_factor_figures(comparison_table))
    data_factors = data_factor_sections(
        comparison_table, paired_tests, baselines, config.confidence, config.correction, config.significance
    )
    sections = [
        ("Recommendation", recommendation["markdown"]),
        ("Comparison", comparison_md),
        *data_factors,
        *published,
        ("Capacity gap", diagnostics.markdown(capacity_report)),
        ("Hyperparameter settings (validation only)", _sensitivity_md(sensitivity_table)),
        ("Paired tests", paired_tests.to_markdown(index=False, floatfmt=".4g")),
        ("Protocol", _protocol_md(protocol_card)),
    ]
    markdown = "\n\n".join(f"## {title}\n\n{body}" for title, body in sections)
    markdown += "\n\n## Plots\n\n" + "\n".join(f"![{name}](study_plots/{name})" for name in figures) + "\n"
    page = html_report(
        "Distillation study report",
        [(title, HTML(markdown_to_html(body))) for title, body in sections],
        figures,
    )
    return markdown, page, figures


def _figures(table: pd.DataFrame, sensitivity: pd.DataFrame, histories: dict, details: dict) -> dict[str, Figure]:
    labelled = table.rename(columns={"arm": "method"})
    fronts = pareto_fronts(labelled, costs=PARETO_COSTS)
    figures = {f"pareto_{cost.removesuffix('_mean')}.png": plots.pareto_plot(labelled, cost, front_methods=front) for cost, front in fronts.items()}
    by_arm: dict[str, list] = {}
    for key, history in histories.items():
        by_arm.setdefault(key.rsplit("/", 1)[0], []).append(history["epochs"])
    figures["learning_curves.png"] = plots.learning_curves(by_arm)
    first_seed = {key.rsplit("/", 1)[0]: value for key, value in sorted(details.items(), reverse=True)}
    figures["reliability.png"] = plots.reliability_diagram({arm: d["reliability"] for arm, d in first_seed.items() if "reliability" in d})
    figures["per_class_accuracy.png"] = plots.per_class_heatmap(
        {arm: d["per_class_accuracy"] for arm, d in first_seed.items() if "per_class_accuracy" in d}
    )
    for column in [c for c in sensitivity.columns if c.startswith("hp_") and sensitivity[c].nunique() > 1]:
        figures[f"sensitivity_{column[3:]}.png"] = plots.sensitivity_curve(
            sensitivity, column, "best_val_accuracy_mean", group_column="method"
        )
    if table["label_fraction"].nunique() > 1 and not ("transfer_set" in table and table["transfer_set"].any()):
        figures["label_fraction.png"] = plots.label_fraction_curve(table, "label_fraction", group_column="method")
    return figures


def _sensitivity_md(sensitivity: pd.DataFrame) -> str:
    columns = ["arm", "method", "setting", "student", "label_fraction", "seeds", "best_val_accuracy_mean", "best_val_accuracy_ci_low", "best_val_accuracy_ci_high", "selected"]
    return sensitivity[columns].to_markdown(index=False, floatfmt=".4f")


def _protocol_md(card: dict[str, Any]) -> str:
    lines = [f"- **{key}**: `{value}`" for key, value in card.items() if key not in ("methods", "package_versions")]
    lines.append("- **package_versions**: " + ", ".join(f"{k} {v}" for k, v in card["package_versions"].items()))
    return "\n".join(lines)
