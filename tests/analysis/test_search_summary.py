"""The Search section's numbers, against hand-computed values."""

import math

import pandas as pd
import pytest

from distillation_studies.analysis.search_summary import anytime_curves, method_spend, removals, search_cost

TRIALS = pd.DataFrame(
    [
        ("kd", "kd__t0", 1, 10, 1.0, 0.50, False),
        ("kd", "kd__t1", 1, 10, 2.0, 0.60, False),
        ("ce", "ce__t0", 3, 30, 3.0, 0.70, False),
        ("kd", "kd__t1", 3, 30, 4.0, 0.90, True),  # failed: its accuracy is not the method's best
    ],
    columns=["method", "trial", "epochs", "optimizer_steps", "train_seconds", "val_accuracy", "failed"],
)


def test_method_spend_sums_each_method_and_ignores_failed_accuracies():
    table = method_spend(TRIALS)
    assert list(table["method"]) == ["kd", "ce"]
    kd = table.iloc[0]
    assert (kd["trials"], kd["jobs"], kd["epochs"], kd["optimizer_steps"], kd["train_seconds"]) == (2, 3, 5, 50, 7.0)
    assert kd["best_val_accuracy"] == 0.60


def test_search_cost_is_a_fraction_of_the_grid():
    record = {"spent": {"epochs": 30, "optimizer_steps": 300, "train_seconds": 12.5}, "budget_epochs": 50, "grid_cost_epochs": 120}
    cost = search_cost(record)
    assert cost.fraction_of_grid == pytest.approx(0.25) and cost.optimizer_steps == 300
    assert math.isnan(search_cost({**record, "grid_cost_epochs": 0}).fraction_of_grid)


def test_anytime_curves_skip_points_before_a_usable_result():
    points = [
        {"method": "kd", "epochs": 1, "best_val_accuracy": math.nan},
        {"method": "ce", "epochs": 4, "best_val_accuracy": 0.5},
        {"method": "kd", "epochs": 5, "best_val_accuracy": 0.6},
    ]
    assert anytime_curves(points) == {"ce": ([4.0], [0.5]), "kd": ([5.0], [0.6])}


def test_removals_keep_only_what_took_a_trial_out():
    events = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "status": ["promoted", "stopped_early", "finalist", "dropped_by_race"]})
    assert list(removals(events)["trial_id"]) == ["b", "d"]
