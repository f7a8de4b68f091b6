"""The comparison table and its family of paired tests, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from distillation_studies.analysis.comparison import (
    BASELINE,
    BETTER,
    NO_BASELINE,
    NOT_TESTABLE,
    WITHIN_NOISE,
    WORSE,
    comparison_table,
    family_size,
    pairwise_tests,
)
from distillation_studies.analysis.stats import Statistics

T_975_2 = 4.302653  # Student t quantile, 2 degrees of freedom
HALF_001 = T_975_2 * 0.01 / math.sqrt(3)  # CI half-width of three values with sample std 0.01: 0.024841


def study(values: dict[str, list[float]], nll: dict[str, list[float]] | None = None, cells: dict[str, str] | None = None):
    """(arm, seed) rows: arm = method, one cell unless ``cells`` gives an arm another student."""
    rows = []
    for arm, accuracies in values.items():
        for seed, accuracy in enumerate(accuracies):
            row = {"arm": arm, "method": arm, "seed": seed, "student": (cells or {}).get(arm, "student"),
                   "label_fraction": 1.0, "test_accuracy": accuracy}
            if nll:
                row["test_nll"] = nll[arm][seed]
            rows.append(row)
    return pd.DataFrame(rows).sample(frac=1.0, random_state=1).reset_index(drop=True)


ACCURACY = {
    "ce": [0.80, 0.82, 0.81],
    "kd": [0.83, 0.84, 0.85],  # kd - ce = 0.03, 0.02, 0.04 (mean 0.03, sd 0.01)
    "fitnet": [0.81, 0.82, 0.80],  # fitnet - ce = 0.01, 0, -0.01; fitnet - kd = -0.02, -0.02, -0.05
}
NLL = {"ce": [1.0, 0.9, 0.95], "kd": [0.97, 0.88, 0.91], "fitnet": [1.0, 0.9, 0.95]}  # kd - ce = -0.03, -0.02, -0.04
P_KD_CE = 1 - (t := 0.03 / (0.01 / math.sqrt(3))) / math.sqrt(t**2 + 2)  # two-sided, 2 df: 0.0351
P_FITNET_KD = 1 - 3 / math.sqrt(11)  # t = -3 with 2 df


def test_pairwise_tests_hand_checked():
    tests = pairwise_tests(study(ACCURACY), Statistics(baselines=("ce", "kd")), ["test_accuracy"])
    # Each pair once, baselines first: kd against ce, then each other arm against ce and kd.
    assert list(zip(tests["arm"], tests["reference"])) == [("kd", "ce"), ("fitnet", "ce"), ("fitnet", "kd")]
    tests = tests.set_index(["arm", "reference"])
    kd = tests.loc[("kd", "ce")]
    assert kd["n_pairs"] == 3 and kd["diff_mean"] == pytest.approx(0.03) and kd["diff_std"] == pytest.approx(0.01)
    assert kd["p_value"] == pytest.approx(P_KD_CE, rel=1e-6) and P_KD_CE == pytest.approx(0.0351, abs=1e-4)
    assert kd["diff_ci_low"] == pytest.approx(0.03 - HALF_001, abs=1e-6)
    assert kd["diff_ci_high"] == pytest.approx(0.03 + HALF_001, abs=1e-6)
    assert tests.loc[("fitnet", "kd"), "diff_mean"] == pytest.approx(-0.03)
    assert tests.loc[("fitnet", "kd"), "p_value"] == pytest.approx(P_FITNET_KD, rel=1e-6)
    assert tests.loc[("fitnet", "ce"), "p_value"] == pytest.approx(1.0)
    # Holm over the family [P_KD_CE, 1, P_FITNET_KD]: 3 p, 1, 2 p.
    assert kd["p_adjusted"] == pytest.approx(3 * P_KD_CE, rel=1e-6)
    assert tests.loc[("fitnet", "kd"), "p_adjusted"] == pytest.approx(2 * P_FITNET_KD, rel=1e-6)
    assert tests["within_noise"].all() and set(tests["verdict"]) == {WITHIN_NOISE}


def test_comparison_table_hand_computed_means_intervals_signed_differences_and_verdicts():
    holm, _ = comparison_table(study(ACCURACY, NLL), Statistics(baselines=("ce", "kd")))
    table = holm.set_index("arm")
    assert table.loc["kd", "test_accuracy_mean"] == pytest.approx(0.84)
    assert table.loc["ce", "test_accuracy_ci_low"] == pytest.approx(0.81 - HALF_001, abs=1e-6)
    assert table.loc["ce", "test_accuracy_ci_high"] == pytest.approx(0.81 + HALF_001, abs=1e-6)
    # Differences are row arm - baseline; the baseline-vs-baseline pair is read mirrored: ce - kd = -0.03.
    assert table.loc["kd", "test_accuracy_diff_vs_ce"] == pytest.approx(0.03)
    assert table.loc["ce", "test_accuracy_diff_vs_kd"] == pytest.approx(-0.03)
    assert table.loc["ce", "test_accuracy_diff_ci_low_vs_kd"] == pytest.approx(-0.03 - HALF_001, abs=1e-6)
    assert table.loc["ce", "test_accuracy_diff_ci_high_vs_kd"] == pytest.approx(-0.03 + HALF_001, abs=1e-6)
    assert table.loc["fitnet", "test_accuracy_diff_vs_ce"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["fitnet", "test_accuracy_diff_vs_kd"] == pytest.approx(-0.03)
    assert table.loc["ce", "test_accuracy_p_adjusted_vs_kd"] == pytest.approx(3 * P_KD_CE, rel=1e-6)
    assert math.isnan(table.loc["ce", "test_accuracy_diff_vs_ce"])
    assert table.loc["ce", "test_accuracy_verdict_vs_ce"] == BASELINE
    assert table.loc["kd", "test_accuracy_verdict_vs_ce"] == WITHIN_NOISE  # p = 0.035 alone, 0.105 after Holm
    # Without correction kd beats ce, so ce is worse than kd: the mirrored verdict flips with the sign.
    raw = comparison_table(study(ACCURACY, NLL), Statistics(baselines=("ce", "kd"), correction="none"))[0].set_index("arm")
    assert raw.loc["kd", "test_accuracy_verdict_vs_ce"] == BETTER
    assert raw.loc["ce", "test_accuracy_verdict_vs_kd"] == WORSE
    assert raw.loc["kd", "test_accuracy_p_adjusted_vs_ce"] == pytest.approx(P_KD_CE, rel=1e-6)
    # NLL is lower-is-better: kd's negative difference is the better one.
    assert raw.loc["kd", "test_nll_diff_vs_ce"] == pytest.approx(-0.03)
    assert raw.loc["kd", "test_nll_verdict_vs_ce"] == BETTER
    assert raw.loc["ce", "test_nll_verdict_vs_kd"] == WORSE
    assert raw.loc["fitnet", "test_nll_verdict_vs_ce"] == WITHIN_NOISE


def test_unpaired_seeds_and_cells_without_a_baseline():
    runs = pd.DataFrame(
        [
            {"arm": "ce", "method": "ce", "seed": 0, "student": "s", "label_fraction": 1.0, "test_accuracy": 0.8},
            {"arm": "ce", "method": "ce", "seed": 1, "student": "s", "label_fraction": 1.0, "test_accuracy": 0.9},
            {"arm": "at", "method": "at", "seed": 1, "student": "s", "label_fraction": 1.0, "test_accuracy": 0.95},
            {"arm": "at", "method": "at", "seed": 2, "student": "s", "label_fraction": 1.0, "test_accuracy": 0.5},
            {"arm": "at_big", "method": "at", "seed": 0, "student": "big", "label_fraction": 1.0, "test_accuracy": 0.9},
        ]
    )
    table, tests = comparison_table(runs, Statistics(baselines=("ce",)))
    table = table.set_index("arm")
    assert table.loc["at", "test_accuracy_diff_vs_ce"] == pytest.approx(0.05)  # seed 1 only
    assert table.loc["at", "test_accuracy_n_pairs_vs_ce"] == 1
    assert table.loc["at", "test_accuracy_verdict_vs_ce"] == NOT_TESTABLE
    assert table.loc["at_big", "test_accuracy_verdict_vs_ce"] == NO_BASELINE  # another student: another cell
    assert family_size(tests, "test_accuracy") == 0  # no pair shares 2 seeds


# A study where the two old families disagree: Holm over the 5 tests against the baselines gives rkd vs ce
# p = 0.042 ("worse"), Holm over the recommender's 6 pairwise tests p = 0.0504 ("within noise").
DISAGREEING = {
    "ce": [0.800, 0.820, 0.810, 0.830, 0.790],
    "kd": [0.788, 0.809, 0.784, 0.839, 0.800],
    "rkd": [0.767, 0.810, 0.795, 0.814, 0.765],
    "at": [0.789, 0.818, 0.787, 0.819, 0.807],
}


def test_the_old_families_really_disagree_on_this_study():
    from distillation_studies.analysis.stats import adjust_p_values

    arms = {k: np.array(v) for k, v in DISAGREEING.items()}
    p = {(a, b): stats.ttest_rel(arms[a], arms[b]).pvalue for a in arms for b in arms if a != b}
    against_baselines = [("kd", "ce"), ("rkd", "ce"), ("at", "ce"), ("rkd", "kd"), ("at", "kd")]
    every_pair = [*against_baselines, ("at", "rkd")]
    old_table = adjust_p_values([p[k] for k in against_baselines])[1]
    old_recommendation = adjust_p_values([p[k] for k in every_pair])[1]
    assert old_table < 0.05 <= old_recommendation
    tests = pairwise_tests(study(DISAGREEING), Statistics(baselines=("ce", "kd")), ["test_accuracy"])
    rkd = tests.set_index(["arm", "reference"]).loc[("rkd", "ce")]
    assert rkd["p_adjusted"] == pytest.approx(old_recommendation) and rkd["verdict"] == WITHIN_NOISE
