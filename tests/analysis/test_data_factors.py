"""analysis/data_factors.py on a hand-made comparison table and paired tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from distillation_studies.analysis.data_factors import distillation_gains, factor_curve, has_data_factors, label_gains, labels_changed


def _arm(method, fraction, transfer, noise, mean, half=0.01, changed=0.0):
    key = f"{method}_{fraction}_{transfer}_{noise}"
    return {
        "arm": key, "method": method, "student": "student", "label_fraction": fraction, "transfer_set": transfer,
        "label_noise": noise, "seeds": 5, "labels_changed": changed,
        "test_accuracy_mean": mean, "test_accuracy_std": 0.01, "test_accuracy_ci_low": mean - half, "test_accuracy_ci_high": mean + half,
    }


TABLE = pd.DataFrame(
    [
        _arm("ce", 1.0, False, 0.0, 0.92), _arm("kd", 1.0, False, 0.0, 0.925),
        _arm("ce", 0.05, True, 0.0, 0.78), _arm("kd", 0.05, True, 0.0, 0.90),
        _arm("ce", 1.0, False, 0.4, 0.80, changed=0.4), _arm("kd", 1.0, False, 0.4, 0.86, changed=0.4),
    ]
)


def _test(arm, reference, diff, p_adj, n=5):
    """One row of the comparison's family of paired tests (arm - reference, stored once)."""
    return {"metric": "test_accuracy", "arm": arm, "reference": reference, "arm_method": arm.split("_")[0],
            "reference_method": reference.split("_")[0], "same_cell": True, "n_pairs": n, "diff_mean": diff,
            "diff_std": 0.01, "diff_ci_low": diff - 0.01, "diff_ci_high": diff + 0.01, "p_value": p_adj / 3,
            "p_adjusted": p_adj, "within_noise": p_adj >= 0.05, "verdict": "better" if p_adj < 0.05 else "within_noise"}


TESTS = pd.DataFrame(
    [
        _test("kd_1.0_False_0.0", "ce_1.0_False_0.0", 0.005, 0.6),
        _test("kd_0.05_True_0.0", "ce_0.05_True_0.0", 0.12, 0.001),
        _test("kd_1.0_False_0.4", "ce_1.0_False_0.4", 0.06, 0.02),
        {**_test("kd_1.0_False_0.0", "ce_1.0_False_0.0", 0.5, 0.0), "metric": "test_nll"},  # another metric: ignored
    ]
)


def test_gains_are_the_paired_differences_to_ce_of_the_same_cell():
    gains = distillation_gains(TABLE, TESTS)
    assert gains["arm"].tolist() == ["kd_1.0_False_0.0", "kd_0.05_True_0.0", "kd_1.0_False_0.4"]  # noise, then labels
    assert gains["gain"].tolist() == pytest.approx([0.005, 0.12, 0.06])
    assert gains["helps"].tolist() == [False, True, True] and not gains["hurts"].any()
    assert gains["p_adjusted"].tolist() == pytest.approx([0.6, 0.001, 0.02])


def test_label_fraction_curve_shares_the_full_label_point_with_the_transfer_series():
    curve = factor_curve(TABLE, "label_fraction")
    kd_transfer = curve[(curve["method"] == "kd") & curve["transfer_set"]]
    assert kd_transfer["label_fraction"].tolist() == [0.05, 1.0]
    assert kd_transfer["mean"].tolist() == pytest.approx([0.90, 0.925])
    assert (curve["label_noise"] == 0).all()


def test_noise_curve_is_at_full_labels_without_transfer_sets():
    curve = factor_curve(TABLE, "label_noise")
    assert curve[curve["method"] == "ce"][["label_noise", "mean"]].values.tolist() == [[0.0, 0.92], [0.4, 0.80]]


def test_changed_fraction_and_factor_detection():
    assert labels_changed(TABLE).set_index("label_noise")["labels_changed"].to_dict() == {0.0: 0.0, 0.4: 0.4}
    assert has_data_factors(TABLE)
    plain = TABLE[(TABLE["label_fraction"] == 1.0) & (TABLE["label_noise"] == 0)].drop(columns=["transfer_set", "label_noise"])
    assert not has_data_factors(plain)


def test_an_arm_without_a_baseline_in_its_cell_gets_no_gain():
    gains = distillation_gains(TABLE, TESTS[TESTS["arm"] != "kd_1.0_False_0.4"])
    assert "kd_1.0_False_0.4" not in set(gains["arm"]) and not math.isnan(gains["gain"].sum())


def _seeded_arm(method, fraction, transfer, values):
    """A table row whose mean, std and seed count come from per-seed ``values`` (for scipy to check)."""
    values = np.array(values)
    return {**_arm(method, fraction, transfer, 0.0, float(values.mean())), "test_accuracy_std": float(values.std(ddof=1)), "seeds": len(values)}


def test_label_gains_compare_across_cells_unpaired_with_welch():
    full_kd, tenth_kd, tenth_kd_transfer = [0.95, 0.96, 0.94, 0.97], [0.70, 0.75, 0.72], [0.93, 0.95, 0.90, 0.94]
    full_ce = [0.96, 0.95, 0.97, 0.96, 0.98]
    table = pd.DataFrame([
        _seeded_arm("kd", 1.0, False, full_kd), _seeded_arm("kd", 0.1, False, tenth_kd),
        _seeded_arm("kd", 0.1, True, tenth_kd_transfer), _seeded_arm("fitnet", 0.1, False, [0.6, 0.62]),  # no fitnet at 100%
        _seeded_arm("ce", 1.0, False, full_ce),
    ])
    gains = label_gains(table).set_index(["method", "transfer_set"])
    assert list(gains.index) == [("kd", False), ("kd", True)]  # fitnet has no full-label arm to compare with
    for key, values in (((("kd", False)), tenth_kd), ((("kd", True)), tenth_kd_transfer)):
        row = gains.loc[key]
        welch = stats.ttest_ind(full_kd, values, equal_var=False)
        assert row["reference_arm"] == "kd_1.0_False_0.0" and row["reference_fraction"] == 1.0
        assert row["gain"] == pytest.approx(np.mean(full_kd) - np.mean(values))
        assert row["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
        low, high = welch.confidence_interval(0.95)
        assert (row["gain_ci_low"], row["gain_ci_high"]) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert (gains.loc[("kd", False), "seeds"], gains.loc[("kd", False), "reference_seeds"]) == (3, 4)
    # kd with 10% of the labels (+ transfer set) against ce with all of them: arm - baseline, Welch.
    row, welch = gains.loc[("kd", True)], stats.ttest_ind(tenth_kd_transfer, full_ce, equal_var=False)
    assert (row["baseline_arm"], row["baseline_seeds"]) == ("ce_1.0_False_0.0", 5)
    assert row["to_baseline"] == pytest.approx(np.mean(tenth_kd_transfer) - np.mean(full_ce))
    assert row["to_baseline_p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
    assert row["to_baseline_ci_low"] == pytest.approx(welch.confidence_interval(0.95).low, rel=1e-9)
    assert math.isnan(label_gains(table, baseline="dkd").loc[0, "to_baseline"])  # no such baseline: empty, not dropped
