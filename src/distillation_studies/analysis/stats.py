"""Across-seed statistics: means with t confidence intervals, paired differences, p-value corrections, power."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Statistics:
    """The one statistics section (``comparison:`` in conf) that the table, the paired tests and the
    recommender all read, so a pair of arms gets one difference and one verdict everywhere."""

    baselines: tuple[str, ...] = ("ce", "kd")
    confidence: float = 0.95
    significance: float = 0.05
    correction: str = "holm"
    # The smallest difference of the ranked metric worth detecting, in its own units (0.005: half a point
    # of accuracy). A leader and runner-up closer than this are called equivalent instead of asking for
    # hundreds of seeds to separate them. 0: every difference is worth detecting (the analysis default;
    # conf/base sets comparison.smallest_difference).
    smallest_difference: float = 0.0


def _scipy_stats():
    """``scipy.stats``, imported at first use: the study's schema reads this module in every process (a Dask
    worker's too), and few of them compute a statistic; the import costs about 0.8 s."""
    from scipy import stats

    return stats


def t_half_width(std: float, n: float, confidence: float) -> float:
    """Half the width of the two-sided Student-t interval of a mean of ``n`` values with sample std ``std``."""
    return float(_scipy_stats().t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std and the half-width of the two-sided Student-t interval (NaN below 2 values)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    std = float(values.std(ddof=1))
    half = t_half_width(std, n, confidence)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def paired_difference(values: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Mean of per-seed differences and the two-sided paired t-test p-value (NaN when undefined)."""
    diff = np.asarray(values, dtype=float) - np.asarray(baseline, dtype=float)
    if len(diff) < 2:
        return {"diff_mean": float(diff.mean()) if len(diff) else math.nan, "p_value": math.nan}
    if np.allclose(diff, diff[0], rtol=1e-4, atol=1e-6):
        # Zero variance (up to float32 rounding of the metrics) leaves the t statistic undefined. Near-zero differences are rounding noise (p = 1);
        # a constant non-zero shift (common on discrete metrics: every seed one test image apart) gets the
        # exact two-sided sign test, 2 * 0.5**n, instead of a spurious p = 0.
        if np.allclose(diff, 0.0, atol=1e-6):
            return {"diff_mean": float(diff.mean()), "p_value": 1.0}
        return {"diff_mean": float(diff.mean()), "p_value": float(_scipy_stats().binomtest(len(diff), len(diff)).pvalue)}
    return {"diff_mean": float(diff.mean()), "p_value": float(_scipy_stats().ttest_rel(values, baseline).pvalue)}


def summarise_by_group(
    runs: pd.DataFrame, metrics: list[str], group: str = "method", confidence: float = 0.95
) -> pd.DataFrame:
    """One row per ``group`` value, in first-seen order: seed count and mean/std/CI of every metric.

    Differences between arms are ``analysis.comparison.pairwise_tests``'s job, corrected per (metric, data cell) family.
    """
    rows = []
    for name, part in runs.groupby(group, sort=False):
        row: dict[str, float | str] = {group: name, "seeds": len(part)}
        for metric in metrics:
            summary = mean_ci(part[metric].to_numpy(), confidence)
            row.update({f"{metric}_{k}": v for k, v in summary.items() if k != "n"})
        rows.append(row)
    return pd.DataFrame(rows)


# --- Decision statistics: multiple comparisons, seeds needed ------------------------------------------------

P_ADJUSTMENTS = ("holm", "bh", "none")


def adjust_p_values(p_values, method: str = "holm") -> np.ndarray:
    """Multiple-comparison adjusted p-values, in input order; NaNs pass through and are not counted.

    ``"holm"``: Holm-Bonferroni step-down (family-wise error rate); ``"bh"``: Benjamini-Hochberg via
    ``scipy.stats.false_discovery_control`` (false discovery rate); ``"none"``: unchanged.
    """
    if method not in P_ADJUSTMENTS:
        raise ValueError(f"p-value adjustment: unknown method {method!r}; allowed: {list(P_ADJUSTMENTS)}")
    p = np.array(p_values, dtype=float).reshape(-1)
    known = ~np.isnan(p)
    if ((p[known] < 0) | (p[known] > 1)).any():
        raise ValueError(f"p-values must lie in [0, 1], got {p[known].tolist()}")
    adjusted = p.copy()
    if method == "none" or not known.any():
        return adjusted
    values = p[known]
    if method == "bh":
        adjusted[known] = _scipy_stats().false_discovery_control(values, method="bh")
        return adjusted
    # Holm: the k-th smallest of m p-values is multiplied by (m - k + 1), then made monotone and capped at 1.
    m = len(values)
    order = np.argsort(values, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * values[order]))
    holm = np.empty(m)
    holm[order] = stepped
    adjusted[known] = holm
    return adjusted


def paired_t_power(n: int, effect_size: float, significance: float = 0.05) -> float:
    """Exact power of the two-sided paired t-test with ``n`` pairs at standardised effect mean/std."""
    stats, df = _scipy_stats(), n - 1
    critical = stats.t.ppf(1 - significance / 2, df)
    noncentrality = abs(effect_size) * math.sqrt(n)
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))


def seeds_needed(
    diff_mean: float,
    diff_std: float,
    significance: float = 0.05,
    power: float = 0.8,
    max_seeds: int = 1000,
) -> float:
    """Smallest number of paired seeds n >= 2 at which a two-sided paired t-test has ``power``.

    The effect is ``diff_mean / diff_std`` (std of the per-seed differences); power comes from the
    noncentral t distribution, not the normal approximation. Returns ``math.inf`` when ``diff_mean`` is 0
    (no number of seeds separates identical means) or ``max_seeds`` is not enough; 2 when ``diff_std`` is 0
    and ``diff_mean`` is not (a constant shift is detected with any 2 seeds). Non-finite or negative
    inputs raise ValueError.
    """
    if not (math.isfinite(diff_mean) and math.isfinite(diff_std)) or diff_std < 0:
        raise ValueError(f"seeds_needed: need a finite mean and a finite std >= 0, got {diff_mean}, {diff_std}")
    if not (0 < significance < 1 and 0 < power < 1):
        raise ValueError(f"seeds_needed: significance and power must lie in (0, 1), got {significance}, {power}")
    if diff_mean == 0:
        return math.inf
    if diff_std == 0:
        return 2
    effect = abs(diff_mean) / diff_std
    # The t-test is never more powerful than the z-test with known variance, so the exact answer sits at or
    # just above the normal-approximation n. Walk up from there: scipy's noncentral t turns unstable (NaN)
    # at the large noncentralities of near-certain power, which a bisection over [2, max_seeds] would hit.
    normal = _scipy_stats().norm
    z = normal.ppf(1 - significance / 2) + normal.ppf(power)
    n = max(2, math.floor((z / effect) ** 2) - 1)
    if n > max_seeds:
        return math.inf
    while n > 2 and paired_t_power(n - 1, effect, significance) >= power:
        n -= 1
    while n <= max_seeds:
        if paired_t_power(n, effect, significance) >= power:
            return n
        n += 1
    return math.inf
