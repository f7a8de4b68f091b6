"""Data size and data quality as study factors: accuracy curves and where distillation helps.

Reads the comparison table (one row per arm, ``<metric>_mean`` / ``_ci_low`` / ``_ci_high``) and the
paired tests of :mod:`distillation_studies.analysis.comparison`. A *data cell* is (student, label
fraction, transfer set, label-noise rate); inside a cell every method is paired by seed with the
``ce`` baseline of the same cell, which trains on the same labelled samples (in a transfer-set cell,
on those samples alone), so a difference is a gain at equal labels.
"""

from __future__ import annotations

import math

import pandas as pd

from distillation_studies.analysis.comparison import CELL, CELL_DEFAULTS, baseline_pairs

DATA_CELL = CELL  # a data cell is the comparison's cell
METRIC = "test_accuracy"


def with_cell_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every data-cell column (older runs lack transfer_set and label_noise)."""
    table = table.copy()
    for column, default in CELL_DEFAULTS.items():
        if column not in table:
            table[column] = default
    table["transfer_set"] = table["transfer_set"].fillna(False).astype(bool)
    table["label_noise"] = table["label_noise"].fillna(0.0).astype(float)
    return table


def has_data_factors(table: pd.DataFrame) -> bool:
    """Whether the study varies data size or quality (more than one label fraction, a transfer set or noise)."""
    table = with_cell_columns(table)
    return bool(table["label_fraction"].nunique() > 1 or table["transfer_set"].any() or (table["label_noise"] > 0).any())


def fraction_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The arms of the label-fraction curve: at noise 0 when the study has a noise-free cell, and with
    each method's full-label arms repeated as its transfer-set series' 100% point (with every label
    there is no unlabelled rest, so the series with and without transfer set meet there)."""
    table = with_cell_columns(table)
    if (table["label_noise"] == 0).any():
        table = table[table["label_noise"] == 0]
    with_transfer = set(table.loc[table["transfer_set"], "method"])
    shared = table[(table["label_fraction"] >= 1.0) & table["method"].isin(with_transfer)].assign(transfer_set=True)
    return pd.concat([table, shared], ignore_index=True)


def factor_curve(table: pd.DataFrame, factor: str, metric: str = METRIC) -> pd.DataFrame:
    """Per method (and transfer set), ``metric`` mean and CI over seeds at each value of ``factor``.

    ``factor`` is ``label_fraction`` (rows of :func:`fraction_rows`) or ``label_noise`` (rows at full labels when present, without transfer sets).
    Columns: method, transfer_set, label_fraction, label_noise, seeds, mean, ci_low, ci_high.
    """
    table = fraction_rows(table) if factor == "label_fraction" else with_cell_columns(table)
    if factor == "label_noise":
        table = table[~table["transfer_set"]]
        if (table["label_fraction"] == 1.0).any():
            table = table[table["label_fraction"] == 1.0]
    columns = {f"{metric}_mean": "mean", f"{metric}_ci_low": "ci_low", f"{metric}_ci_high": "ci_high"}
    keep = ["method", "student", "transfer_set", "label_fraction", "label_noise", "seeds", *columns]
    curve = table[keep].rename(columns=columns)
    return curve.sort_values(["method", "student", "transfer_set", factor], kind="stable").reset_index(drop=True)


def distillation_gains(
    table: pd.DataFrame, tests: pd.DataFrame, baseline: str = "ce", metric: str = METRIC, significance: float = 0.05
) -> pd.DataFrame:
    """Per data cell and method, the paired gain over ``baseline`` at equal labels, with its CI and the
    adjusted p-value of the comparison (adjusted over the pairs of its cell, as in the comparison table
    and the recommendation).

    Columns: the data cell, method, arm, seeds (pairs), gain, gain_ci_low, gain_ci_high, p_adjusted,
    helps (significantly better), hurts (significantly worse). Sorted by cell, then gain (largest first).
    """
    table = with_cell_columns(table)
    pairs = baseline_pairs(tests, [baseline])  # each arm against the baseline of its cell, arm - baseline
    by_arm = pairs[pairs["metric"] == metric].set_index("arm")
    rows = []
    for _, row in table[table["method"] != baseline].iterrows():
        if row["arm"] not in by_arm.index:
            continue  # no baseline in its cell
        test = by_arm.loc[row["arm"]]
        p = float(test["p_adjusted"])
        gain = float(test["diff_mean"])
        significant = not math.isnan(p) and p < significance
        rows.append(
            {
                **{column: row[column] for column in DATA_CELL},
                "method": row["method"],
                "arm": row["arm"],
                "seeds": int(test["n_pairs"]),
                "gain": gain,
                "gain_ci_low": float(test["diff_ci_low"]),
                "gain_ci_high": float(test["diff_ci_high"]),
                "p_adjusted": p,
                "helps": significant and gain > 0,
                "hurts": significant and gain < 0,
            }
        )
    columns = [*DATA_CELL, "method", "arm", "seeds", "gain", "gain_ci_low", "gain_ci_high", "p_adjusted", "helps", "hurts"]
    gains = pd.DataFrame(rows, columns=columns)
    if gains.empty:
        return gains
    gains["_order"] = -gains["gain"]
    gains = gains.sort_values(["label_noise", "label_fraction", "transfer_set", "student", "_order"], ascending=[True, False, True, True, True])
    return gains.drop(columns="_order").reset_index(drop=True)


def labels_changed(runs_or_table: pd.DataFrame) -> pd.DataFrame:
    """Per noise rate, the fraction of training labels the noise model actually changed (mean over arms)."""
    if "labels_changed" not in runs_or_table:
        return pd.DataFrame(columns=["label_noise", "labels_changed"])
    table = with_cell_columns(runs_or_table)
    return table.groupby("label_noise", as_index=False)["labels_changed"].mean()
