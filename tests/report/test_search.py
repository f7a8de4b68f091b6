"""The report's Search section: the words a reader sees for spend, finalists and each removal."""

import math

import pandas as pd

from distillation_studies.report.search import ANYTIME_PLOT, search_section

TRIALS = pd.DataFrame(
    [
        ("kd", "kd__t0", "temperature=2", 1, 0, 10, 1.0, 0.5, False),
        ("kd", "kd__t1", "temperature=4", 1, 0, 10, 1.0, 0.6, False),
        ("kd", "kd__t1", "temperature=4", 3, 0, 30, 2.0, 0.8, False),
        ("ce", "ce__t0", "default", 3, 0, 30, 2.0, 0.7, False),
        ("kd", "kd__t1", "temperature=4", 3, 1, 30, 2.0, 0.8, False),
        ("ce", "ce__t0", "default", 3, 1, 30, 2.0, 0.6, False),
    ],
    columns=["method", "trial", "setting", "epochs", "seed", "optimizer_steps", "train_seconds", "val_accuracy", "failed"],
)
NAN = math.nan
EVENTS = pd.DataFrame(
    [
        ("kd__t0", "kd", "stopped_early", "rung", 1, 1, NAN, NAN, NAN, NAN),
        ("ce__t0", "ce", "dropped_by_race", "race", 3, 2, "kd__t1", -0.15, 0.0004, 0.025),
        ("kd__t1", "kd", "finalist", "race", 3, 2, "kd__t1", 0.0, NAN, NAN),
    ],
    columns=["trial_id", "method_key", "status", "stage", "epochs", "seeds", "leader", "diff", "p_value", "threshold"],
)
FINALISTS = {
    "finalists": [{"trial_id": "kd__t1", "method_key": "kd", "number": 1, "setting": {"temperature": 4.0}}],
    "spent": {"epochs": 14, "optimizer_steps": 140, "train_seconds": 10.0},
    "grid_cost_epochs": 12,
    "budget_epochs": 20,
    "rungs": [1, 3],
    "confirmation_seeds": [100, 101],
    "anytime": [{"method": "kd", "epochs": 1, "best_val_accuracy": 0.5}, {"method": "ce", "epochs": 5, "best_val_accuracy": 0.7}],
}


def test_search_section_says_spend_finalists_and_why_each_trial_left():
    markdown, figures = search_section(TRIALS, EVENTS, FINALISTS)
    assert "The search trained **14 student epochs** (140 optimiser steps, 10.0 s of training) of its budget of 20" in markdown
    assert "costs 12 epochs: the search used **117%** of the grid's compute" in markdown  # 14 / 12
    assert "fresh seeds 100, 101: kd__t1 (temperature=4)." in markdown
    assert "| kd__t0  | temperature=2 | rung at 1 epochs, 1 seed(s) | stopped early: not among its method's best 1/eta at this rung" in markdown
    assert "dropped by the race: worse than kd__t1 by -15.00 pp over 2 seeds (one-sided paired p <0.001 < 0.025)" in markdown
    assert "kd__t1  " not in markdown.split("What was dropped")[1]  # a finalist is not a removal
    assert set(figures) == {ANYTIME_PLOT}


def test_a_search_that_dropped_nothing_says_so():
    markdown, _ = search_section(TRIALS, EVENTS.iloc[2:], FINALISTS)
    assert "No trial was dropped." in markdown
