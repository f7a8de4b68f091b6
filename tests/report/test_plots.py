"""Report figures: the right number of panels, lines and points, and the right numbers plotted."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from distillation_studies.report.plots import (  # noqa: E402
    PARETO_FRONT_GID,
    label_fraction_curve,
    learning_curves,
    pareto_plot,
    per_class_heatmap,
    plots_markdown,
    reliability_diagram,
    sensitivity_curve,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _history(accuracies: list[float], losses: list[float]) -> list[dict[str, float]]:
    return [
        {"epoch": e, "loss_ce": loss, "loss_total": loss, "val_accuracy": acc}
        for e, (acc, loss) in enumerate(zip(accuracies, losses), 1)
    ]


def _table(methods, costs, means, half=0.01, **extra) -> pd.DataFrame:
    means = np.asarray(means, dtype=float)
    return pd.DataFrame(
        {
            "method": methods,
            "flops_mean": costs,
            "test_accuracy_mean": means,
            "test_accuracy_ci_low": means - half,
            "test_accuracy_ci_high": means + half,
            **extra,
        }
    )


def _errorbars(axis) -> list[ErrorbarContainer]:
    return [c for c in axis.containers if isinstance(c, ErrorbarContainer)]


def test_learning_curves_average_seeds():
    histories = {
        "kd": [_history([0.5, 0.6, 0.7], [2.0, 1.0, 0.5]), _history([0.3, 0.4, 0.9], [1.0, 0.5, 0.3])],
        "ce": [_history([0.2, 0.4, 0.5], [3.0, 2.0, 1.0])],
    }
    figure = learning_curves(histories)
    accuracy_axis, loss_axis = figure.axes
    assert len(accuracy_axis.lines) == 2 and len(loss_axis.lines) == 2
    kd_accuracy, ce_accuracy = accuracy_axis.lines
    np.testing.assert_allclose(kd_accuracy.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(kd_accuracy.get_ydata(), [40.0, 50.0, 80.0])  # mean over seeds, in %
    np.testing.assert_allclose(ce_accuracy.get_ydata(), [20.0, 40.0, 50.0])
    np.testing.assert_allclose(loss_axis.lines[0].get_ydata(), [1.5, 0.75, 0.4])
    # A band for the multi-seed method only.
    assert len(accuracy_axis.collections) == 1


def test_learning_curves_accepts_single_history_and_uneven_lengths():
    figure = learning_curves({"a": _history([0.1, 0.2], [1.0, 0.9]), "b": [_history([0.2], [1.0]), _history([0.4, 0.6], [0.5, 0.4])]})
    accuracy_axis = figure.axes[0]
    np.testing.assert_allclose(accuracy_axis.lines[0].get_ydata(), [10.0, 20.0])
    np.testing.assert_allclose(accuracy_axis.lines[1].get_ydata(), [30.0, 60.0])


def test_learning_curves_colour_by_method_and_dash_by_cell():
    table = _cells_table().assign(arm=["ce_all", "kd_all", "ce_10", "kd_10"])
    history = [_history([0.5, 0.6], [1.0, 0.5])]
    figure = learning_curves({arm: history for arm in ["ce_all", "kd_all", "ce_10"]}, table)
    lines = figure.axes[0].lines
    assert [(line.get_color(), line.get_linestyle()) for line in lines] == [("C0", "-"), ("C1", "-"), ("C0", "--")]


def test_pareto_front_and_plot():
    table = _table(["ce", "kd", "fitnet", "big"], [1e3, 1e3, 5e4, 1e6], [0.80, 0.85, 0.84, 0.90])
    figure = pareto_plot(table, "flops")  # front from core.pareto: kd and big
    (axis,) = figure.axes
    assert len(_errorbars(axis)) == 4
    front = [line for line in axis.lines if line.get_gid() == PARETO_FRONT_GID]
    assert len(front) == 1
    np.testing.assert_allclose(front[0].get_xdata(), [1e3, 1e6])
    np.testing.assert_allclose(front[0].get_ydata(), [85.0, 90.0])
    assert axis.get_xscale() == "log"


def test_pareto_plot_explicit_front_and_linear_latency():
    table = _table(["ce", "kd"], [1.0, 2.0], [0.8, 0.9]).rename(columns={"flops_mean": "latency_ms_mean"})
    figure = pareto_plot(table, "latency_ms_mean", front_methods=["ce"])
    (axis,) = figure.axes
    front = [line for line in axis.lines if line.get_gid() == PARETO_FRONT_GID]
    np.testing.assert_allclose(front[0].get_xdata(), [1.0])
    assert axis.get_xscale() == "linear"


def _cells_table() -> pd.DataFrame:
    """ce and kd in two data cells (all labels; 10% labels + transfer set), on one network."""
    table = _table(["ce", "kd", "ce", "kd"], [1.0, 2.0, 1.0, 2.0], [0.90, 0.95, 0.50, 0.40],
                   label_fraction=[1.0, 1.0, 0.1, 0.1], transfer_set=[False, False, True, True])
    return table.rename(columns={"flops_mean": "training_parameters_mean"})


def test_pareto_plot_colours_by_method_marks_by_cell_and_draws_one_front_per_cell():
    figure = pareto_plot(_cells_table(), "training_parameters")
    (axis,) = figure.axes
    points = [bar.lines[0] for bar in _errorbars(axis)]
    assert [p.get_color() for p in points] == ["C0", "C1", "C0", "C1"]  # ce, kd in both cells
    assert [p.get_marker() for p in points] == ["o", "o", "s", "s"]  # one marker per cell
    # All labels: ce (cheaper) and kd (better) are the front; 10% + transfer set: ce dominates kd.
    fronts = sorted(list(line.get_xdata()) for line in axis.lines if line.get_gid() == PARETO_FRONT_GID)
    assert fronts == [[1.0], [1.0, 2.0]]
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert legend == ["ce", "kd", "all labels", "10% labels + transfer set", "Pareto front"]
    assert axis.get_title() == "Test accuracy against trained parameters (incl. adapters)"


def test_coincident_points_share_one_readable_label():
    table = _cells_table()
    table["test_accuracy_mean"] = [0.90, 0.9005, 0.50, 0.40]
    table["training_parameters_mean"] = [1.0, 1.0, 1.0, 2.0]  # ce and kd of all labels on one spot
    (axis,) = pareto_plot(table, "training_parameters_mean").axes
    assert sorted(t.get_text() for t in axis.texts) == ["ce", "kd", "kd, ce"]  # top to bottom


def test_latency_has_horizontal_error_bars_and_noise_makes_no_front():
    table = _cells_table().iloc[:2].rename(columns={"training_parameters_mean": "latency_ms_mean"})
    table = table.assign(latency_ms_mean=[0.0201, 0.0206], latency_ms_ci_low=[0.0195, 0.0204], latency_ms_ci_high=[0.0207, 0.0208])
    (axis,) = pareto_plot(table, "latency_ms").axes
    bars = _errorbars(axis)
    assert all(bar.has_xerr for bar in bars)
    (segment,) = bars[0].lines[2][0].get_segments()  # ce's horizontal bar: its interval over seeds
    assert [segment[0][0], segment[1][0]] == pytest.approx([0.0195, 0.0207])
    # On means ce (0.0201 ms) is cheaper than kd, but within noise; kd, more accurate, is the front alone.
    (front,) = [line for line in axis.lines if line.get_gid() == PARETO_FRONT_GID]
    assert list(front.get_xdata()) == [0.0206]
    assert axis.get_title() == "Test accuracy against CPU latency\n(every arm within run-to-run noise of every other)"


def test_flat_costs_get_one_line_and_figures_numbered_captions():
    figure = pareto_plot(_cells_table(), "training_parameters")
    text = plots_markdown({"pareto_training_parameters.png": figure}, {"flops_mean": 4736.0})
    image, rest = text.split("\n", 1)
    assert image == "![Test accuracy against trained parameters (incl. adapters)](plots/pareto_training_parameters.png)"
    assert rest.startswith("*Figure 1. Test accuracy against trained parameters (incl. adapters). Colour: method; marker: data cell;")
    assert text.endswith("\n\nNot plotted, because every arm has the same value: forward FLOPs per image is 4.74k.")


def test_sensitivity_curve_one_line_per_group():
    temperatures = [1, 2, 4, 8]
    table = _table(
        ["kd"] * 4 + ["dkd"] * 4, [1.0] * 8, [0.80, 0.82, 0.85, 0.83, 0.70, 0.75, 0.78, 0.79],
        temperature=temperatures * 2,
    )
    figure = sensitivity_curve(table, "temperature", "test_accuracy_mean", "method")
    (axis,) = figure.axes
    bars = _errorbars(axis)
    assert len(bars) == 2
    line = bars[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), temperatures)
    np.testing.assert_allclose(line.get_ydata(), [80.0, 82.0, 85.0, 83.0])
    # CI half-width 1 percentage point on every point.
    segments = bars[0].lines[2][0].get_segments()
    assert len(segments) == 4
    assert all(seg[1][1] - seg[0][1] == pytest.approx(2.0) for seg in segments)


def test_label_fraction_curve_in_percent():
    table = _table(["ce", "ce", "kd", "kd"], [1.0] * 4, [0.5, 0.8, 0.6, 0.85], label_fraction=[0.1, 1.0, 0.1, 1.0])
    table.loc[0, "test_accuracy_ci_low"] = math.nan  # a single seed: no error bar, still plotted
    figure = label_fraction_curve(table, "label_fraction", "method")
    (axis,) = figure.axes
    bars = _errorbars(axis)
    assert len(bars) == 2
    np.testing.assert_allclose(bars[0].lines[0].get_xdata(), [10.0, 100.0])
    np.testing.assert_allclose(bars[1].lines[0].get_ydata(), [60.0, 85.0])


def _bins(accuracy, confidence, count):
    n = len(count)
    return {"bins": n, "lower": [b / n for b in range(n)], "upper": [(b + 1) / n for b in range(n)],
            "count": count, "confidence": confidence, "accuracy": accuracy}


def test_reliability_diagram_panels_and_bars():
    bins = _bins([None, 0.5, 1.0, None], [None, 0.3, 0.9, None], [0, 2, 3, 0])
    figure = reliability_diagram({"kd": bins, "ce": bins})
    assert len(figure.axes) == 2
    axis = figure.axes[0]
    assert len(axis.patches) == 2  # empty bins draw no bar
    assert [p.get_height() for p in axis.patches] == [0.5, 1.0]
    assert len(axis.lines) == 1  # the diagonal
    # ECE = 2/5 * 0.2 + 3/5 * 0.1 = 0.14
    assert "14.00%" in axis.get_title()


def test_reliability_diagram_at_most_six_panels():
    bins = _bins([0.5, 0.9], [0.4, 0.8], [1, 1])
    figure = reliability_diagram({f"m{i}": bins for i in range(8)})
    assert len(figure.axes) == 6
    assert figure.axes[-1].get_title().startswith("m5")


def test_per_class_heatmap_annotations():
    figure = per_class_heatmap({"kd": [0.9, None, 0.5], "ce": [0.8, 0.7, 0.6]})
    axis = figure.axes[0]
    image = axis.images[0].get_array()
    assert image.shape == (2, 3)
    assert np.ma.is_masked(image[0, 1]) or math.isnan(image[0, 1])
    assert len(axis.texts) == 5  # the absent class is not annotated
    assert [t.get_text() for t in axis.get_yticklabels()] == ["kd", "ce"]


def test_error_bars_stop_at_what_is_possible():
    """Two seeds give t intervals past 0-100% and below 0 ms: the bars are drawn up to the possible range."""
    table = pd.DataFrame({"method": ["kd"], "test_accuracy_mean": [0.5], "test_accuracy_ci_low": [-0.7], "test_accuracy_ci_high": [1.7],
                          "latency_ms_mean": [0.03], "latency_ms_ci_low": [-0.05], "latency_ms_ci_high": [0.11]})
    (bar,) = _errorbars(pareto_plot(table, "latency_ms").axes[0])
    segments = [segment for collection in bar.lines[2] for segment in collection.get_segments()]
    spans = sorted(tuple(round(float(v), 6) for v in (s[0][0], s[1][0], s[0][1], s[1][1])) for s in segments)
    # x from 0 (not -0.05) to 0.11 ms at 50%; y from 0% to 100% (not -20% to 170%) at 0.03 ms.
    assert spans == [(0.0, 0.11, 50.0, 50.0), (0.03, 0.03, 0.0, 100.0)]
