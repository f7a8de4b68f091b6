"""Method comparison across seeds: setting selection on validation, statistics and one family of paired tests.

Rows of ``runs`` are (arm, seed) evaluations. An arm is a (method, setting, student, data cell)
grid point; a *cell* is (student, data cell), inside which methods are compared with the
baselines. When a method sweeps hyperparameters, its setting is picked per cell on mean validation
accuracy, and only the picked setting's test results enter the comparison.

Sign convention, everywhere: a difference is *row arm minus reference arm*, in the metric's own
units, whatever the metric's direction; the verdict (``better``/``worse``) applies the direction.

A user's data (label fraction, transfer set, noise rate) and student are their situation, not a
choice, so arms are compared only within their data cell: every pair of arms *of one cell* is tested
once per metric, and p-values are adjusted per (metric, cell) family, the pairs of that cell. The
table, the paired-tests output and the recommender (one answer per cell) all read these families.
Per cell, because the answer a user gets for their situation should not weaken as a study adds
other situations (more fractions or noise rates) that are not theirs. Comparisons across cells ("what
would more labels buy?") belong to :mod:`~distillation_studies.analysis.data_factors`, outside these families.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from distillation_studies.common.names import DEFAULT_STUDENT
from distillation_studies.common.records import DataCell, RunLabels
from distillation_studies.analysis.metrics import (
    COST_METRICS,
    QUALITY_METRICS,
    SELECTION_METRIC,
    TESTED_METRICS,
    reported_metric,
)
from distillation_studies.analysis.stats import Statistics, adjust_p_values, mean_ci, paired_difference, summarise_by_group

CELL = ["student", *DataCell.columns()]  # where arms are compared: the student and the data cell
CELL_DEFAULTS = {"student": DEFAULT_STUDENT, **DataCell().as_dict()}  # for the columns older runs lack
ARM_LABELS = RunLabels.arm_columns()


def _cell(runs: pd.DataFrame) -> list[str]:
    """The cell columns a table has (factors added later are absent from older runs)."""
    return [c for c in CELL if c in runs.columns]


# Verdict codes of one pair (the report puts them in words).
BASELINE, NO_BASELINE, NOT_TESTABLE, WITHIN_NOISE, BETTER, WORSE = (
    "baseline", "no_baseline", "not_testable", "within_noise", "better", "worse"
)
TEST_COLUMNS = [
    "metric", "arm", "reference", "arm_method", "reference_method", *CELL, "same_cell", "n_pairs",
    "diff_mean", "diff_std", "diff_ci_low", "diff_ci_high", "p_value", "p_adjusted", "within_noise", "verdict",
]
# Per (metric, baseline) columns of the wide table, read from the tests of the arm against the baseline.
PAIR_COLUMNS = {
    "diff": "diff_mean", "diff_ci_low": "diff_ci_low", "diff_ci_high": "diff_ci_high", "n_pairs": "n_pairs",
    "p": "p_value", "p_adjusted": "p_adjusted", "within_noise": "within_noise", "verdict": "verdict",
}


def select_settings(runs: pd.DataFrame, confidence: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep, per (method, cell), the arm with the best mean validation accuracy; report every arm's.

    Returns the runs of the selected arms and a sensitivity table (validation only: test results of
    settings that were not selected are never reported).
    """
    summary = summarise_by_group(runs, [SELECTION_METRIC], "arm", confidence)
    labels = runs.drop_duplicates("arm").set_index("arm")
    hp_columns = [c for c in runs.columns if c.startswith("hp_")]
    summary = summary.join(labels[["method", "setting", *_cell(runs), *hp_columns]], on="arm")
    best = summary.loc[summary.groupby(["method", *_cell(runs)], sort=False)[f"{SELECTION_METRIC}_mean"].idxmax(), "arm"]
    summary["selected"] = summary["arm"].isin(set(best))
    return runs[runs["arm"].isin(set(best))].reset_index(drop=True), summary


def pair_verdict(n_pairs: int, diff: float, p_adjusted: float, significance: float, higher_is_better: bool) -> str:
    """``not_testable`` below 2 shared seeds, ``within_noise`` unless the adjusted p is below
    ``significance``, else ``better`` or ``worse`` in the metric's direction."""
    if n_pairs < 2 or math.isnan(p_adjusted):
        return NOT_TESTABLE
    if p_adjusted >= significance:
        return WITHIN_NOISE
    return BETTER if (diff > 0) == higher_is_better else WORSE


def arm_order(runs: pd.DataFrame, baselines: tuple[str, ...] | list[str], group: str = "arm") -> list[str]:
    """Arms in test order: the baselines' arms first (in baseline order), then the rest as first seen.

    Each pair is stored once as (later arm, earlier arm), so a method is stored against a baseline and
    ``kd`` against ``ce``; :func:`oriented` adds the mirrored view.
    """
    arms = list(dict.fromkeys(runs[group]))
    methods = runs.drop_duplicates(group).set_index(group)["method"] if "method" in runs else pd.Series(arms, arms)
    first = [a for b in baselines for a in arms if methods[a] == b]
    return first + [a for a in arms if a not in first]


def pairwise_tests(
    runs: pd.DataFrame,
    statistics: Statistics,
    metrics: list[str] | tuple[str, ...] = tuple(TESTED_METRICS),
    group: str = "arm",
) -> pd.DataFrame:
    """Every pair of arms *of one data cell*, paired by seed, once per metric; p-values adjusted per
    (metric, cell) family.

    ``runs`` has one row per (``group``, seed); ``method`` and the cell columns are used when present
    (without cell columns the whole table is one cell). Each row: the pair's cell (``CELL`` columns,
    defaults where the runs lack one; ``same_cell`` is always true), the mean of per-seed differences
    (``arm`` - ``reference``) over the shared seeds, their std and Student-t interval, the paired test's
    p-value, the p-value adjusted by ``statistics.correction`` over the pairs of the metric in the same
    cell, ``within_noise`` and the verdict code. Arms of different cells are never paired here.
    """
    order = arm_order(runs, statistics.baselines, group)
    by_arm = {arm: runs[runs[group] == arm].set_index("seed") for arm in order}
    labels = runs.drop_duplicates(group).set_index(group)
    cells = {arm: arm_cell(labels.loc[arm]) for arm in order}
    rows = []
    for metric in metrics:
        for i, reference in enumerate(order):
            for arm in [a for a in order[i + 1 :] if cells[a] == cells[reference]]:
                rows.append(
                    {
                        "metric": metric, "arm": arm, "reference": reference,
                        "arm_method": _label(labels, arm, "method"), "reference_method": _label(labels, reference, "method"),
                        **cells[arm], "same_cell": True,
                        **_paired(by_arm[arm][metric], by_arm[reference][metric], statistics.confidence),
                    }
                )
    tests = pd.DataFrame(rows, columns=TEST_COLUMNS[:-3])
    tests["p_adjusted"] = math.nan
    for _, rows_of_family in tests.groupby(["metric", *CELL], sort=False, dropna=False).groups.items():
        p = tests.loc[rows_of_family, "p_value"].to_numpy(dtype=float)
        tests.loc[rows_of_family, "p_adjusted"] = adjust_p_values(p, statistics.correction)
    tests["within_noise"] = [bool(n < 2 or math.isnan(p) or p >= statistics.significance)
                             for n, p in zip(tests["n_pairs"], tests["p_adjusted"])]
    tests["verdict"] = [
        pair_verdict(int(n), d, p, statistics.significance, reported_metric(m).higher_is_better)
        for m, n, d, p in zip(tests["metric"], tests["n_pairs"], tests["diff_mean"], tests["p_adjusted"])
    ]
    return tests


def arm_cell(labels: pd.Series) -> dict[str, object]:
    """An arm's cell (one row of arm labels) as a dict of ``CELL`` columns, with defaults for the columns older runs lack."""
    student = labels.get("student", DEFAULT_STUDENT)
    student = DEFAULT_STUDENT if student is None or (isinstance(student, float) and math.isnan(student)) else student
    return {"student": student, **DataCell.from_row(labels).as_dict()}


def in_cell(frame: pd.DataFrame, cell: dict[str, object]) -> pd.Series:
    """Rows of ``frame`` (arms or tests) in ``cell``: absent cell columns take their default."""
    rows = [arm_cell(row) == cell for _, row in frame.iterrows()]
    return pd.Series(rows, index=frame.index, dtype=bool)


def _label(labels: pd.DataFrame, arm: str, column: str):
    return labels.at[arm, column] if column in labels.columns else arm


def _paired(values: pd.Series, reference: pd.Series, confidence: float) -> dict[str, float]:
    paired = pd.concat([values.rename("value"), reference.rename("reference")], axis=1, join="inner").dropna()
    a, b = paired["value"].to_numpy(dtype=float), paired["reference"].to_numpy(dtype=float)
    ci = mean_ci(a - b, confidence)
    test = paired_difference(a, b)
    return {
        "n_pairs": len(a), "diff_mean": test["diff_mean"], "diff_std": ci["std"],
        "diff_ci_low": ci["ci_low"], "diff_ci_high": ci["ci_high"], "p_value": test["p_value"],
    }


def mirrored(tests: pd.DataFrame) -> pd.DataFrame:
    """The same tests seen from the other side: ``ce`` against ``kd`` is minus ``kd`` against ``ce``."""
    flipped = tests.copy()
    flipped["arm"], flipped["reference"] = tests["reference"], tests["arm"]
    flipped["arm_method"], flipped["reference_method"] = tests["reference_method"], tests["arm_method"]
    flipped["diff_mean"] = -tests["diff_mean"]
    flipped["diff_ci_low"], flipped["diff_ci_high"] = -tests["diff_ci_high"], -tests["diff_ci_low"]
    flipped["verdict"] = tests["verdict"].replace({BETTER: WORSE, WORSE: BETTER})
    return flipped


def oriented(tests: pd.DataFrame) -> pd.DataFrame:
    """Every test in both orientations, for lookups by (metric, arm, reference)."""
    return pd.concat([tests, mirrored(tests)], ignore_index=True)


def comparison_table(runs: pd.DataFrame, statistics: Statistics) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per arm: mean/std/CI of every metric; per tested metric and baseline, the arm's pair with that
    baseline's arm of its own cell (difference, interval, p, adjusted p, verdict code).

    Returns the wide table and the paired tests it reads (every pair of arms within a cell, every tested metric).
    """
    metrics = [m for m in QUALITY_METRICS + COST_METRICS if m in runs.columns]
    summary = summarise_by_group(runs, metrics, "arm", statistics.confidence)
    labels = runs.drop_duplicates("arm").set_index("arm")[[c for c in ARM_LABELS if c != "arm" and c in runs]]
    table = summary.join(labels, on="arm").join(failure_flags(runs), on="arm")
    tests = pairwise_tests(runs, statistics, [m for m in TESTED_METRICS if m in runs.columns])
    both = oriented(tests)
    for baseline in statistics.baselines:
        against = both[(both["reference_method"] == baseline) & both["same_cell"]]
        for metric in TESTED_METRICS:
            if metric not in runs.columns:
                continue
            part = against[against["metric"] == metric].set_index("arm")
            for suffix, column in PAIR_COLUMNS.items():
                table[f"{metric}_{suffix}_vs_{baseline}"] = table["arm"].map(part[column])
            verdicts = table[f"{metric}_verdict_vs_{baseline}"]
            table[f"{metric}_verdict_vs_{baseline}"] = np.where(
                table["method"] == baseline, BASELINE, verdicts.where(verdicts.notna(), NO_BASELINE)
            )
    return table, tests


def failure_flags(runs: pd.DataFrame) -> pd.DataFrame:
    """Per arm: ``usable`` (no seed flagged at training) and ``failure`` (each flagged seed's reason).

    One diverged or chance-level seed makes the whole arm unusable: its mean would mix in garbage.
    """
    flagged = runs["failure"].fillna("").astype(str) if "failure" in runs else pd.Series("", index=runs.index)
    rows = {}
    for arm, group in runs.assign(_failure=flagged).groupby("arm", sort=False):
        reasons = [f"seed {seed}: {reason}" for seed, reason in zip(group["seed"], group["_failure"]) if reason]
        rows[arm] = {"usable": not reasons, "failure": "; ".join(reasons)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["usable", "failure"])


def baseline_pairs(tests: pd.DataFrame, baselines: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """The tests the table reads: each arm against each baseline of its cell, oriented arm - baseline;
    a pair of baselines once (the later against the earlier), since its mirror adds nothing."""
    both = oriented(tests)
    order = {b: i for i, b in enumerate(baselines)}
    earlier_baseline = both["arm_method"].map(order).lt(both["reference_method"].map(order))
    rows = both[
        both["reference_method"].isin(list(baselines)) & both["same_cell"]
        & (both["arm_method"] != both["reference_method"]) & ~earlier_baseline
    ]
    metric_order = {m: i for i, m in enumerate(dict.fromkeys(tests["metric"]))}
    return rows.sort_values(
        ["metric", "reference_method", "arm"],
        key=lambda c: c.map(metric_order) if c.name == "metric" else c.map(order) if c.name == "reference_method" else c,
        kind="stable",
    ).reset_index(drop=True)


def family_size(tests: pd.DataFrame, metric: str, cell: dict[str, object] | None = None) -> int:
    """How many testable pairs share one correction family: the pairs of ``metric`` in ``cell``.

    Without ``cell``, ``tests`` must hold one cell's tests (as the recommender passes them).
    """
    rows = tests[tests["metric"] == metric]
    if cell is not None:
        rows = rows[in_cell(rows, cell)]
    return int(rows["p_value"].notna().sum())


def family_sizes(tests: pd.DataFrame, metric: str) -> list[int]:
    """The size of each cell's family of ``metric`` (one per cell that has a pair), largest first."""
    rows = tests[(tests["metric"] == metric) & tests["p_value"].notna()]
    columns = [c for c in CELL if c in rows]  # tests saved before cells were columns: one family
    if rows.empty or not columns:
        return [len(rows)] if len(rows) else []
    return sorted((int(n) for n in rows.groupby(columns, sort=False, dropna=False).size()), reverse=True)
