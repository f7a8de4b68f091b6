"""Pareto fronts of quality against cost on hand-made points."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from distillation_studies.analysis.pareto import cost_bounds, flat_costs, pareto_front, pareto_fronts, pareto_mask, within_noise


@pytest.fixture
def table():
    return pd.DataFrame(
        [
            {"method": "a", "test_accuracy_mean": 0.80, "latency_ms_mean": 1.0, "parameters_mean": 50, "nll": 0.9},
            {"method": "b", "test_accuracy_mean": 0.85, "latency_ms_mean": 2.0, "parameters_mean": 10, "nll": 0.5},
            {"method": "c", "test_accuracy_mean": 0.84, "latency_ms_mean": 3.0, "parameters_mean": 10, "nll": 0.4},
            {"method": "d", "test_accuracy_mean": 0.90, "latency_ms_mean": 4.0, "parameters_mean": 90, "nll": 0.3},
            {"method": "e", "test_accuracy_mean": 0.85, "latency_ms_mean": 2.0, "parameters_mean": 20, "nll": 0.6},
            {"method": "f", "test_accuracy_mean": 0.79, "latency_ms_mean": 1.0, "parameters_mean": 5, "nll": 1.0},
            {"method": "g", "test_accuracy_mean": math.nan, "latency_ms_mean": 0.5, "parameters_mean": 1, "nll": 0.1},
        ],
        index=list("ABCDEFG"),
    )


def test_mask(table):
    mask = pareto_mask(table)
    assert mask.index.tolist() == table.index.tolist()
    # c is dominated by b (cheaper, better); f by a (same cost, worse); g has no quality.
    # b and e are the identical point: neither dominates the other, both stay.
    assert mask.to_dict() == {"A": True, "B": True, "C": False, "D": True, "E": True, "F": False, "G": False}


def test_front_sorted_by_cost(table):
    front = pareto_front(table)
    assert front["method"].tolist() == ["a", "b", "e", "d"]
    assert front["latency_ms_mean"].is_monotonic_increasing


def test_equal_cost_keeps_only_the_best(table):
    # On parameters, b and c cost 10: c is worse and drops, b stays; f (5) and g (NaN quality) are cheaper.
    front = pareto_front(table, cost="parameters_mean")
    assert front["method"].tolist() == ["f", "b", "d"]


def test_minimised_quality(table):
    # Lower NLL is better: g is cheapest and best, so it dominates everything else.
    assert pareto_front(table, quality="nll", maximise_quality=False)["method"].tolist() == ["g"]
    without_g = table.drop(index="G")
    assert pareto_front(without_g, quality="nll", maximise_quality=False)["method"].tolist() == ["a", "b", "c", "d"]


def test_single_point_and_empty():
    one = pd.DataFrame([{"method": "kd", "test_accuracy_mean": 0.7, "latency_ms_mean": 3.0}])
    assert pareto_mask(one).tolist() == [True]
    assert pareto_front(one)["method"].tolist() == ["kd"]
    assert pareto_front(one.iloc[:0]).empty


def test_fronts_per_cost(table):
    fronts = pareto_fronts(table, costs=["latency_ms_mean", "parameters_mean"])
    assert fronts == {"latency_ms_mean": ["a", "b", "e", "d"], "parameters_mean": ["f", "b", "d"]}


def test_missing_column_is_named(table):
    with pytest.raises(ValueError, match="flops_mean"):
        pareto_fronts(table, costs=["flops_mean"])


# Two arms of one network (2410 parameters): latencies 0.0201 and 0.0206 ms with intervals over seeds that
# overlap, a bigger network whose interval lies above both, and a training time whose intervals separate.
NOISY = pd.DataFrame(
    [
        {"arm": "fitnet", "test_accuracy_mean": 0.96, "parameters_mean": 2410, "flops_mean": 4736,
         "latency_ms_mean": 0.0201, "latency_ms_ci_low": 0.0195, "latency_ms_ci_high": 0.0207,
         "train_time_s_mean": 2.6, "train_time_s_ci_low": 2.5, "train_time_s_ci_high": 2.7},
        {"arm": "kd", "test_accuracy_mean": 0.97, "parameters_mean": 2410, "flops_mean": 4736,
         "latency_ms_mean": 0.0206, "latency_ms_ci_low": 0.0204, "latency_ms_ci_high": 0.0208,
         "train_time_s_mean": 1.5, "train_time_s_ci_low": 1.4, "train_time_s_ci_high": 1.6},
        {"arm": "wide", "test_accuracy_mean": 0.98, "parameters_mean": 9000, "flops_mean": 18000,
         "latency_ms_mean": 0.05, "latency_ms_ci_low": 0.04, "latency_ms_ci_high": 0.06,
         "train_time_s_mean": 1.45, "train_time_s_ci_low": 1.3, "train_time_s_ci_high": 1.6},
    ]
)


def test_latency_of_one_network_spans_every_arm_running_it():
    low, high = cost_bounds(NOISY, "latency_ms_mean")
    # fitnet and kd deploy the same network: both get the union [0.0195, 0.0208]; wide keeps its own.
    assert low.tolist() == [0.0195, 0.0195, 0.04] and high.tolist() == [0.0208, 0.0208, 0.06]
    assert within_noise(NOISY, "latency_ms_mean").tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    # Counted costs are exact.
    assert cost_bounds(NOISY, "parameters_mean")[0].tolist() == [2410, 2410, 9000]


def test_a_latency_difference_within_noise_never_makes_the_front():
    # On means alone fitnet (0.0201 ms) is cheaper than kd (0.0206 ms) and would be on the front; within
    # noise they cost the same, so the more accurate kd dominates it.
    by_means = NOISY.drop(columns=["latency_ms_ci_low", "latency_ms_ci_high", "parameters_mean", "flops_mean"])
    assert pareto_mask(by_means).tolist() == [True, True, True]
    assert pareto_mask(NOISY).tolist() == [False, True, True]
    # Training time: wide (1.45 s) and kd (1.5 s) overlap, so wide (more accurate) dominates kd;
    # fitnet (2.5-2.7 s) is slower beyond noise and less accurate.
    assert pareto_mask(NOISY, cost="train_time_s_mean").tolist() == [False, False, True]


def test_flat_costs_are_counted_costs_with_one_value():
    same = NOISY.iloc[:2]
    assert flat_costs(same, ["parameters_mean", "flops_mean", "latency_ms_mean", "missing_mean"]) == ["parameters_mean", "flops_mean"]
    assert flat_costs(NOISY, ["parameters_mean", "flops_mean", "latency_ms_mean"]) == []
