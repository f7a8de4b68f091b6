"""The one table of reported metrics: its direction, how it is shown, and what the comparison does with it.

The comparison summarises every ``quality`` and ``cost`` metric over seeds, pairs the ``tested`` ones
by seed, the recommender ranks on any of them in its direction and limits the ``constraint`` ones, the
report labels, scales and lists them (``in_report``), the Pareto plots draw the ``pareto`` costs (on a
log axis when ``log_axis``), and MLflow names them by ``kind``. Adding a metric to every output is one
row below (plus its computation).
"""

from __future__ import annotations

from dataclasses import dataclass

QUALITY, COST, SELECTION = "quality", "cost", "selection"


@dataclass(frozen=True)
class ReportedMetric:
    """A per-run metric: ``scale`` turns the stored value into the shown unit (0.85 -> 85 %)."""

    name: str
    higher_is_better: bool
    label: str
    scale: float = 1.0
    unit: str = ""
    digits: int = 2
    kind: str = QUALITY
    tested: bool = False  # paired by seed against the baselines and between candidates
    in_report: bool = False  # a column of the report's "other metrics and costs" table
    pareto: bool = False  # a cost axis of the quality-against-cost Pareto plots
    log_axis: bool = False  # drawn on a log axis (counts spanning orders of magnitude)
    constraint: str | None = None  # the ``recommendation:`` key limiting it (``max_flops``)


METRICS: tuple[ReportedMetric, ...] = (
    ReportedMetric("test_accuracy", True, "test acc (best val epoch)", 100, "%", 2, tested=True),
    ReportedMetric("last_test_accuracy", True, "test acc (last epoch)", 100, "%", 2, in_report=True),
    ReportedMetric("test_nll", False, "NLL", 1, "", 3, tested=True, in_report=True),
    ReportedMetric("test_ece", False, "ECE", 100, "%", 2, tested=True, in_report=True),
    ReportedMetric("test_teacher_agreement", True, "agreement with teacher", 100, "%", 2, tested=True, in_report=True),
    ReportedMetric("test_kl_to_teacher", False, "KL to teacher", 1, "", 3),
    # The report shows the two parameter counts together, in one column of their own.
    ReportedMetric("parameters", False, "parameters", kind=COST, log_axis=True, constraint="max_parameters"),
    ReportedMetric("training_parameters", False, "parameters incl. adapters", kind=COST, pareto=True, log_axis=True),
    ReportedMetric("flops", False, "FLOPs", kind=COST, in_report=True, pareto=True, log_axis=True, constraint="max_flops"),
    ReportedMetric("latency_ms", False, "CPU latency", 1, "ms", 3, kind=COST, in_report=True, pareto=True,
                   constraint="max_latency_ms"),
    ReportedMetric("throughput_per_s", True, "throughput", 1, "/s", 0, kind=COST),
    # Training time is the one cost that varies with the seed, so it is tested like quality.
    ReportedMetric("train_time_s", False, "training time", 1, "s", 1, kind=COST, tested=True, in_report=True,
                   pareto=True, constraint="max_train_time_s"),
    # The training budget: the same for every arm of a data cell by construction (learning/training.py).
    ReportedMetric("optimizer_steps", False, "optimiser steps", kind=COST),
    ReportedMetric("samples_seen", False, "training samples seen", kind=COST),
    ReportedMetric("best_val_accuracy", True, "validation acc (best epoch)", 100, "%", 2, kind=SELECTION),
)
BY_NAME = {m.name: m for m in METRICS}

QUALITY_METRICS = [m.name for m in METRICS if m.kind == QUALITY]
COST_METRICS = [m.name for m in METRICS if m.kind == COST]
TESTED_METRICS = [m.name for m in METRICS if m.tested]
REPORT_QUALITY = [m.name for m in METRICS if m.in_report and m.kind == QUALITY]
REPORT_COSTS = [m.name for m in METRICS if m.in_report and m.kind == COST]
PARETO_COSTS = [m.name for m in METRICS if m.pareto]
LOG_AXIS_METRICS = tuple(m.name for m in METRICS if m.log_axis)
COST_LIMITS = {m.constraint: m.name for m in METRICS if m.constraint}  # recommendation key -> metric
SELECTION_METRIC = "best_val_accuracy"


def reported_metric(name: str) -> ReportedMetric:
    """The table row of ``name``; a KeyError lists the known metrics."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; reported metrics: {sorted(BY_NAME)}") from None
