"""Quality-against-cost Pareto fronts over a comparison table (one row per method or setting)."""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_COSTS = ("parameters_mean", "flops_mean", "latency_ms_mean", "train_time_s_mean")


def _require_columns(df: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"Pareto front: table has no column {missing[0]!r}; columns: {list(df.columns)}")


def pareto_mask(
    df: pd.DataFrame,
    quality: str = "test_accuracy_mean",
    cost: str = "latency_ms_mean",
    maximise_quality: bool = True,
) -> pd.Series:
    """True for rows no other row dominates (cost <= and quality at least as good, one of them strictly).

    Identical points do not dominate each other, so both stay on the front. Rows with a missing (NaN)
    quality or cost are never on the front and dominate nothing. Aligned with ``df.index``.
    """
    _require_columns(df, quality, cost)
    q = df[quality].to_numpy(dtype=float)
    c = df[cost].to_numpy(dtype=float)
    if not maximise_quality:
        q = -q
    valid = ~(np.isnan(q) | np.isnan(c))
    # dominates[j, i]: row j dominates row i.
    no_worse = (c[:, None] <= c[None, :]) & (q[:, None] >= q[None, :])
    strictly = (c[:, None] < c[None, :]) | (q[:, None] > q[None, :])
    dominates = no_worse & strictly & valid[:, None] & valid[None, :]
    return pd.Series(valid & ~dominates.any(axis=0), index=df.index, name="pareto")


def pareto_front(
    df: pd.DataFrame,
    quality: str = "test_accuracy_mean",
    cost: str = "latency_ms_mean",
    maximise_quality: bool = True,
) -> pd.DataFrame:
    """The rows of ``df`` on the Pareto front, cheapest first (best quality first among equal costs)."""
    front = df[pareto_mask(df, quality, cost, maximise_quality)]
    return front.sort_values([cost, quality], ascending=[True, not maximise_quality], kind="stable")


def pareto_fronts(
    df: pd.DataFrame,
    costs: list[str] | tuple[str, ...] = DEFAULT_COSTS,
    quality: str = "test_accuracy_mean",
    label: str = "method",
    maximise_quality: bool = True,
) -> dict[str, list[str]]:
    """For each cost column, the ``label`` values on the quality-against-that-cost front, cheapest first."""
    _require_columns(df, label)
    return {
        cost: [str(v) for v in pareto_front(df, quality, cost, maximise_quality)[label]] for cost in costs
    }
