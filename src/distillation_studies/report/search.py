"""The report's "Search" section: what the budgeted search spent against the grid it replaces, per
method the best validation accuracy against compute (the anytime plot), and what it dropped, when, why."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from distillation_studies.analysis.search_summary import anytime_curves, method_spend, removals, search_cost  # noqa: E402
from distillation_studies.report.text import human, p_value  # noqa: E402

SEARCH_HEADING = "Search"
ANYTIME_PLOT = "search_anytime.png"
WHY = {
    "stopped_early": "stopped early: not among its method's best 1/eta at this rung",
    "dropped_by_race": "dropped by the race: worse than {leader} by {diff} pp over {seeds} seeds (one-sided paired p {p} < {threshold})",
    "cut_by_finalists": "survived the race, beyond the {finalists} finalist(s)",
    "failed": "failed: diverged or never above chance",
    "not_run_budget": "not run: the budget pays for fewer trials per method",
}


def search_section(trials: pd.DataFrame, events: pd.DataFrame, finalists: dict[str, Any]) -> tuple[str, dict[str, plt.Figure]]:
    """The section's Markdown and its plot."""
    parts = [_spend_sentence(finalists), _finalists_sentence(finalists), _methods_table(trials), _removals(trials, events, finalists)]
    return "\n\n".join(parts), {ANYTIME_PLOT: anytime_plot(finalists["anytime"])}


def _spend_sentence(finalists: dict[str, Any]) -> str:
    cost = search_cost(finalists)
    return (
        f"The search trained **{cost.epochs:g} student epochs** ({human(cost.optimizer_steps)} optimiser steps, "
        f"{cost.train_seconds:.1f} s of training) of its budget of {cost.budget_epochs:g}; the full grid it replaces, every "
        f"trial trained for {finalists['rungs'][-1]} epochs on every race seed, costs {cost.grid_epochs:g} epochs: "
        f"the search used **{100 * cost.fraction_of_grid:.0f}%** of the grid's compute. It selected on validation "
        "accuracy only; the comparison above reads the confirmation runs alone."
    )


def _finalists_sentence(finalists: dict[str, Any]) -> str:
    names = [f"{t['trial_id']} ({_setting(t['setting'])})" for t in finalists["finalists"]] or ["none"]
    seeds = ", ".join(str(s) for s in finalists["confirmation_seeds"])
    return f"Finalists, best first, confirmed with the baselines on the fresh seeds {seeds}: {'; '.join(names)}."


def _setting(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items()) or "default"


def _methods_table(trials: pd.DataFrame) -> str:
    rows = [
        {
            "method": row["method"],
            "trials": row["trials"],
            "jobs": row["jobs"],
            "epochs": row["epochs"],
            "optimiser steps": human(row["optimizer_steps"]),
            "training s": f"{row['train_seconds']:.1f}",
            "best validation accuracy, %": "–" if math.isnan(row["best_val_accuracy"]) else f"{100 * row['best_val_accuracy']:.2f}",
        }
        for _, row in method_spend(trials).iterrows()
    ]
    return "Compute and best validation accuracy per method (plot: best validation accuracy against the search's epochs):\n\n" + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _removals(trials: pd.DataFrame, events: pd.DataFrame, finalists: dict[str, Any]) -> str:
    dropped = removals(events)
    if dropped.empty:
        return "No trial was dropped."
    settings = dict(zip(trials["trial"], trials["setting"]))
    rows = [
        {
            "trial": row["trial_id"],
            "setting": settings.get(row["trial_id"], "–"),
            "at": f"{row['stage']} at {row['epochs']} epochs, {row['seeds']} seed(s)",
            "why": _why(row, len(finalists["finalists"])),
        }
        for _, row in dropped.iterrows()
    ]
    return "What was dropped, when and why:\n\n" + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _why(event: pd.Series, finalist_count: int) -> str:
    diff = event["diff"]
    return WHY[event["status"]].format(
        leader=event["leader"],
        diff="–" if pd.isna(diff) else f"{100 * diff:+.2f}",
        seeds=event["seeds"],
        p=p_value(event["p_value"]),
        threshold=f"{event['threshold']:.3g}",
        finalists=finalist_count,
    )


def anytime_plot(anytime: list[dict[str, Any]]) -> plt.Figure:
    """Per method, its best validation accuracy so far against the epochs the whole search had spent."""
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for index, (method, (epochs, best)) in enumerate(anytime_curves(anytime).items()):
        axis.step(epochs, [100 * b for b in best], where="post", marker=".", color=f"C{index % 10}", label=method)
    axis.set_xlabel("student epochs spent by the search")
    axis.set_ylabel("best validation accuracy so far, %")
    axis.set_title("Search: best validation accuracy per method against compute")
    axis.grid(alpha=0.3)
    if anytime:
        axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure
