"""Data size and data quality as study factors: accuracy curves, where distillation helps, and what
more labels would buy.

Reads the comparison table (one row per arm, ``<metric>_mean`` / ``_std`` / ``_ci_low`` / ``_ci_high``)
and the paired tests of :mod:`distillation_studies.analysis.comparison`. A *data cell* is (student,
label fraction, transfer set, label-noise rate); inside a cell every method is paired by seed with the
``ce`` baseline of the same cell, which trains on the same labelled samples (in a transfer-set cell,
on those samples alone), so a difference is a gain at equal labels. The only comparisons *across*
cells are :func:`label_gains` ("what would more labels buy me?"): computed here, unpaired, and outside
the per-cell families that the table, the paired tests and the recommendation read.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from distillation_studies.analysis.comparison import CELL, CELL_DEFAULTS, baseline_pairs
from distillation_studies.common.records import LABEL_FRACTION, LABEL_NOISE, TRANSFER_SET, DataCell

DATA_CELL = CELL  # a data cell is the comparison's cell
METRIC = "test_accuracy"


def with_cell_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every cell column (a factor added later is absent from older runs: its default)."""
    table = table.copy()
    for column, default in CELL_DEFAULTS.items():
        if column not in table:
            table[column] = default
        table[column] = table[column].fillna(default).astype(type(default))
    return table


def has_data_factors(table: pd.DataFrame) -> bool:
    """Whether the study varies data size or quality (more than one label fraction, a transfer set or noise)."""
    table = with_cell_columns(table)
    return bool(table[LABEL_FRACTION].nunique() > 1 or table[TRANSFER_SET].any() or (table[LABEL_NOISE] > 0).any())


def at_other_defaults(table: pd.DataFrame, shown: set[str]) -> pd.DataFrame:
    """The rows of a curve against the ``shown`` factors: every other factor at its default (all labels,
    clean, ...) wherever the study has a cell there, so that a curve never mixes other cells' arms."""
    for column, default in DataCell().as_dict().items():
        if column not in shown and (table[column] == default).any():
            table = table[table[column] == default]
    return table


def fraction_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The arms of the label-fraction curve: at noise 0 when the study has a noise-free cell, and with
    each method's full-label arms repeated as its transfer-set series' 100% point (with every label
    there is no unlabelled rest, so the series with and without transfer set meet there)."""
    table = at_other_defaults(with_cell_columns(table), {LABEL_FRACTION, TRANSFER_SET})
    with_transfer = set(table.loc[table[TRANSFER_SET], "method"])
    shared = table[(table[LABEL_FRACTION] >= 1.0) & table["method"].isin(with_transfer)].assign(**{TRANSFER_SET: True})
    return pd.concat([table, shared], ignore_index=True)


def factor_curve(table: pd.DataFrame, factor: str, metric: str = METRIC) -> pd.DataFrame:
    """Per method (and transfer set), ``metric`` mean and CI over seeds at each value of ``factor``.

    ``factor`` is ``label_fraction`` (rows of :func:`fraction_rows`) or ``label_noise`` (rows at full labels when present, without transfer sets).
    Columns: method, transfer_set, label_fraction, label_noise, seeds, mean, ci_low, ci_high.
    """
    table = fraction_rows(table) if factor == LABEL_FRACTION else with_cell_columns(table)
    if factor == LABEL_NOISE:
        table = at_other_defaults(table[~table[TRANSFER_SET]], {LABEL_NOISE})
    columns = {f"{metric}_mean": "mean", f"{metric}_ci_low": "ci_low", f"{metric}_ci_high": "ci_high"}
    keep = ["method", "student", TRANSFER_SET, LABEL_FRACTION, LABEL_NOISE, "seeds", *columns]
    curve = table[keep].rename(columns=columns)
    return curve.sort_values(["method", "student", TRANSFER_SET, factor], kind="stable").reset_index(drop=True)


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
    gains["_cell"] = [DataCell.from_row(row).sort_key() for _, row in gains.iterrows()]  # best data first
    gains["_order"] = -gains["gain"]
    gains = gains.sort_values(["_cell", "student", "_order"], kind="stable")
    return gains.drop(columns=["_cell", "_order"]).reset_index(drop=True)


LABEL_GAIN_COLUMNS = [
    "method", "student", TRANSFER_SET, LABEL_NOISE, LABEL_FRACTION, "arm", "seeds", "reference_fraction",
    "reference_arm", "reference_seeds", "gain", "gain_ci_low", "gain_ci_high", "p_value",
    "baseline_arm", "baseline_seeds", "to_baseline", "to_baseline_ci_low", "to_baseline_ci_high", "to_baseline_p_value",
]


def label_gains(table: pd.DataFrame, metric: str = METRIC, confidence: float = 0.95, baseline: str = "ce") -> pd.DataFrame:
    """Across cells: per arm below the study's largest label fraction, what that fraction adds to the
    same method (``gain`` = reference mean - arm mean), and how far the arm is from ``baseline`` at that
    fraction (``to_baseline`` = arm mean - baseline mean: "kd at 10% against ce at 100%"), each with a
    Welch interval and an unadjusted Welch p-value.

    The reference shares the arm's method, student and noise rate, at the largest label fraction, with
    the same transfer-set flag when that cell has one (a full-label cell has none); the baseline arm
    likewise. Different cells train on different samples, so seeds are not paired, and these tests are
    in no per-cell family: they answer "what would more labels buy me?", not "which method should I use?".
    Arms without a reference are left out; without a baseline arm, the ``*_baseline`` columns are empty.
    """
    table = with_cell_columns(table)
    std = table[f"{metric}_std"] if f"{metric}_std" in table else pd.Series(math.nan, index=table.index)
    table = table.assign(_mean=table[f"{metric}_mean"].astype(float), _std=std.astype(float), _n=table["seeds"].astype(int))
    top = table[LABEL_FRACTION].max()
    rows = []
    for _, row in table[table[LABEL_FRACTION] < top].iterrows():
        reference, base = _at_fraction(table, row, row["method"], top), _at_fraction(table, row, baseline, top)
        if reference is None:
            continue
        to_base = {"baseline_arm": None, "baseline_seeds": 0, "to_baseline": math.nan, "to_baseline_ci_low": math.nan,
                   "to_baseline_ci_high": math.nan, "to_baseline_p_value": math.nan}
        if base is not None:
            welch = _welch(row["_mean"], row["_std"], int(row["_n"]), base["_mean"], base["_std"], int(base["_n"]), confidence)
            to_base = {"baseline_arm": base["arm"], "baseline_seeds": int(base["_n"]), "to_baseline": welch["gain"],
                       "to_baseline_ci_low": welch["gain_ci_low"], "to_baseline_ci_high": welch["gain_ci_high"],
                       "to_baseline_p_value": welch["p_value"]}
        rows.append({
            **{k: row[k] for k in LABEL_GAIN_COLUMNS[:6]},
            "seeds": int(row["_n"]), "reference_fraction": float(top), "reference_arm": reference["arm"],
            "reference_seeds": int(reference["_n"]),
            **_welch(reference["_mean"], reference["_std"], int(reference["_n"]), row["_mean"], row["_std"], int(row["_n"]), confidence),
            **to_base,
        })
    gains = pd.DataFrame(rows, columns=LABEL_GAIN_COLUMNS)
    return gains.sort_values([LABEL_NOISE, "student", "method", TRANSFER_SET, LABEL_FRACTION],
                             ascending=[True, True, True, True, False], kind="stable").reset_index(drop=True)


def _at_fraction(table: pd.DataFrame, row: pd.Series, method: str, fraction: float) -> pd.Series | None:
    """``method``'s arm at ``fraction`` for ``row``'s student and every other factor of its cell: with
    ``row``'s transfer-set flag when there is one, else without a transfer set; None when the study has neither."""
    wanted = DataCell.from_row(row)
    same = table[(table["method"] == method) & (table["student"] == row["student"])]
    for cell in (wanted.replace(label_fraction=fraction), wanted.replace(label_fraction=fraction, transfer_set=False)):
        found = same[[DataCell.from_row(other) == cell for _, other in same.iterrows()]]
        if not found.empty:
            return found.iloc[0]
    return None


def _welch(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int, confidence: float) -> dict[str, float]:
    """Difference a - b of two independent means: Welch-Satterthwaite interval and two-sided p (NaN below 2 seeds)."""
    diff = mean_a - mean_b
    if min(n_a, n_b) < 2 or math.isnan(std_a) or math.isnan(std_b):
        return {"gain": diff, "gain_ci_low": math.nan, "gain_ci_high": math.nan, "p_value": math.nan}
    va, vb = std_a**2 / n_a, std_b**2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return {"gain": diff, "gain_ci_low": diff, "gain_ci_high": diff, "p_value": math.nan}
    df = se**4 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return {"gain": diff, "gain_ci_low": diff - half, "gain_ci_high": diff + half, "p_value": p}


def labels_changed(runs_or_table: pd.DataFrame) -> pd.DataFrame:
    """Per noise rate, the fraction of training labels the noise model actually changed (mean over arms)."""
    if "labels_changed" not in runs_or_table:
        return pd.DataFrame(columns=[LABEL_NOISE, "labels_changed"])
    table = with_cell_columns(runs_or_table)
    return table.groupby(LABEL_NOISE, as_index=False)["labels_changed"].mean()
