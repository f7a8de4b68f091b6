"""Method comparison across seeds: setting selection on validation, statistics, paired tests, report.

Rows of ``runs`` are (arm, seed) evaluations. An arm is a (method, setting, student, label fraction)
grid point; a *cell* is (student, label fraction), inside which methods are compared. When a method
sweeps hyperparameters, its setting is picked per cell on mean validation accuracy, and only the
picked setting's test results enter the comparison.
"""

from __future__ import annotations

import math
from typing import Any


import pandas as pd  # noqa: E402

from distillation_studies.analysis.recommend import human  # noqa: E402
from distillation_studies.analysis.stats import adjust_p_values, paired_tests, summarise_by_group  # noqa: E402

QUALITY_METRICS = [
    "test_accuracy",
    "last_test_accuracy",
    "test_nll",
    "test_ece",
    "test_teacher_agreement",
    "test_kl_to_teacher",
]
COST_METRICS = ["parameters", "training_parameters", "flops", "latency_ms", "throughput_per_s", "train_time_s"]
# Paired against the baselines: quality, and training time (the one cost that varies with the seed).
TESTED_METRICS = ["test_accuracy", "test_nll", "test_ece", "test_teacher_agreement", "train_time_s"]
SELECTION_METRIC = "best_val_accuracy"
CELL = ["student", "label_fraction", "transfer_set", "label_noise"]
ARM_LABELS = ["arm", "method", "registered_method", "setting", "student", "label_fraction", "transfer_set", "label_noise", "labels_changed", "train_size"]


def _cell(runs: pd.DataFrame) -> list[str]:
    """The cell columns a table has (transfer_set and label_noise are absent from older runs)."""
    return [c for c in CELL if c in runs.columns]


def split_details(student_metrics: list[dict[str, Any]]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Flat metric rows (one per arm and seed) and the nested details keyed ``<arm>/seed_<n>``."""
    rows, details = [], {}
    for metrics in student_metrics:
        row = {k: v for k, v in metrics.items() if k != "details"}
        details[f"{row['arm']}/seed_{row['seed']}"] = metrics.get("details", {})
        rows.append(row)
    return pd.DataFrame(rows), details


def select_settings(runs: pd.DataFrame, confidence: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep, per (method, cell), the arm with the best mean validation accuracy; report every arm's.

    Returns the runs of the selected arms and a sensitivity table (validation only: test results of
    settings that were not selected are never reported).
    """
    summary = summarise_by_group(runs, [SELECTION_METRIC], "arm", confidence)
    labels = runs.drop_duplicates("arm").set_index("arm")
    hp_columns = [c for c in runs.columns if c.startswith("hp_")]
    summary = summary.join(labels[["method", "setting", *_cell(runs), *hp_columns]], on="arm")
    best = summary.loc[summary.groupby(["method", *_cell(runs)], sort=False)[f"{SELECTION_METRIC}_mean"].idxmax(), "arm"]
    summary["selected"] = summary["arm"].isin(set(best))
    return runs[runs["arm"].isin(set(best))].reset_index(drop=True), summary


def comparison_table(
    runs: pd.DataFrame,
    baselines: list[str],
    confidence: float = 0.95,
    significance: float = 0.05,
    correction: str = "holm",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per arm: mean/std/CI of every metric; per metric and baseline: paired difference and adjusted p.

    Each arm is paired, seed by seed, with the baseline methods' arms of its own cell. P-values are
    adjusted by ``correction`` over every comparison of a metric (all arms, cells and baselines).
    Returns the wide table and the tidy table of paired tests.
    """
    summary = summarise_by_group(runs, QUALITY_METRICS + COST_METRICS, "arm", confidence)
    labels = runs.drop_duplicates("arm").set_index("arm")[[c for c in ARM_LABELS if c != "arm" and c in runs]]
    table = summary.join(labels, on="arm")
    tests = _paired_tests_by_cell(runs, baselines, significance, confidence, correction)
    lookup = pd.concat([tests, _mirrored(tests, runs)], ignore_index=True)
    for baseline in baselines:
        for metric in TESTED_METRICS:
            part = lookup[(lookup["baseline_method"] == baseline) & (lookup["metric"] == metric)].set_index("method_arm")
            table[f"{metric}_diff_vs_{baseline}"] = table["arm"].map(part["diff_mean"])
            table[f"{metric}_p_vs_{baseline}"] = table["arm"].map(part["p_value"])
            table[f"{metric}_p_adjusted_vs_{baseline}"] = table["arm"].map(part["p_adjusted"])
            table[f"{metric}_within_noise_vs_{baseline}"] = table["arm"].map(part["within_noise"])
    return table, tests


def _mirrored(tests: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Baseline-vs-baseline tests seen from the other side (kd vs ce read as ce vs kd), for lookup only."""
    method_of_arm = runs.drop_duplicates("arm").set_index("arm")["method"]
    between = tests[tests["method_arm"].map(method_of_arm).isin(set(tests["baseline_method"]))].copy()
    between["method_arm"], between["baseline_arm"] = between["baseline_arm"], between["method_arm"]
    between["baseline_method"] = between["baseline_arm"].map(method_of_arm)
    between["diff_mean"] = -between["diff_mean"]
    between["diff_ci_low"], between["diff_ci_high"] = -between["diff_ci_high"], -between["diff_ci_low"]
    return between


def _paired_tests_by_cell(
    runs: pd.DataFrame, baselines: list[str], significance: float, confidence: float, correction: str
) -> pd.DataFrame:
    parts = []
    for _, cell in runs.groupby(_cell(runs), sort=False):
        arm_of_method = cell.drop_duplicates("method").set_index("method")["arm"]
        present = [arm_of_method[b] for b in baselines if b in arm_of_method]
        if not present:
            continue
        for metric in TESTED_METRICS:
            part = paired_tests(cell, metric, present, "none", significance, confidence, group="arm")
            parts.append(part.rename(columns={"method": "method_arm", "baseline": "baseline_arm"}))
    columns = ["method_arm", "baseline_arm", "metric", "n_pairs", "diff_mean", "diff_ci_low", "diff_ci_high", "p_value"]
    tests = pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
    method_of_arm = runs.drop_duplicates("arm").set_index("arm")["method"]
    tests["baseline_method"] = tests["baseline_arm"].map(method_of_arm)
    tests["p_adjusted"] = math.nan
    for metric, rows in tests.groupby("metric").groups.items():
        tests.loc[rows, "p_adjusted"] = adjust_p_values(tests.loc[rows, "p_value"].to_numpy(dtype=float), correction)
    tests["within_noise"] = [bool(math.isnan(p) or p >= significance) for p in tests["p_adjusted"]]
    return tests


def verdict(row: pd.Series, baseline: str, metric: str = "test_accuracy") -> str:
    """Plain words for the accuracy difference to a baseline, honest about noise."""
    if row.get("method") == baseline:
        return "baseline"
    p = row.get(f"{metric}_p_adjusted_vs_{baseline}", math.nan)
    diff = row.get(f"{metric}_diff_vs_{baseline}", math.nan)
    if p is None or pd.isna(p):
        return "not testable (fewer than 2 paired seeds)" if not pd.isna(diff) else "no baseline in its cell"
    if row[f"{metric}_within_noise_vs_{baseline}"]:
        return f"within noise (adj. p={p:.3f})"
    return f"{'better' if diff > 0 else 'worse'} (adj. p={p:.3f})"


def _pm(row: pd.Series, metric: str, scale: float = 1.0, digits: int = 2) -> str:
    mean, low = row[f"{metric}_mean"] * scale, row[f"{metric}_ci_low"] * scale
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {mean - low:.{digits}f}"


def headline_table(table: pd.DataFrame, baselines: list[str]) -> pd.DataFrame:
    """The comparison as people read it: one row per arm, formatted values, verdicts against baselines."""
    rows = []
    for _, row in table.iterrows():
        entry = {
            "arm": row["arm"],
            "seeds": int(row["seeds"]),
            "test acc % (best val)": _pm(row, "test_accuracy", 100),
            "test acc % (last epoch)": _pm(row, "last_test_accuracy", 100),
            "NLL": _pm(row, "test_nll", 1, 3),
            "ECE %": _pm(row, "test_ece", 100),
            "agreement %": _pm(row, "test_teacher_agreement", 100),
            "params (train)": f"{human(row['parameters_mean'])} ({human(row['training_parameters_mean'])})",
            "FLOPs": human(row["flops_mean"]),
            "latency ms": f"{row['latency_ms_mean']:.3f}",
            "train s": f"{row['train_time_s_mean']:.1f}",
        }
        for baseline in baselines:
            diff = row.get(f"test_accuracy_diff_vs_{baseline}", math.nan)
            entry[f"Δacc vs {baseline} (pp)"] = "" if pd.isna(diff) else f"{100 * diff:+.2f}"
            entry[f"vs {baseline}"] = verdict(row, baseline)
        rows.append(entry)
    return pd.DataFrame(rows)


def markdown_report(
    table: pd.DataFrame,
    teacher: dict[str, Any],
    data_summary: dict[str, Any],
    baselines: list[str],
    confidence: float,
    correction: str,
) -> str:
    """The comparison section of the study report, in Markdown."""
    sizes = data_summary["sizes"]
    lines = [
        "# Distillation study: method comparison",
        "",
        f"Dataset `{data_summary['dataset']}`: {sizes['train']} train / {sizes['val']} validation / "
        f"{sizes['test']} test images. Epochs and hyperparameter settings are selected on validation; "
        "test is evaluated once, for the selected setting only.",
        f"Teacher: test accuracy {100 * teacher['test_accuracy']:.2f}%, {human(teacher['parameters'])} parameters, "
        f"{human(teacher['flops'])} FLOPs, {teacher['latency_ms']:.3f} ms per image.",
        "",
        f"Values are mean ± half-width of the {100 * confidence:.0f}% Student-t confidence interval over seeds. "
        f"Differences to {', '.join(f'`{b}`' for b in baselines)} are paired by seed (two-sided paired t-test) "
        f"and {correction}-adjusted over all comparisons; a difference whose adjusted p-value is not below the "
        "significance level is reported as within noise.",
        "",
        headline_table(table, baselines).to_markdown(index=False),
        "",
    ]
    return "\n".join(lines)
