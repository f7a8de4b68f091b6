"""The numbers of the report's "Search" section, from the search's saved outputs (trials, events,
finalists record): compute spent against the full grid, each method's spend and best validation
accuracy, its anytime curve, and the events that removed trials."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

REMOVALS = ("stopped_early", "dropped_by_race", "cut_by_finalists", "failed", "not_run_budget")


@dataclass(frozen=True)
class SearchCost:
    epochs: float  # student epochs the search trained (rungs and race; not the confirmation)
    optimizer_steps: int
    train_seconds: float
    budget_epochs: float
    grid_epochs: float  # every planned trial trained for max_epochs on every race seed

    @property
    def fraction_of_grid(self) -> float:
        return self.epochs / self.grid_epochs if self.grid_epochs else math.nan


def search_cost(finalists: dict[str, Any]) -> SearchCost:
    spent = finalists["spent"]
    return SearchCost(
        float(spent["epochs"]), int(spent["optimizer_steps"]), float(spent["train_seconds"]),
        float(finalists["budget_epochs"]), float(finalists["grid_cost_epochs"]),
    )


def method_spend(trials: pd.DataFrame) -> pd.DataFrame:
    """Per method, in order of first appearance: trials proposed, jobs, epochs, optimiser steps,
    training seconds, and the best validation accuracy of a job that did not fail."""
    rows = []
    for method, jobs in trials.groupby("method", sort=False):
        usable = jobs.loc[~jobs["failed"].astype(bool), "val_accuracy"]
        rows.append({
            "method": method,
            "trials": jobs["trial"].nunique(),
            "jobs": len(jobs),
            "epochs": int(jobs["epochs"].sum()),
            "optimizer_steps": int(jobs["optimizer_steps"].sum()),
            "train_seconds": float(jobs["train_seconds"].sum()),
            "best_val_accuracy": float(usable.max()) if len(usable) else math.nan,
        })
    return pd.DataFrame(rows)


def anytime_curves(anytime: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Per method: (total search epochs spent when each of its jobs finished, its best validation
    accuracy so far), the points where the method had a usable result."""
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for point in anytime:
        if not math.isnan(point["best_val_accuracy"]):
            epochs, best = curves.setdefault(point["method"], ([], []))
            epochs.append(float(point["epochs"]))
            best.append(float(point["best_val_accuracy"]))
    return curves


def removals(events: pd.DataFrame) -> pd.DataFrame:
    """The events that removed a trial from the search, in the order they happened."""
    return events[events["status"].isin(REMOVALS)].reset_index(drop=True)
