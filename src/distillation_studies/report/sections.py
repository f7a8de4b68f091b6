"""The study report's sections in Markdown, rendered from the analysis results (never computed here).

Section bodies carry no heading of their own above level 3: the report assembles them under one
``#`` title with one ``##`` heading per section, so every heading has one level.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from distillation_studies.common.records import LABEL_FRACTION
from distillation_studies.analysis.comparison import baseline_pairs, family_sizes
from distillation_studies.analysis.metrics import REPORT_COSTS, REPORT_QUALITY, TESTED_METRICS, reported_metric
from distillation_studies.analysis.stats import Statistics
from distillation_studies.common.names import PLOTS_FOLDER
from distillation_studies.analysis.recommend import truthy
from distillation_studies.report.text import NO_INTERVAL_WHY, human, p_value, shown, unit, verdict, with_ci

CORRECTIONS = {"holm": "Holm-adjusted", "bh": "Benjamini-Hochberg-adjusted", "none": "unadjusted"}


def _table(rows: list[dict[str, Any]]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def family_text(tests: pd.DataFrame, metric: str) -> str:
    """The sizes of a metric's per-cell families: '3 pairs' (one cell), '3 pairs in each of 2 cells', '1 to 3 pairs per cell'."""
    sizes = family_sizes(tests, metric)
    if not sizes:
        return "0 pairs"
    if len(sizes) == 1:
        return f"{sizes[0]} pairs"
    if sizes[0] == sizes[-1]:
        return f"{sizes[0]} pairs in each of {len(sizes)} cells"
    return f"{sizes[-1]} to {sizes[0]} pairs per cell"


def statistics_sentence(statistics: Statistics, tests: pd.DataFrame, metric: str = "test_accuracy") -> str:
    """How to read every interval, difference and verdict of the report (one sentence for all outputs)."""
    return (
        f"Values are mean ± half-width of the {100 * statistics.confidence:.0f}% Student-t confidence interval "
        "over seeds. A difference is *row arm − reference arm*, paired by seed (two-sided paired t-test), between "
        "arms of the same data cell (label fraction, transfer set, label noise, student); p-values are "
        f"{CORRECTIONS[statistics.correction]} over the family of every pair of arms of a metric within that cell "
        f"({family_text(tests, metric)} for {metric}), the same family the recommendation reads. A difference "
        f"whose adjusted p-value is not below {statistics.significance} is within noise. {NO_INTERVAL_WHY}."
    )


def teacher_flags(teacher: Mapping[str, Any], table: pd.DataFrame) -> list[str]:
    """Warnings about the teacher itself: an imported one below its floor, or any below the student
    trained alone (``ce``), which distillation can only pull down."""
    flags = [f"**Teacher flagged:** {teacher['flag']}."] if teacher.get("flag") else []
    alone = table.loc[table["method"] == "ce", "test_accuracy_mean"] if {"method", "test_accuracy_mean"} <= set(table) else []
    if len(alone) and teacher["test_accuracy"] < max(alone):
        flags.append(
            f"**Teacher flagged:** its test accuracy {100 * teacher['test_accuracy']:.2f}% is below the student "
            f"trained alone (`ce`, {100 * max(alone):.2f}%): distilling from it copies a weaker model."
        )
    return ["", *flags] if flags else []


def comparison_markdown(
    table: pd.DataFrame, tests: pd.DataFrame, teacher: Mapping[str, Any], data_summary: Mapping[str, Any],
    statistics: Statistics,
) -> str:
    """The comparison section: the "is it noise?" table first, then the other metrics and costs."""
    sizes = data_summary["sizes"]
    lines = [
        f"Dataset `{data_summary['dataset']}`: {sizes['train']} train / {sizes['val']} validation / "
        f"{sizes['test']} test images. Epochs and hyperparameter settings are selected on validation; "
        "test is evaluated once, for the selected setting only. "
        f"Teacher: test accuracy {100 * teacher['test_accuracy']:.2f}%, {human(teacher['parameters'])} parameters, "
        f"{human(teacher['flops'])} FLOPs, {teacher['latency_ms']:.3f} ms per image.",
        *teacher_flags(teacher, table),
        "",
        statistics_sentence(statistics, tests),
        "",
        "### Test accuracy against the baselines",
        "",
        _table(noise_rows(table, statistics.baselines)),
        "",
        "### Other metrics and costs",
        "",
        _table(cost_rows(table)),
    ]
    return "\n".join(lines)


def noise_rows(table: pd.DataFrame, baselines: tuple[str, ...] | list[str], metric: str = "test_accuracy") -> list[dict]:
    """One row per arm: its mean, and per baseline the signed difference with its interval and the verdict."""
    rows = []
    for _, row in table.iterrows():
        entry = {
            "arm": row["arm"] if truthy(row.get("usable", True)) else f"{row['arm']} (FAILED: not ranked)",
            "seeds": str(int(row["seeds"])),
            f"{reported_metric(metric).label}, {unit(metric)}": with_ci(metric, row[f"{metric}_mean"], row[f"{metric}_ci_low"]),
        }
        for baseline in baselines:
            diff, low = row.get(f"{metric}_diff_vs_{baseline}", math.nan), row.get(f"{metric}_diff_ci_low_vs_{baseline}", math.nan)
            entry[f"Δ vs {baseline}, {unit(metric, True)}"] = "" if pd.isna(diff) else with_ci(metric, diff, low, signed=True)
            entry[f"vs {baseline}"] = verdict(row[f"{metric}_verdict_vs_{baseline}"], row.get(f"{metric}_p_adjusted_vs_{baseline}"))
        rows.append(entry)
    return rows


def cost_rows(table: pd.DataFrame) -> list[dict]:
    """One row per arm: the other quality metrics and the costs, each in its shown unit."""
    rows = []
    for _, row in table.iterrows():
        entry = {"arm": row["arm"]}
        for metric in REPORT_QUALITY:
            if f"{metric}_mean" in row:
                entry[_header(metric)] = with_ci(metric, row[f"{metric}_mean"], row[f"{metric}_ci_low"])
        entry["params (incl. adapters)"] = f"{human(row['parameters_mean'])} ({human(row['training_parameters_mean'])})"
        for metric in REPORT_COSTS:
            entry[_header(metric)] = shown(metric, row[f"{metric}_mean"])
        rows.append(entry)
    return rows


def _header(metric: str) -> str:
    spec = reported_metric(metric)
    return f"{spec.label}, {spec.unit}" if spec.unit else spec.label


def paired_tests_markdown(tests: pd.DataFrame, statistics: Statistics) -> str:
    """The tests the comparison table reads (each arm against each baseline of its cell), one precision per metric."""
    rows = []
    for _, test in baseline_pairs(tests, statistics.baselines).iterrows():
        metric = test["metric"]
        rows.append({
            "metric": reported_metric(metric).label,
            "arm": test["arm"],
            "vs": test["reference"],
            "pairs": str(int(test["n_pairs"])),
            "Δ (arm − ref.)": f"{shown(metric, test['diff_mean'], signed=True)} {unit(metric, True)}".strip(),
            f"{100 * statistics.confidence:.0f}% CI": f"[{shown(metric, test['diff_ci_low'], True)}, {shown(metric, test['diff_ci_high'], True)}]",
            "p": p_value(test["p_value"]),
            "adj. p": p_value(test["p_adjusted"]),
            "verdict": verdict(test["verdict"]),
        })
    sizes = ", ".join(f"{reported_metric(m).label} {family_text(tests, m)}" for m in TESTED_METRICS if (tests["metric"] == m).any())
    lead = (
        f"Each arm against each baseline of its cell. Adjusted over every pair of arms of the metric within the "
        f"cell (family sizes: {sizes}); `paired_tests.csv` holds every family, every pair in both directions read by "
        "mirroring (the difference changes sign). Arms of different cells are never tested against each other here."
    )
    return lead + "\n\n" + (_table(rows) if rows else "No arm shares a cell with a baseline.")


def sensitivity_markdown(sensitivity: pd.DataFrame) -> str:
    rows = []
    for _, row in sensitivity.iterrows():
        rows.append({
            "arm": row["arm"], "method": row["method"], "student": row["student"],
            "label fraction": f"{row[LABEL_FRACTION]:g}", "seeds": str(int(row["seeds"])),
            "validation acc, %": with_ci("best_val_accuracy", row["best_val_accuracy_mean"], row["best_val_accuracy_ci_low"]),
            "selected": "yes" if row["selected"] else "",
        })
    return _table(rows)


def protocol_markdown(card: Mapping[str, Any]) -> str:
    lines = [f"- **{key}**: `{value}`" for key, value in card.items() if key not in ("methods", "package_versions")]
    lines.append("- **package_versions**: " + ", ".join(f"{k} {v}" for k, v in card["package_versions"].items()))
    return "\n".join(lines)


def _cell(mean: float, low: float, digits: int = 2) -> str:
    if math.isnan(mean):
        return ""
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {mean - low:.{digits}f}"


def reference_markdown(table: pd.DataFrame, confidence: float = 0.95) -> str:
    """The "Reproduced vs published" section: how to read it, then the table."""
    lines = [
        f"Top-1 test accuracy (%) of this study next to the published number for the same CIFAR-100 "
        f"teacher/student pair and method. Reproduced: mean ± half-width of the {100 * confidence:.0f}% "
        "confidence interval over seeds, at the epoch chosen on validation (the last-epoch mean is "
        "shown too); Δ = reproduced − published, in percentage points. Read Δ with the protocols in "
        "mind: the published runs train on all 50,000 training images, while this study holds "
        "a validation split out of them, and the reference code (RepDistiller, mdistiller) evaluates "
        "the test set after every epoch and keeps the best, which favours the published number. "
        "The teacher row is a single run.",
        "",
    ]
    rows = []
    for _, row in table.iterrows():
        rows.append({
            "method": row["method"],
            "arm": row["arm"],
            "seeds": int(row["seeds"]),
            "reproduced top-1 %": _cell(float(row["reproduced_top1_mean"]), float(row["reproduced_top1_ci_low"])),
            "last epoch %": _cell(float(row["reproduced_last_epoch_top1_mean"]), math.nan),
            "published top-1 %": f"{float(row['published_top1']):.2f}",
            "Δ pp": "" if math.isnan(float(row["delta_pp"])) else f"{float(row['delta_pp']):+.2f}",
            "published: epochs, selection": row.get("published_selection", ""),
            "source": row["source"],
        })
    lines.append(_table(rows))  # keeps "+0.50", "72.50" as written
    protocols = list(dict.fromkeys(str(p) for p in table["protocol"]))
    lines += ["", "Published protocols:", "", *[f"- {p}" for p in protocols]]
    return "\n".join(lines)


def capacity_markdown(report: Mapping[str, Any]) -> str:
    """The capacity-gap report (teacher logits, teacher/student sizes, the layers each method reads)."""
    teacher = report["teacher"]
    lines = [
        f"Measured before students are trained. Teacher `{teacher['model']['name']}`: {teacher['parameters']:,} "
        f"parameters, {teacher['flops']:,} FLOPs, test accuracy {100 * teacher['test_accuracy']:.2f}%, "
        f"ECE {100 * teacher['test_ece']:.2f}%, NLL {teacher['test_nll']:.3f}. Logit scale (std across classes) "
        f"{teacher['logits']['logit_std_mean']:.2f}, top-2 logit gap {teacher['logits']['logit_gap_top2_mean']:.2f}.",
        "",
        "| temperature | soft-target entropy (nats) | normalised entropy |",
        "|---:|---:|---:|",
    ]
    for temperature, values in teacher["logits"]["soft_targets"].items():
        lines.append(f"| {temperature} | {values['entropy_nats']:.3f} | {values['normalised_entropy']:.3f} |")
    lines += ["", "| student | parameters | FLOPs | teacher/student parameters | teacher/student FLOPs |", "|---|---:|---:|---:|---:|"]
    for name, student in report["students"].items():
        lines.append(
            f"| {name} (`{student['model']['name']}`) | {student['parameters']:,} | {student['flops']:,} | "
            f"{student['parameter_ratio']:.1f}x | {student['flop_ratio']:.1f}x |"
        )
    methods = report.get("applicability", {}).get("methods", {})
    if methods:
        lines += ["", "| method | student layers | teacher layers |", "|---|---|---|"]
        first_student = next(iter(report["students"].values()))["layer_shapes"]
        for method, layers in methods.items():
            student = ", ".join(f"`{l}` {tuple(first_student.get(l, []))}" for l in layers["student_layers"]) or "logits"
            teacher_layers = ", ".join(f"`{l}` {tuple(teacher['layer_shapes'].get(l, []))}" for l in layers["teacher_layers"]) or "logits"
            lines.append(f"| {method} | {student} | {teacher_layers} |")
    return "\n".join(lines) + "\n"


def plot_links(names: list[str]) -> str:
    """Markdown image links to the plots, relative to the report: ``plots/<name>``."""
    return "\n\n".join(f"![{name}]({PLOTS_FOLDER}/{name})" for name in names)


def report_markdown(title: str, sections: list[tuple[str, str]], plot_names: list[str]) -> str:
    """One ``#`` title, one ``##`` per section, the plots last."""
    parts = [f"# {title}", *(f"## {heading}\n\n{body.strip()}" for heading, body in sections)]
    if plot_names:
        parts.append("## Plots\n\n" + plot_links(plot_names))
    return "\n\n".join(parts) + "\n"
