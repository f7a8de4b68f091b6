"""Figures for the study reports. Every function returns a matplotlib Figure; none shows or saves it.

Accuracy-like columns (any name containing ``accuracy``) are drawn in percent. Table inputs follow
the comparison table's layout: ``<metric>_mean`` with ``<metric>_ci_low`` / ``<metric>_ci_high``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from distillation_studies.analysis.comparison import CELL as CELL_COLUMNS  # noqa: E402
from distillation_studies.analysis.metrics import LOG_AXIS_METRICS  # noqa: E402
from distillation_studies.common.records import LABEL_FRACTION  # noqa: E402
from distillation_studies.analysis.pareto import TIMED_COSTS, pareto_mask, within_noise  # noqa: E402
from distillation_studies.report.text import cell_description, human  # noqa: E402

COUNT_COSTS = LOG_AXIS_METRICS  # drawn on a log axis: from the metrics table
MAX_RELIABILITY_PANELS = 6
PARETO_FRONT_GID = "pareto_front"
MAX_ANNOTATED_CLASSES = 30

History = list[dict[str, float]]


# --------------------------------------------------------------------------------------------- helpers


def _nan(value: Any) -> float:
    """Float, with None (JSON's missing value) as NaN."""
    return math.nan if value is None else float(value)


def _scale(column: str) -> float:
    return 100.0 if "accuracy" in column else 1.0


def _axis_label(column: str) -> str:
    base = _base(column)
    return f"{base.replace('_', ' ')}{', %' if 'accuracy' in base else ''}"


def _base(column: str) -> str:
    return column[: -len("_mean")] if column.endswith("_mean") else column


def _resolve(table: pd.DataFrame, column: str) -> str:
    """A table column given either its full name or its metric name (``flops`` -> ``flops_mean``)."""
    if column in table.columns:
        return column
    if f"{column}_mean" in table.columns:
        return f"{column}_mean"
    raise KeyError(f"column {column!r} (or {column}_mean) not in table; columns: {list(table.columns)}")


def _errors(table: pd.DataFrame, quality_column: str) -> np.ndarray:
    """Asymmetric (2, n) error bars from the CI columns, in plotting units; zero where absent or NaN;
    accuracy intervals clipped to 0-100%."""
    scale = _scale(quality_column)
    base = _base(quality_column)
    mean = table[quality_column].to_numpy(dtype=float)
    low = table.get(f"{base}_ci_low", pd.Series(np.nan, index=table.index)).to_numpy(dtype=float)
    high = table.get(f"{base}_ci_high", pd.Series(np.nan, index=table.index)).to_numpy(dtype=float)
    if "accuracy" in base:  # a t interval over 2 seeds can reach past 0-100%: draw only what is possible
        low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
    below = np.where(np.isnan(low), 0.0, mean - low) * scale
    above = np.where(np.isnan(high), 0.0, high - mean) * scale
    return np.vstack([np.clip(below, 0, None), np.clip(above, 0, None)])


def _label(row: pd.Series, column: str = "method") -> str:
    return str(row[column]) if column in row.index else str(row.name)


# ------------------------------------------------------------------------------------------ captions

PARETO_NOTE = (
    "Colour: method; marker: data cell; vertical bars: confidence interval of the mean over seeds; ringed: "
    "on the Pareto front of its own data cell."
)
TIMED_NOTE = (
    " Horizontal bars: the cost's interval over seeds. Costs whose intervals overlap count as equal, and arms "
    "deploying the same network share its latency, so a difference within run-to-run noise puts no arm on the front."
)


def figure_title(figure: plt.Figure) -> str:
    """The title a figure shows (its suptitle, else its first panel's), on one line."""
    title = figure.get_suptitle() or (figure.axes[0].get_title() if figure.axes else "")
    return " ".join(title.split())


def figure_caption(name: str, figure: plt.Figure) -> str:
    """What a figure shows, for its caption: its title, and for a Pareto plot how to read its marks."""
    caption = figure_title(figure).rstrip(".") + "."
    if name.startswith("pareto_"):
        caption += " " + PARETO_NOTE + (TIMED_NOTE if _base(name.removeprefix("pareto_").removesuffix(".png")) in TIMED_COSTS else "")
    return caption


def plots_markdown(figures: dict[str, plt.Figure], flat: dict[str, float], folder: str = "plots") -> str:
    """The report's plots: each image (``<folder>/<name>``, beside the report) followed in its paragraph by
    its numbered caption, then one line naming the costs left out because every arm shares them."""
    blocks = [
        f"![{figure_title(figure)}]({folder}/{name})\n*Figure {n}. {figure_caption(name, figure)}*"
        for n, (name, figure) in enumerate(figures.items(), 1)
    ]
    if flat:
        same = "; ".join(f"{cost_name(cost).split(',')[0]} is {human(value)}" for cost, value in flat.items())
        blocks.append(f"Not plotted, because every arm has the same value: {same}.")
    return "\n\n".join(blocks)


# ----------------------------------------------------------------------------------- learning curves


def seed_mean(histories: Sequence[History], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and standard deviation over seeds of one history column, aligned by epoch.

    Histories of different lengths are averaged over the seeds that reached each epoch; missing
    values are ignored. The standard deviation is 0 where a single seed contributes.
    """
    by_epoch: dict[int, list[float]] = {}
    for history in histories:
        for row in history:
            value = _nan(row.get(key))
            if not math.isnan(value):
                by_epoch.setdefault(int(row["epoch"]), []).append(value)
    epochs = np.array(sorted(by_epoch), dtype=float)
    means = np.array([np.mean(by_epoch[int(e)]) for e in epochs])
    stds = np.array([np.std(by_epoch[int(e)], ddof=1) if len(by_epoch[int(e)]) > 1 else 0.0 for e in epochs])
    return epochs, means, stds


def learning_curves(histories: dict[str, Sequence[History] | History], table: pd.DataFrame | None = None) -> plt.Figure:
    """Validation accuracy (%) and total training loss per epoch, one line per arm label.

    ``histories`` maps an arm label to its seeds' histories (a list of history-row lists; a single
    history is accepted too). With several seeds the line is the per-epoch mean and the band ±1 std.
    With ``table`` (the comparison table: ``arm``, ``method`` and the cell columns) lines are coloured by
    method and dashed by data cell, as the points of the Pareto plots are; otherwise one colour per label.
    """
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = ((axes[0], "val_accuracy", "validation accuracy, %", 100.0), (axes[1], "loss_total", "training loss (total)", 1.0))
    styles = _line_styles(list(histories), table)
    for label, runs in histories.items():
        runs = [runs] if runs and isinstance(runs[0], dict) else list(runs)  # type: ignore[list-item]
        color, linestyle = styles[label]
        for axis, key, _, scale in panels:
            epochs, mean, std = seed_mean(runs, key)
            if not len(epochs):
                continue
            suffix = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
            axis.plot(epochs, scale * mean, color=color, linestyle=linestyle, marker="." if len(epochs) < 30 else None, label=f"{label}{suffix}")
            if len(runs) > 1:
                axis.fill_between(epochs, scale * (mean - std), scale * (mean + std), color=color, alpha=0.2, linewidth=0)
    for axis, _, ylabel, _ in panels:
        axis.set_xlabel("epoch")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    if histories:
        axes[0].legend(fontsize=8, loc="lower right")
    figure.suptitle("Learning curves (line: mean over seeds; band: ±1 std)")
    figure.tight_layout()
    return figure


def _line_styles(labels: list[str], table: pd.DataFrame | None) -> dict[str, tuple[str, str]]:
    """(colour, line style) per arm label: by method and data cell when ``table`` names them, else by label."""
    if table is None or not {"arm", "method"} <= set(table.columns) or not set(labels) <= set(table["arm"]):
        return {label: (f"C{i % 10}", "-") for i, label in enumerate(labels)}
    rows = table.set_index("arm")
    cells = dict(zip(table["arm"], _cells(table)))
    colours = method_colours(rows.loc[labels, "method"].astype(str))
    dashes = {cell: ("-", "--", ":", "-.")[i % 4] for i, cell in enumerate(dict.fromkeys(cells[label] for label in labels))}
    return {label: (colours[str(rows.loc[label, "method"])], dashes[cells[label]]) for label in labels}


# ---------------------------------------------------------------------------------------- pareto

COST_NAMES = {
    "parameters": "deployed parameters",
    "training_parameters": "trained parameters (incl. adapters)",
    "flops": "forward FLOPs per image",
    "latency_ms": "CPU latency, ms (batch 1)",
    "train_time_s": "training time per run, s",
}
CELL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LABEL_DISTANCE = 0.05  # points closer than this (axes fraction) share one label


def cost_name(column: str) -> str:
    """'latency_ms_mean' -> 'CPU latency, ms (batch 1)': what an axis or a sentence calls a cost."""
    return COST_NAMES.get(_base(column), _axis_label(column))


def pareto_title(cost_column: str, quality_column: str = "test_accuracy_mean") -> str:
    """One title per cost axis: 'Test accuracy against CPU latency, ms (batch 1)'."""
    quality = _base(quality_column).replace("_", " ")
    return f"{quality[:1].upper()}{quality[1:]} against {cost_name(cost_column).split(',')[0]}"


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, by name order: every plot of a report colours a method alike."""
    return {method: f"C{i % 10}" for i, method in enumerate(sorted(set(methods)))}


def _cells(table: pd.DataFrame) -> list[str]:
    """Each row's data cell in words ('all labels', '10% labels + transfer set'); '' without cell columns."""
    if LABEL_FRACTION not in table.columns:
        return [""] * len(table)
    return [cell_description({c: row[c] for c in CELL_COLUMNS if c in row.index}) for _, row in table.iterrows()]


def _cost_errors(table: pd.DataFrame, cost_column: str) -> np.ndarray | None:
    """Horizontal error bars of a timed cost (its interval over seeds); None for counted costs."""
    if _base(cost_column) not in TIMED_COSTS or f"{_base(cost_column)}_ci_low" not in table.columns:
        return None
    mean = table[cost_column].to_numpy(dtype=float)
    low = np.clip(table[f"{_base(cost_column)}_ci_low"].to_numpy(dtype=float), 0.0, None)  # no negative time
    high = table[f"{_base(cost_column)}_ci_high"].to_numpy(dtype=float)
    return np.vstack([np.nan_to_num(np.clip(mean - low, 0, None)), np.nan_to_num(np.clip(high - mean, 0, None))])


def _points(axis: plt.Axes, table: pd.DataFrame, cost_column: str, quality_column: str,
            front: np.ndarray) -> list[tuple[float, float, str]]:
    """Each row as one point with its error bars: colour by method, marker by cell; ringed on the front."""
    scale = _scale(quality_column)
    errors, cost_errors = _errors(table, quality_column), _cost_errors(table, cost_column)
    methods = [_label(row, "method") for _, row in table.iterrows()]
    colours, cells = method_colours(methods), _cells(table)
    markers = {cell: CELL_MARKERS[i % len(CELL_MARKERS)] for i, cell in enumerate(dict.fromkeys(cells))}
    points = []
    for position, (_, row) in enumerate(table.iterrows()):
        x, y = float(row[cost_column]), scale * float(row[quality_column])
        on_front = bool(front[position])
        axis.errorbar(
            [x], [y], yerr=errors[:, position : position + 1],
            xerr=None if cost_errors is None else cost_errors[:, position : position + 1],
            fmt=markers[cells[position]], capsize=3, color=colours[methods[position]], markersize=8 if on_front else 6,
            markeredgecolor="black" if on_front else colours[methods[position]], markeredgewidth=1.5 if on_front else 1.0,
        )
        points.append((x, y, methods[position]))
    _legends(axis, colours, markers)
    return points


def _legends(axis: plt.Axes, colours: dict[str, str], markers: dict[str, str]) -> None:
    """One legend entry per method (colour) and per data cell (marker), outside the axes."""
    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=m) for m, c in colours.items()]
    if len(markers) > 1:
        handles += [Line2D([], [], color="gray", marker=k, linestyle="", label=cell) for cell, k in markers.items()]
    handles += [h for h in axis.get_legend_handles_labels()[0] if h.get_gid() == PARETO_FRONT_GID][:1]
    axis.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def _label_points(axis: plt.Axes, points: list[tuple[float, float, str]]) -> None:
    """Name the points, one label per group of points closer than ``LABEL_DISTANCE``: coincident arms
    (same cost, close accuracy) read 'ce, kd' once instead of stacked on top of each other."""
    axis.autoscale_view()
    to_axes = axis.transData + axis.transAxes.inverted()
    groups: list[list[tuple[np.ndarray, float, float, str]]] = []
    for x, y, name in sorted(points, key=lambda p: -p[1]):
        where = to_axes.transform((x, y))
        group = next((g for g in groups if np.abs(g[0][0] - where).max() < LABEL_DISTANCE), None)
        if group is None:
            group = []
            groups.append(group)
        group.append((where, x, y, name))
    for group in groups:
        where, x, y, _ = max(group, key=lambda p: (p[2], p[1]))
        names = ", ".join(dict.fromkeys(name for *_, name in group))
        left = where[0] > 0.8  # near the right edge the label goes left of its point, inside the axes
        axis.annotate(names, (x, y), textcoords="offset points", xytext=(-6 if left else 6, 6), fontsize=8,
                      ha="right" if left else "left")


def front_rows(table: pd.DataFrame, cost_column: str, quality_column: str = "test_accuracy_mean") -> pd.Series:
    """Whether each row is on the Pareto front of its own data cell: a user's data is their situation,
    so no front mixes cells (as no recommendation does)."""
    cells = pd.Series(_cells(table), index=table.index)
    front = pd.Series(False, index=table.index)
    for _, rows in table.groupby(cells, sort=False):
        front[rows.index] = pareto_mask(rows, quality=quality_column, cost=cost_column)
    return front


def pareto_plot(
    table: pd.DataFrame,
    cost_column: str,
    quality_column: str = "test_accuracy_mean",
    front_methods: list[str] | None = None,
    log_x: bool | None = None,
    label_column: str = "method",
) -> plt.Figure:
    """Quality (mean with CI error bars) against one cost, one point per row; the fronts highlighted.

    Colour by ``method``, marker by data cell; each group of nearby points is named once. A timed cost
    (latency, training time) has horizontal error bars: its interval over seeds. ``front_methods``
    (values of ``label_column``) defaults to each cell's front (:func:`front_rows`), where a timed-cost
    difference within noise separates nothing; front points are ringed and joined in cost order by one
    line per cell (gid ``pareto_front``). ``log_x`` defaults to log for
    costs spanning more than a decade.
    """
    cost_column, quality_column = _resolve(table, cost_column), _resolve(table, quality_column)
    if front_methods is None:
        on_front = front_rows(table, cost_column, quality_column)
    else:
        on_front = pd.Series([_label(row, label_column) in front_methods for _, row in table.iterrows()], index=table.index)
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    scale = _scale(quality_column)
    for _, rows in table[on_front].groupby(pd.Series(_cells(table), index=table.index)[on_front], sort=False):
        rows = rows.sort_values(cost_column)
        axis.plot(rows[cost_column], scale * rows[quality_column], "--", color="black", linewidth=1, alpha=0.7,
                  gid=PARETO_FRONT_GID, label="Pareto front")
    points = _points(axis, table, cost_column, quality_column, on_front.to_numpy())
    _cost_axis(axis, table, cost_column, log_x)
    axis.set_ylabel(_axis_label(quality_column))
    axis.grid(alpha=0.3)
    noise = _base(cost_column) in TIMED_COSTS and len(table) > 1 and bool(within_noise(table, cost_column).all())
    axis.set_title(pareto_title(cost_column, quality_column) + ("\n(every arm within run-to-run noise of every other)" if noise else ""))
    _label_points(axis, points)
    figure.tight_layout()
    return figure


def _cost_axis(axis: plt.Axes, table: pd.DataFrame, cost_column: str, log_x: bool | None) -> None:
    """Log scale for costs spanning more than a decade; counts read 2.41k, not 2410 or 3x10^3."""
    costs = table[cost_column].to_numpy(dtype=float)
    positive = costs[~np.isnan(costs) & (costs > 0)]
    if log_x is None:
        log_x = len(positive) == np.count_nonzero(~np.isnan(costs)) > 0 and positive.max() / positive.min() > 10
    if log_x:
        axis.set_xscale("log")
    if _base(cost_column) in COUNT_COSTS:
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: human(value)))
        axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel(cost_name(cost_column))


# ------------------------------------------------------------------------------- parameter sweeps


def _sweep(
    table: pd.DataFrame,
    x_column: str,
    quality_column: str,
    group_column: str | None,
    x_scale: float,
    x_label: str,
    title: str,
    log_x: bool,
) -> plt.Figure:
    quality_column = _resolve(table, quality_column)
    scale = _scale(quality_column)
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    groups = table.groupby(group_column, sort=False) if group_column else [(None, table)]
    colours = method_colours([str(group) for group, _ in groups])
    for group, rows in groups:
        rows = rows.sort_values(x_column)
        errors = _errors(rows, quality_column)
        axis.errorbar(
            x_scale * rows[x_column].to_numpy(dtype=float), scale * rows[quality_column].to_numpy(dtype=float),
            yerr=errors, fmt="-o", capsize=4, color=colours[str(group)], label=None if group is None else str(group),
        )
    if log_x:
        axis.set_xscale("log", base=2)
    values = sorted(table[x_column].dropna().unique())
    if len(values) <= 12:
        axis.set_xticks([x_scale * v for v in values])
        axis.set_xticklabels([f"{x_scale * v:g}" for v in values])
        axis.minorticks_off()
    axis.set_xlabel(x_label)
    axis.set_ylabel(_axis_label(quality_column))
    axis.grid(alpha=0.3)
    if group_column:
        axis.legend(fontsize=8, title=group_column, loc="best")
    axis.set_title(title)
    figure.tight_layout()
    return figure


def sensitivity_curve(
    table: pd.DataFrame,
    parameter_column: str,
    quality_column: str = "test_accuracy_mean",
    group_column: str | None = "method",
    log_x: bool = False,
) -> plt.Figure:
    """Quality mean ± CI against one hyperparameter (e.g. KD temperature), one line per group."""
    return _sweep(
        table, parameter_column, quality_column, group_column, 1.0, parameter_column.replace("_", " "),
        f"Sensitivity to {parameter_column} (error bars: CI over seeds)", log_x,
    )


def label_fraction_curve(
    table: pd.DataFrame,
    fraction_column: str,
    group_column: str | None = "method",
    quality_column: str = "test_accuracy_mean",
) -> plt.Figure:
    """Quality mean ± CI against the fraction of training labels (x in %), one line per method."""
    return _sweep(
        table, fraction_column, quality_column, group_column, 100.0, "labelled training data, %",
        "Accuracy against label fraction (error bars: CI over seeds)", False,
    )


# ------------------------------------------------------------------------------ per-model details


def reliability_diagram(reliability: dict[str, dict[str, Any]], title: str = "Reliability diagrams") -> plt.Figure:
    """Accuracy per confidence bin (bars) against the diagonal, one panel per label (first 6 only).

    Each value is a :func:`~distillation_studies.learning.metrics.reliability_bins` dict; empty bins
    draw no bar. The panel title gives the ECE recomputed from the bins; ``title`` says which seeds.
    """
    labels = list(reliability)[:MAX_RELIABILITY_PANELS]
    panels = max(1, len(labels))
    columns = min(panels, 3)
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.4 * rows), squeeze=False)
    flat = list(axes.flat)
    for axis, label in zip(flat, labels):
        bins = reliability[label]
        lower, upper = np.asarray(bins["lower"], dtype=float), np.asarray(bins["upper"], dtype=float)
        counts = np.asarray(bins["count"], dtype=float)
        accuracy = np.array([_nan(v) for v in bins["accuracy"]])
        confidence = np.array([_nan(v) for v in bins["confidence"]])
        filled = counts > 0
        axis.bar(lower[filled], accuracy[filled], width=(upper - lower)[filled], align="edge",
                 color="C0", edgecolor="black", linewidth=0.5, label="accuracy")
        axis.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
        total = counts.sum()
        ece = float(np.sum(counts[filled] / total * np.abs(accuracy[filled] - confidence[filled]))) if total else math.nan
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_title(f"{label} (ECE {100 * ece:.2f}%)", fontsize=9)
        axis.set_xlabel("confidence")
        axis.set_ylabel("accuracy")
    for axis in flat[len(labels) :]:
        figure.delaxes(axis)
    if labels:
        flat[0].legend(fontsize=7, loc="upper left")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def per_class_heatmap(
    per_class: dict[str, Sequence[float | None]],
    class_names: Sequence[str] | None = None,
    title: str = "Per-class test accuracy",
) -> plt.Figure:
    """Methods × classes heat map of per-class accuracy (%), each cell annotated; absent classes blank.

    ``title`` says which seeds the values come from."""
    methods = list(per_class)
    classes = max((len(v) for v in per_class.values()), default=0)
    values = np.full((len(methods), classes), np.nan)
    for i, method in enumerate(methods):
        values[i, : len(per_class[method])] = [100 * _nan(v) for v in per_class[method]]
    figure, axis = plt.subplots(figsize=(min(24.0, max(4.0, 0.6 * classes + 2.5)), max(2.5, 0.45 * len(methods) + 1.5)))
    image = axis.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    annotate = classes <= MAX_ANNOTATED_CLASSES  # beyond that the numbers would overlap; colours still read
    for i in range(len(methods) if annotate else 0):
        for j in range(classes):
            if not math.isnan(values[i, j]):
                axis.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=7,
                          color="white" if values[i, j] < 60 else "black")
    axis.set_yticks(range(len(methods)))
    axis.set_yticklabels(methods)
    axis.set_xticks(range(classes))
    axis.set_xticklabels(list(class_names)[:classes] if class_names is not None else [str(c) for c in range(classes)])
    axis.set_xlabel("class")
    figure.colorbar(image, ax=axis, label="accuracy, %")
    axis.set_title(title)
    figure.tight_layout()
    return figure


def cost_plot(table: pd.DataFrame, teacher: dict[str, Any]) -> plt.Figure:
    """Test accuracy (mean with CI) against trained parameters and against CPU latency (with its interval
    over seeds), one point per arm coloured by method and marked by cell, the teacher as a star."""
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    costs = (("training_parameters_mean", "parameters"), ("latency_ms_mean", "latency_ms"))
    for axis, (cost, teacher_key) in zip(axes, costs):
        points = _points(axis, table, cost, "test_accuracy_mean", np.zeros(len(table), dtype=bool))
        axis.scatter([teacher[teacher_key]], [100 * teacher["test_accuracy"]], marker="*", s=150, color="black", zorder=3)
        points.append((float(teacher[teacher_key]), 100 * float(teacher["test_accuracy"]), "teacher"))
        _cost_axis(axis, table, cost, True if _base(cost) in COUNT_COSTS else None)  # the teacher is far bigger
        axis.margins(0.08)
        axis.set_ylabel("test accuracy, %")
        axis.set_title(pareto_title(cost), fontsize=10)
        axis.grid(alpha=0.3)
        _label_points(axis, points)
    axes[0].get_legend().remove()
    figure.suptitle("Students and teacher (error bars: confidence interval over seeds)")
    figure.tight_layout()
    return figure
