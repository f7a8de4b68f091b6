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
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from distillation_studies.analysis.metrics import LOG_AXIS_METRICS  # noqa: E402
from distillation_studies.analysis.pareto import pareto_mask  # noqa: E402

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
    """Asymmetric (2, n) error bars from the CI columns, in plotting units; zero where absent or NaN."""
    scale = _scale(quality_column)
    base = _base(quality_column)
    mean = table[quality_column].to_numpy(dtype=float)
    low = table.get(f"{base}_ci_low", pd.Series(np.nan, index=table.index)).to_numpy(dtype=float)
    high = table.get(f"{base}_ci_high", pd.Series(np.nan, index=table.index)).to_numpy(dtype=float)
    below = np.where(np.isnan(low), 0.0, mean - low) * scale
    above = np.where(np.isnan(high), 0.0, high - mean) * scale
    return np.vstack([np.clip(below, 0, None), np.clip(above, 0, None)])


def _label(row: pd.Series, column: str = "method") -> str:
    return str(row[column]) if column in row.index else str(row.name)


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


def learning_curves(histories: dict[str, Sequence[History] | History]) -> plt.Figure:
    """Validation accuracy (%) and total training loss per epoch, one line per method label.

    ``histories`` maps a method label to its seeds' histories (a list of history-row lists; a single
    history is accepted too). With several seeds the line is the per-epoch mean and the band ±1 std.
    """
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = ((axes[0], "val_accuracy", "validation accuracy, %", 100.0), (axes[1], "loss_total", "training loss (total)", 1.0))
    for index, (label, runs) in enumerate(histories.items()):
        runs = [runs] if runs and isinstance(runs[0], dict) else list(runs)  # type: ignore[list-item]
        color = f"C{index % 10}"
        for axis, key, _, scale in panels:
            epochs, mean, std = seed_mean(runs, key)
            if not len(epochs):
                continue
            suffix = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
            axis.plot(epochs, scale * mean, color=color, marker="." if len(epochs) < 30 else None, label=f"{label}{suffix}")
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


# ---------------------------------------------------------------------------------------- pareto


def pareto_plot(
    table: pd.DataFrame,
    cost_column: str,
    quality_column: str = "test_accuracy_mean",
    front_methods: list[str] | None = None,
    log_x: bool | None = None,
    label_column: str = "method",
) -> plt.Figure:
    """Quality (mean with CI error bars) against a cost, one point per method; the front highlighted.

    Points are labelled by ``label_column`` (one value per row: the comparison table's ``arm``).
    ``front_methods`` (labels) defaults to the front from ``analysis.pareto``; front points are ringed and
    joined, in cost order, by one line (gid ``pareto_front``). ``log_x`` defaults to log for counts (parameters,
    FLOPs) and for any positive cost spanning two decades.
    """
    cost_column, quality_column = _resolve(table, cost_column), _resolve(table, quality_column)
    if front_methods is None:
        front = table[pareto_mask(table, quality=quality_column, cost=cost_column)]
        front_methods = [_label(row, label_column) for _, row in front.iterrows()]
    scale = _scale(quality_column)
    errors = _errors(table, quality_column)
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    front_points = []
    for position, (_, row) in enumerate(table.iterrows()):
        method = _label(row, label_column)
        x, y = float(row[cost_column]), scale * float(row[quality_column])
        on_front = method in front_methods
        axis.errorbar(
            [x], [y], yerr=errors[:, position : position + 1], fmt="o", capsize=4, color=f"C{position % 10}",
            markeredgecolor="black" if on_front else None, markeredgewidth=1.5 if on_front else 1.0,
            markersize=8 if on_front else 6, label=method,
        )
        axis.annotate(method, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        if on_front:
            front_points.append((x, y))
    if front_points:
        xs, ys = zip(*sorted(front_points))
        axis.plot(xs, ys, "--", color="black", linewidth=1, alpha=0.7, gid=PARETO_FRONT_GID, label="Pareto front")
    costs = table[cost_column].to_numpy(dtype=float)
    if log_x is None:
        positive = costs[~np.isnan(costs)]
        log_x = bool(len(positive)) and bool((positive > 0).all()) and (
            _base(cost_column) in COUNT_COSTS or positive.max() / positive.min() >= 100
        )
    if log_x:
        axis.set_xscale("log")
    axis.set_xlabel(_axis_label(cost_column))
    axis.set_ylabel(_axis_label(quality_column))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    axis.set_title("Quality against cost (error bars: CI over seeds)")
    figure.tight_layout()
    return figure


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
    for index, (group, rows) in enumerate(groups):
        rows = rows.sort_values(x_column)
        errors = _errors(rows, quality_column)
        axis.errorbar(
            x_scale * rows[x_column].to_numpy(dtype=float), scale * rows[quality_column].to_numpy(dtype=float),
            yerr=errors, fmt="-o", capsize=4, color=f"C{index % 10}", label=None if group is None else str(group),
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
    """Test accuracy (mean with CI) against parameters and against CPU latency, one point per arm."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    costs = (("training_parameters", "parameters (incl. adapters)", "parameters"), ("latency_ms", "CPU latency, ms (batch 1)", "latency_ms"))
    for axis, (cost, label, teacher_key) in zip(axes, costs):
        for _, row in table.iterrows():
            mean = 100 * row["test_accuracy_mean"]
            low = row["test_accuracy_ci_low"]
            error = 0.0 if math.isnan(low) else mean - 100 * low
            axis.errorbar(row[f"{cost}_mean"], mean, yerr=error, fmt="o", capsize=4, label=row["arm"])
        axis.scatter([teacher[teacher_key]], [100 * teacher["test_accuracy"]], marker="*", s=150, color="black", label="teacher")
        axis.set_xscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("test accuracy, %")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    figure.suptitle("Accuracy against cost (error bars: confidence interval over seeds)")
    figure.tight_layout()
    return figure
