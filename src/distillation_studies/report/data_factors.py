"""The report's data-size and data-quality sections and plots (numbers from analysis/data_factors.py)."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from distillation_studies.analysis import data_factors as numbers
from distillation_studies.report import plots
from distillation_studies.report.text import with_ci


def _cell(row: pd.Series) -> str:
    parts = [f"{100 * row['label_fraction']:g}% labels"]
    if row["label_fraction"] < 1.0:
        parts.append("+ transfer set" if row["transfer_set"] else "no transfer set")
    parts.append(f"noise {100 * row['label_noise']:g}%")
    if row.get("student", "student") != "student":
        parts.append(f"student {row['student']}")
    return ", ".join(parts)


def curve_markdown(curve: pd.DataFrame, factor: str) -> str:
    """One row per method (and transfer set), one column per factor value: accuracy % mean ± CI half-width."""
    curve = curve.assign(series=[f"{m} + transfer set" if t else m for m, t in zip(curve["method"], curve["transfer_set"])])
    if curve["student"].nunique() > 1:
        curve["series"] = curve["series"] + " (" + curve["student"] + ")"
    values = sorted(curve[factor].unique(), reverse=factor == "label_fraction")
    label = {"label_fraction": "labels", "label_noise": "noise"}[factor]
    rows = []
    for series, part in curve.groupby("series", sort=False):
        row = {"method": series}
        for value in values:
            cell = part[part[factor] == value]
            row[f"{label} {100 * value:g}%"] = "" if cell.empty else with_ci(numbers.METRIC, cell["mean"].iloc[0], cell["ci_low"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def data_factors_markdown(table: pd.DataFrame, confidence: float) -> str:
    """Accuracy against label fraction (with and without transfer set) and against label-noise rate."""
    table = numbers.with_cell_columns(table)
    lines = [
        f"Test accuracy %, mean ± half-width of the {100 * confidence:.0f}% CI over seeds. A *transfer set* "
        "keeps the unlabelled rest of the training split: label terms see the labelled samples only, teacher "
        "terms every sample; `ce` of such a cell trains on the labelled samples alone (equal labels).",
        "",
    ]
    if table["label_fraction"].nunique() > 1 or table["transfer_set"].any():
        lines += ["**Against label fraction**", "", curve_markdown(numbers.factor_curve(table, "label_fraction"), "label_fraction"), ""]
    if table["label_noise"].nunique() > 1 or (table["label_noise"] > 0).any():
        lines += ["**Against label-noise rate** (training and validation labels; test labels clean)", ""]
        lines += [curve_markdown(numbers.factor_curve(table, "label_noise"), "label_noise"), ""]
        changed = numbers.labels_changed(table)
        if not changed.empty:
            lines.append(
                "Training labels changed by the noise model: "
                + ", ".join(f"{100 * r:g}% requested -> {100 * c:.2f}% changed" for r, c in zip(changed["label_noise"], changed["labels_changed"]))
                + "."
            )
            lines.append("")
    return "\n".join(lines)


def gains_markdown(gains: pd.DataFrame, baseline: str, correction: str, significance: float) -> str:
    """Per data cell, each method's paired gain over the baseline at equal labels, and its adjusted p-value."""
    if gains.empty:
        return f"No cell has a `{baseline}` arm to pair with, so no gain can be reported."
    lines = [
        f"Gain = paired test-accuracy difference to `{baseline}` of the same cell (same labelled samples, same "
        f"seeds), in points, with its CI; p is {correction}-adjusted over the pairs of arms of the cell (the "
        f"recommendation's family). **helps** / **hurts**: "
        f"adjusted p < {significance:g}; otherwise within noise.",
        "",
    ]
    for (fraction, transfer, noise, student), part in gains.groupby(
        ["label_fraction", "transfer_set", "label_noise", "student"], sort=False
    ):
        helped = part[part["helps"]]["method"].tolist()
        verdict = f"distillation helps: {', '.join(f'`{m}`' for m in helped)}" if helped else "no method beats `ce` beyond noise"
        lines.append(f"- **{_cell(part.iloc[0])}**: {verdict}")
        for _, row in part.iterrows():
            tag = "helps" if row["helps"] else "hurts" if row["hurts"] else "within noise"
            ci = "" if math.isnan(row["gain_ci_low"]) else f" [{100 * row['gain_ci_low']:+.2f}, {100 * row['gain_ci_high']:+.2f}]"
            lines.append(
                f"  - `{row['method']}`: {100 * row['gain']:+.2f} pp{ci} over {row['seeds']} seeds, "
                f"adj. p = {row['p_adjusted']:.3g} ({tag})"
            )
    return "\n".join(lines)


LABEL_GAINS_TITLE = "What more labels would buy (across cells)"


def label_gains_markdown(gains: pd.DataFrame, confidence: float) -> str:
    """Per method series, the accuracy the largest label fraction adds over each smaller one: a
    comparison *across* data cells, said to be one, and kept out of the recommendation's families."""
    if gains.empty:
        return "No method was run at the study's largest label fraction as well as below it, so nothing is compared."
    top = f"{100 * gains['reference_fraction'].iloc[0]:g}%"
    lines = [
        f"Across data cells: how much test accuracy the same method gains with {top} of the labels instead of "
        f"fewer, in points (mean at {top} − mean at the smaller fraction), and where the arm stands against the "
        f"baseline with {top} of the labels (arm − baseline), each with the {100 * confidence:.0f}% Welch "
        "interval and an unadjusted Welch p-value. Different cells train on different samples, so seeds are not "
        "paired, and these differences are not in the per-cell families of the paired tests or the recommendation: "
        "they say what collecting more labels would buy, while the recommendation says what to use with the labels "
        "you have.",
        "",
    ]
    for _, row in gains.iterrows():
        series = f"`{row['method']}`" + (" + transfer set" if row["transfer_set"] else "")
        situation = [f"noise {100 * row['label_noise']:g}%"] if row["label_noise"] > 0 else []
        situation += [f"student {row['student']}"] if row["student"] != numbers.CELL_DEFAULTS["student"] else []
        where = f" ({', '.join(situation)})" if situation else ""
        ci = "" if math.isnan(row["gain_ci_low"]) else f" [{100 * row['gain_ci_low']:+.2f}, {100 * row['gain_ci_high']:+.2f}]"
        line = (
            f"- {series}{where}: {100 * row['label_fraction']:g}% -> {top} labels: {100 * row['gain']:+.2f} pp{ci} "
            f"({row['seeds']} vs {row['reference_seeds']} seeds, {_welch_p(row['p_value'])})"
        )
        if isinstance(row["baseline_arm"], str) and row["baseline_arm"] != row["reference_arm"]:
            to = "" if math.isnan(row["to_baseline_ci_low"]) else f" [{100 * row['to_baseline_ci_low']:+.2f}, {100 * row['to_baseline_ci_high']:+.2f}]"
            line += (
                f"; against `{row['baseline_arm']}` ({top} labels): {100 * row['to_baseline']:+.2f} pp{to} "
                f"({_welch_p(row['to_baseline_p_value'])})"
            )
        lines.append(line)
    return "\n".join(lines)


def _welch_p(p: float) -> str:
    return "p not testable (fewer than 2 seeds)" if math.isnan(p) else f"p = {p:.3g}"


def data_factor_sections(
    table: pd.DataFrame, tests: pd.DataFrame, baselines: list[str], confidence: float, correction: str, significance: float
) -> list[tuple[str, str]]:
    """The report sections: "Data size and quality" when the study varies them, "What more labels would
    buy (across cells)" when it has more than one label fraction, and "Where distillation helps"
    whenever ``ce`` is a baseline."""
    sections = []
    if numbers.has_data_factors(table):
        sections.append(("Data size and quality", data_factors_markdown(table, confidence)))
    if numbers.with_cell_columns(table)["label_fraction"].nunique() > 1:
        gains = numbers.label_gains(table, confidence=confidence, baseline=baselines[0] if baselines else "ce")
        sections.append((LABEL_GAINS_TITLE, label_gains_markdown(gains, confidence)))
    if "ce" in baselines:
        gains = numbers.distillation_gains(table, tests, "ce", significance=significance)
        sections.append(("Where distillation helps", gains_markdown(gains, "ce", correction, significance)))
    return sections


def data_factor_figures(table: pd.DataFrame) -> dict[str, Figure]:
    """Accuracy against label fraction (one line per method and transfer set) and against noise rate."""
    table = numbers.with_cell_columns(table)
    figures: dict[str, Figure] = {}
    series = [f"{m} + transfer set" if t else m for m, t in zip(table["method"], table["transfer_set"])]
    labelled = table.assign(series=series)
    if table["label_fraction"].nunique() > 1:
        rows = numbers.fraction_rows(table)
        rows = rows.assign(series=[f"{m} + transfer set" if t else m for m, t in zip(rows["method"], rows["transfer_set"])])
        figure = plots.label_fraction_curve(rows, "label_fraction", group_column="series")
        figure.axes[0].set_title("Accuracy against label fraction, with and without transfer set (error bars: CI over seeds)", fontsize=9)
        figures["data_size.png"] = figure
    if table["label_noise"].nunique() > 1:
        rows = labelled[~labelled["transfer_set"]]
        if (rows["label_fraction"] == 1.0).any():
            rows = rows[rows["label_fraction"] == 1.0]
        figure = plots.sensitivity_curve(rows.assign(noise_percent=100 * rows["label_noise"]), "noise_percent", group_column="series")
        figure.axes[0].set_xlabel("training labels corrupted, %")
        figure.axes[0].set_title("Accuracy against label noise (test labels clean; error bars: CI over seeds)", fontsize=9)
        figures["label_noise.png"] = figure
    return figures
