"""Across-seed statistics: means with t confidence intervals and paired tests against a baseline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std and the half-width of the two-sided Student-t interval (NaN below 2 values)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def paired_difference(values: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Mean of per-seed differences and the two-sided paired t-test p-value (NaN when undefined)."""
    diff = np.asarray(values, dtype=float) - np.asarray(baseline, dtype=float)
    if len(diff) < 2:
        return {"diff_mean": float(diff.mean()) if len(diff) else math.nan, "p_value": math.nan}
    if np.allclose(diff, diff[0]):
        # Constant differences have zero variance: identical runs (p = 1) or a perfectly consistent shift.
        # Near-zero differences are rounding noise (p = 1) whatever the order of the seeds.
        return {"diff_mean": float(diff.mean()), "p_value": 1.0 if np.allclose(diff, 0.0) else 0.0}
    return {"diff_mean": float(diff.mean()), "p_value": float(stats.ttest_rel(values, baseline).pvalue)}


def summarise_by_method(
    runs: pd.DataFrame,
    metrics: list[str],
    baseline: str,
    confidence: float = 0.95,
    significance: float = 0.05,
) -> pd.DataFrame:
    """One row per method: mean/std/CI of every metric; paired difference to ``baseline`` per seed.

    ``runs`` has one row per (method, seed). A difference whose p-value is not below ``significance``
    is flagged ``within_noise``.
    """
    base = runs[runs["method"] == baseline].set_index("seed")
    rows = []
    for method, group in runs.groupby("method", sort=False):
        row: dict[str, float | str | bool] = {"method": method, "seeds": len(group)}
        for metric in metrics:
            summary = mean_ci(group[metric].to_numpy(), confidence)
            row.update({f"{metric}_{k}": v for k, v in summary.items() if k != "n"})
        if method != baseline and not base.empty:
            paired = group.set_index("seed").join(base[metrics], rsuffix="_base", how="inner")
            for metric in metrics:
                result = paired_difference(paired[metric].to_numpy(), paired[f"{metric}_base"].to_numpy())
                row[f"{metric}_diff_vs_{baseline}"] = result["diff_mean"]
                row[f"{metric}_p_vs_{baseline}"] = result["p_value"]
                p = result["p_value"]
                row[f"{metric}_within_noise"] = bool(math.isnan(p) or p >= significance)
        rows.append(row)
    return pd.DataFrame(rows)
