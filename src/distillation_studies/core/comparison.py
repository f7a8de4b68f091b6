"""Method comparison: one row per method with across-seed statistics, a Markdown report and a plot."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from distillation_studies.core.stats import summarise_by_method  # noqa: E402

QUALITY_METRICS = [
    "test_accuracy",
    "last_test_accuracy",
    "test_nll",
    "test_ece",
    "test_teacher_agreement",
    "test_kl_to_teacher",
]
DETERMINISTIC_COSTS = ("parameters", "training_parameters", "flops")
COST_METRICS = ["parameters", "training_parameters", "flops", "latency_ms", "throughput_per_s", "train_time_s"]


def runs_table(student_metrics: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (method, seed), in study order."""
    return pd.DataFrame(student_metrics)


def comparison_table(
    runs: pd.DataFrame, baseline: str, confidence: float = 0.95, significance: float = 0.05
) -> pd.DataFrame:
    """Mean/std/CI of every metric per method; paired difference and p-value against ``baseline``."""
    summary = summarise_by_method(runs, QUALITY_METRICS + COST_METRICS, baseline, confidence, significance)
    # Deterministic costs are identical across seeds: a paired test on them means nothing.
    prefixes = tuple(f"{m}_{s}" for m in DETERMINISTIC_COSTS for s in ("diff_vs_", "p_vs_", "within_noise"))
    drop = [column for column in summary.columns if column.startswith(prefixes)]
    return summary.drop(columns=drop)


def verdict(row: pd.Series, baseline: str, metric: str = "test_accuracy") -> str:
    """Plain words for the accuracy difference to the baseline, honest about noise."""
    if row["method"] == baseline:
        return "baseline"
    p = row.get(f"{metric}_p_vs_{baseline}", math.nan)
    diff = row.get(f"{metric}_diff_vs_{baseline}", math.nan)
    if p is None or math.isnan(p):
        return "not testable (fewer than 2 paired seeds)"
    if row[f"{metric}_within_noise"]:
        return f"within noise (p={p:.3f})"
    return f"{'better' if diff > 0 else 'worse'} than {baseline} (p={p:.3f})"


def human(count: float) -> str:
    """1234567 -> '1.23M': counts readable at a glance."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= scale:
            return f"{count / scale:.2f}{suffix}"
    return f"{count:.0f}"


def _pm(row: pd.Series, metric: str, scale: float = 1.0, digits: int = 2) -> str:
    mean, low = row[f"{metric}_mean"] * scale, row[f"{metric}_ci_low"] * scale
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {mean - low:.{digits}f}"


def markdown_report(
    table: pd.DataFrame, teacher: dict[str, Any], data_summary: dict[str, Any], baseline: str, confidence: float
) -> str:
    """A self-explaining Markdown report of the comparison table."""
    rows = []
    for _, row in table.iterrows():
        diff = row.get(f"test_accuracy_diff_vs_{baseline}", math.nan)
        rows.append(
            {
                "method": row["method"],
                "seeds": int(row["seeds"]),
                "test acc % (best val)": _pm(row, "test_accuracy", 100),
                "test acc % (last epoch)": _pm(row, "last_test_accuracy", 100),
                "NLL": _pm(row, "test_nll", 1, 3),
                "ECE %": _pm(row, "test_ece", 100),
                "agreement %": _pm(row, "test_teacher_agreement", 100),
                "KL to teacher": _pm(row, "test_kl_to_teacher", 1, 3),
                "params (train)": f"{row['parameters_mean']:,.0f} ({row['training_parameters_mean']:,.0f})",
                "FLOPs": human(row["flops_mean"]),
                "latency ms": f"{row['latency_ms_mean']:.3f}",
                "train s": f"{row['train_time_s_mean']:.2f}",
                f"Δacc vs {baseline} (pp)": "" if math.isnan(diff) else f"{100 * diff:+.2f}",
                "verdict": verdict(row, baseline),
            }
        )
    sizes = data_summary["sizes"]
    lines = [
        "# Distillation study: method comparison",
        "",
        f"Dataset `{data_summary['dataset']}`: {sizes['train']} train / {sizes['val']} validation / "
        f"{sizes['test']} test images. Epochs are selected on validation; test is evaluated once.",
        f"Teacher: test accuracy {100 * teacher['test_accuracy']:.2f}%, {teacher['parameters']:,} parameters, "
        f"{human(teacher['flops'])} FLOPs, {teacher['latency_ms']:.3f} ms per image.",
        "",
        f"Values are mean ± half-width of the {100 * confidence:.0f}% Student-t confidence interval over seeds. "
        f"Differences to `{baseline}` are paired by seed (two-sided paired t-test); a difference whose p-value "
        "is not below the significance level is reported as within noise.",
        "",
        pd.DataFrame(rows).to_markdown(index=False),
        "",
        "![accuracy against cost](comparison_plot.png)",
        "",
    ]
    return "\n".join(lines)


def cost_plot(table: pd.DataFrame, teacher: dict[str, Any]) -> plt.Figure:
    """Test accuracy (mean with CI) against parameters and against CPU latency, one point per method."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, cost, label in ((axes[0], "training_parameters", "parameters (incl. adapters)"), (axes[1], "latency_ms", "CPU latency, ms (batch 1)")):
        for _, row in table.iterrows():
            mean = 100 * row["test_accuracy_mean"]
            low = row["test_accuracy_ci_low"]
            error = 0.0 if math.isnan(low) else mean - 100 * low
            axis.errorbar(row[f"{cost}_mean"], mean, yerr=error, fmt="o", capsize=4, label=row["method"])
        axis.scatter([teacher["parameters"] if cost == "training_parameters" else teacher[cost]], [100 * teacher["test_accuracy"]], marker="*", s=150, color="black", label="teacher")
        axis.set_xscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("test accuracy, %")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    figure.suptitle("Accuracy against cost (error bars: confidence interval over seeds)")
    figure.tight_layout()
    return figure
