"""Pareto fronts of quality against cost on hand-made points."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from distillation_studies.analysis.pareto import pareto_front, pareto_fronts, pareto_mask


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
