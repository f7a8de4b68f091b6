"""The report's data-size and data-quality sections and plots (numbers from analysis/data_factors.py)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from distillation_studies.analysis import data_factors as numbers
from distillation_studies.common.records import LABEL_FRACTION, LABEL_NOISE, TRANSFER_SET
from distillation_studies.report import plots
from distillation_studies.report.text import cell_description, with_ci


def _cell(row: pd.Series) -> str:
    return cell_description(row)


def _fraction_curve(table: pd.DataFrame) -> pd.DataFrame:
    """The label-fraction curve, each arm once: a full-label cell has no unlabelled rest, so it has no
    transfer-set variant to repeat it under."""
    curve = numbers.factor_curve(table, LABEL_FRACTION)
    return curve[~(curve[TRANSFER_SET] & (curve[LABEL_FRACTION] >= 1.0))].reset_index(drop=True)


def _series(curve: pd.DataFrame) -> pd.Series:
    """The row label of a curve point: its method, and its student when the study has several."""
    if curve["student"].nunique() > 1:
        return curve["method"] + " (" + curve["student"] + ")"
    return curve["method"]


def curve_markdown(curve: pd.DataFrame, factor: str) -> str:
    """One row per method, one column per data cell along ``factor`` (a transfer set is part of the cell,
    whether the method uses it or not): accuracy % mean ± CI half-width."""
    curve = curve.assign(series=_series(curve))
    if factor == LABEL_FRACTION:
        curve["column"] = [_labels(row) for _, row in curve.iterrows()]
        order = curve.sort_values([LABEL_FRACTION, TRANSFER_SET], ascending=[False, True])["column"]
    else:
        curve["column"] = [f"noise {100 * v:g}%" for v in curve[LABEL_NOISE]]
        order = curve.sort_values(LABEL_NOISE)["column"]
    columns = list(dict.fromkeys(order))
    rows = []
    for series, part in curve.groupby("series", sort=False):
        cells = {row["column"]: with_ci(numbers.METRIC, row["mean"], row["ci_low"]) for _, row in part.iterrows()}
        rows.append({"method": series, **{column: cells.get(column, "") for column in columns}})
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
    if table[LABEL_FRACTION].nunique() > 1 or table[TRANSFER_SET].any():
        lines += ["**Against label fraction**", "", curve_markdown(_fraction_curve(table), LABEL_FRACTION), ""]
    if table[LABEL_NOISE].nunique() > 1 or (table[LABEL_NOISE] > 0).any():
        lines += ["**Against label-noise rate** (training and validation labels; test labels clean)", ""]
        lines += [curve_markdown(numbers.factor_curve(table, LABEL_NOISE), LABEL_NOISE), ""]
        changed = numbers.labels_changed(table)
        if not changed.empty:
            lines.append(
                "Training labels changed by the noise model: "
                + ", ".join(f"{100 * r:g}% requested -> {100 * c:.2f}% changed" for r, c in zip(changed[LABEL_NOISE], changed["labels_changed"]))
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
        [LABEL_FRACTION, TRANSFER_SET, LABEL_NOISE, "student"], sort=False
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
        series = f"`{row['method']}`"
        situation = [f"noise {100 * row[LABEL_NOISE]:g}%"] if row[LABEL_NOISE] > 0 else []
        situation += [f"student {row['student']}"] if row["student"] != numbers.CELL_DEFAULTS["student"] else []
        where = f" ({', '.join(situation)})" if situation else ""
        ci = "" if math.isnan(row["gain_ci_low"]) else f" [{100 * row['gain_ci_low']:+.2f}, {100 * row['gain_ci_high']:+.2f}]"
        line = (
            f"- {series}{where}: {_labels(row)} -> {top} labels: {100 * row['gain']:+.2f} pp{ci} "
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


def _labels(row: pd.Series) -> str:
    """'5% labels + transfer set': the label side of a row's data cell."""
    return cell_description({LABEL_FRACTION: row[LABEL_FRACTION], TRANSFER_SET: row[TRANSFER_SET]})


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
    if numbers.with_cell_columns(table)[LABEL_FRACTION].nunique() > 1:
        gains = numbers.label_gains(table, confidence=confidence, baseline=baselines[0] if baselines else "ce")
        sections.append((LABEL_GAINS_TITLE, label_gains_markdown(gains, confidence)))
    if "ce" in baselines:
        gains = numbers.distillation_gains(table, tests, "ce", significance=significance)
        sections.append(("Where distillation helps", gains_markdown(gains, "ce", correction, significance)))
    return sections


def data_factor_figures(table: pd.DataFrame) -> dict[str, Figure]:
    """Accuracy against label fraction (one colour per method, hollow markers for transfer-set cells) and
    against noise rate (one line per method)."""
    table = numbers.with_cell_columns(table)
    figures: dict[str, Figure] = {}
    if table[LABEL_FRACTION].nunique() > 1:
        figures["data_size.png"] = data_size_plot(_fraction_curve(table))
    if table[LABEL_NOISE].nunique() > 1:
        rows = table[~table[TRANSFER_SET]]
        if (rows[LABEL_FRACTION] == 1.0).any():
            rows = rows[rows[LABEL_FRACTION] == 1.0]
        figure = plots.sensitivity_curve(rows.assign(noise_percent=100 * rows[LABEL_NOISE]), "noise_percent", group_column="method")
        figure.axes[0].set_xlabel("training labels corrupted, %")
        figure.axes[0].set_title("Test accuracy against label noise (test labels clean)")
        figures["label_noise.png"] = figure
    return figures


def data_size_plot(curve: pd.DataFrame) -> Figure:
    """Accuracy (mean ± CI) against the label fraction, one colour per method; filled markers for cells
    without a transfer set, hollow ones for cells with one. A line joins only points of one method and
    one kind of cell (never a transfer-set cell to a full-label one); methods are nudged apart on x so
    their error bars do not hide each other."""
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    curve = curve.assign(series=_series(curve))
    colours = plots.method_colours(curve["series"])
    nudge = {series: 1.0 + 0.03 * (i - (len(colours) - 1) / 2) for i, series in enumerate(colours)}
    for (series, transfer), part in curve.groupby(["series", TRANSFER_SET], sort=False):
        part = part.sort_values(LABEL_FRACTION)
        mean = 100 * part["mean"].to_numpy(dtype=float)
        low, high = (np.clip(100 * part[c].to_numpy(dtype=float), 0.0, 100.0) for c in ("ci_low", "ci_high"))
        below, above = np.nan_to_num(mean - low), np.nan_to_num(high - mean)  # drawn within 0-100%
        axis.errorbar(
            100 * part[LABEL_FRACTION].to_numpy(dtype=float) * nudge[series], mean, yerr=[below, above],
            fmt="o" + ("-" if len(part) > 1 else ""), capsize=4, color=colours[series],
            markerfacecolor="white" if transfer else colours[series], markersize=7,
        )
    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=s) for s, c in colours.items()]
    if curve[TRANSFER_SET].any():
        handles.append(Line2D([], [], color="gray", marker="o", markerfacecolor="white", linestyle="", label="hollow: cell with a transfer set"))
    axis.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    axis.set_xscale("log")
    fractions = sorted(100 * curve[LABEL_FRACTION].unique())
    axis.set_xticks(fractions, [f"{f:g}" for f in fractions])
    axis.minorticks_off()
    axis.set_xlabel("labelled training data, % (log scale)")
    axis.set_ylabel("test accuracy, %")
    axis.grid(alpha=0.3)
    axis.set_title("Test accuracy against label fraction (error bars: CI over seeds)")
    figure.tight_layout()
    return figure
