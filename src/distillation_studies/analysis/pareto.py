"""Quality-against-cost Pareto fronts over a comparison table (one row per method or setting).

Counted costs (parameters, FLOPs) are exact. Timed costs (latency, training time) vary from run to
run, so a timed cost is an interval, not a point (:func:`cost_bounds`): two arms whose intervals
overlap cost the same as far as the study can tell, and neither is cheaper on the front. Inference
latency belongs to the network, not to the method that trained it: arms that deploy the same network
(equal parameters and FLOPs) share one latency interval, spanning every measurement of that network.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_COSTS = ("parameters_mean", "flops_mean", "latency_ms_mean", "train_time_s_mean")
TIMED_COSTS = ("latency_ms", "train_time_s")  # measured with a clock: noisy from run to run
NETWORK_COSTS = ("parameters", "flops")  # what identifies the deployed network
INFERENCE_TIMES = ("latency_ms",)  # a property of the deployed network, whatever trained it


def _require_columns(df: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"Pareto front: table has no column {missing[0]!r}; columns: {list(df.columns)}")


def _stem(column: str) -> str:
    return column.removesuffix("_mean")


def _values(df: pd.DataFrame, column: str) -> np.ndarray:
    if column not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)


def cost_bounds(df: pd.DataFrame, cost: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the low and high end of what ``cost`` (``<stem>_mean`` or ``<stem>``) is known to within.

    Counted costs: the value itself. Timed costs: the row's interval over seeds (``<stem>_ci_low`` /
    ``_ci_high``; the mean alone where the interval is unknown), and for inference latency the union of
    those intervals over every row deploying the same network (equal ``parameters_mean`` and
    ``flops_mean``, when the table has both), whose differences are run-to-run noise by construction.
    """
    stem = _stem(cost)
    mean = _values(df, cost if cost in df.columns else f"{stem}_mean")
    if stem not in TIMED_COSTS:
        return mean, mean.copy()
    low, high = _values(df, f"{stem}_ci_low"), _values(df, f"{stem}_ci_high")
    low, high = np.where(np.isnan(low), mean, np.fmin(low, mean)), np.where(np.isnan(high), mean, np.fmax(high, mean))
    network = [f"{c}_mean" for c in NETWORK_COSTS]
    if stem in INFERENCE_TIMES and set(network) <= set(df.columns):
        groups = df[network].astype(float).round(6).astype(str).agg("|".join, axis=1).to_numpy()
        bounds = pd.DataFrame({"group": groups, "low": low, "high": high}).groupby("group")
        low = bounds["low"].transform("min").to_numpy(dtype=float)
        high = bounds["high"].transform("max").to_numpy(dtype=float)
    return low, high


def within_noise(df: pd.DataFrame, cost: str) -> np.ndarray:
    """``[i, j]``: whether rows i and j cannot be told apart on ``cost`` (their :func:`cost_bounds` overlap)."""
    low, high = cost_bounds(df, cost)
    return (low[:, None] <= high[None, :]) & (low[None, :] <= high[:, None])


def pareto_mask(
    df: pd.DataFrame,
    quality: str = "test_accuracy_mean",
    cost: str = "latency_ms_mean",
    maximise_quality: bool = True,
) -> pd.Series:
    """True for rows no other row dominates (cost <= and quality at least as good, one of them strictly).

    Costs compare by :func:`cost_bounds`: a row is cheaper only when its whole interval is below the
    other's, and costs whose intervals overlap count as equal, so a timed-cost difference smaller than
    its run-to-run noise never puts a row on or off the front. Identical points do not dominate each
    other, so both stay. Rows with a missing (NaN) quality or cost are never on the front and dominate
    nothing. Aligned with ``df.index``.
    """
    _require_columns(df, quality, cost)
    q = df[quality].to_numpy(dtype=float)
    low, high = cost_bounds(df, cost)
    if not maximise_quality:
        q = -q
    valid = ~(np.isnan(q) | np.isnan(low) | np.isnan(high))
    # dominates[j, i]: row j dominates row i.
    no_worse = (low[:, None] <= high[None, :]) & (q[:, None] >= q[None, :])
    strictly = (high[:, None] < low[None, :]) | (q[:, None] > q[None, :])
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


def flat_costs(df: pd.DataFrame, costs: list[str] | tuple[str, ...]) -> list[str]:
    """The counted ``costs`` with one value over every row (every arm deploys or trains the same network):
    a plot against them would stack every arm on one x. Timed costs are never flat: their spread over
    seeds is worth showing, and :func:`pareto_mask` keeps it from ranking anything."""
    return [
        cost for cost in costs
        if _stem(cost) not in TIMED_COSTS and cost in df.columns and df[cost].dropna().nunique() == 1
    ]
