"""Across-seed statistics against hand-computed intervals and scipy's paired t-test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from distillation_studies.analysis.stats import mean_ci, paired_difference, summarise_by_group


def test_mean_ci_hand_computed():
    result = mean_ci(np.array([1.0, 2.0, 3.0]))
    # mean 2, sample std 1, half-width t_{0.975, 2} / sqrt(3) = 4.302653 / 1.7320508 = 2.48414
    assert result["mean"] == pytest.approx(2.0)
    assert result["std"] == pytest.approx(1.0)
    assert result["n"] == 3
    assert result["ci_low"] == pytest.approx(2.0 - 2.48414, abs=1e-5)
    assert result["ci_high"] == pytest.approx(2.0 + 2.48414, abs=1e-5)


def test_mean_ci_other_confidence():
    # t_{0.95, 2} = 2.919986: half-width 2.919986 / sqrt(3) = 1.685854
    result = mean_ci([1.0, 2.0, 3.0], confidence=0.90)
    assert result["ci_high"] - result["mean"] == pytest.approx(1.685854, abs=1e-5)


def test_mean_ci_undefined_below_two_values():
    one = mean_ci([0.7])
    assert one["mean"] == 0.7 and one["n"] == 1
    assert all(math.isnan(one[k]) for k in ("std", "ci_low", "ci_high"))
    assert math.isnan(mean_ci([])["mean"])


def test_paired_difference_matches_scipy():
    values = np.array([0.91, 0.88, 0.93, 0.90, 0.89])
    baseline = np.array([0.89, 0.87, 0.90, 0.90, 0.86])
    result = paired_difference(values, baseline)
    assert result["diff_mean"] == pytest.approx(0.018)
    assert result["p_value"] == pytest.approx(stats.ttest_rel(values, baseline).pvalue, rel=1e-9)
    # Same by hand: differences 0.02, 0.01, 0.03, 0, 0.03 -> t = mean / (sd / sqrt(5)).
    diff = values - baseline
    t = diff.mean() / (diff.std(ddof=1) / math.sqrt(5))
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), 4), rel=1e-9)
    assert 0.01 < result["p_value"] < 0.1


def test_identical_runs_have_p_one():
    values = np.array([0.8, 0.85, 0.9])
    assert paired_difference(values, values.copy()) == {"diff_mean": 0.0, "p_value": 1.0}


def test_constant_shift_falls_back_to_the_exact_sign_test():
    baseline = np.array([0.8, 0.85, 0.9])
    result = paired_difference(baseline + 0.05, baseline)  # zero variance: the t statistic is undefined
    assert result["diff_mean"] == pytest.approx(0.05)
    assert result["p_value"] == pytest.approx(2 * 0.5**3)  # 3 of 3 seeds in one direction
    ten = paired_difference(np.full(10, 0.9), np.full(10, 0.901))
    assert ten["p_value"] == pytest.approx(2 * 0.5**10)


@pytest.mark.parametrize("noise", [[1e-12, -1e-12, 0.0], [0.0, 1e-12, -1e-12]])
def test_rounding_noise_is_not_a_significant_shift(noise):
    # Differences of +-1e-12 are floating-point noise around zero, not a consistent improvement,
    # whichever seed happens to come first.
    baseline = np.array([0.5, 0.6, 0.7])
    result = paired_difference(baseline + np.array(noise), baseline)
    assert result["diff_mean"] == pytest.approx(0.0, abs=1e-12)
    assert result["p_value"] == 1.0


def test_paired_difference_single_seed():
    result = paired_difference(np.array([0.9]), np.array([0.8]))
    assert result["diff_mean"] == pytest.approx(0.1)
    assert math.isnan(result["p_value"])


@pytest.fixture
def runs():
    ce = [0.80, 0.82, 0.81, 0.79]
    kd = [0.85, 0.88, 0.86, 0.86]  # clearly better
    rkd = [0.81, 0.81, 0.82, 0.78]  # noise around the baseline
    rows = [
        {"method": method, "seed": seed, "accuracy": value, "nll": 1.0 - value}
        for method, values in (("ce", ce), ("kd", kd), ("rkd", rkd))
        for seed, value in enumerate(values)
    ]
    # Shuffle rows so pairing must follow the seed, not the row order.
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def test_summarise_by_group(runs):
    table = summarise_by_group(runs, ["accuracy", "nll"]).set_index("method")
    assert set(table.index) == {"ce", "kd", "rkd"}
    assert (table["seeds"] == 4).all()
    expected = mean_ci(np.array([0.85, 0.88, 0.86, 0.86]))
    for key in ("mean", "std", "ci_low", "ci_high"):
        assert table.loc["kd", f"accuracy_{key}"] == pytest.approx(expected[key])
    assert table.loc["kd", "nll_mean"] == pytest.approx(1 - expected["mean"])


def test_float32_rounding_of_a_constant_shift_is_not_significant():
    # 0.970 - 0.971 style differences as float32 metrics store them: equal up to ~1e-7
    values = np.array([0.970, 0.965, 0.968], dtype=np.float32).astype(float)
    baseline = np.array([0.971, 0.966, 0.969], dtype=np.float32).astype(float)
    assert paired_difference(values, baseline)["p_value"] == pytest.approx(0.25)
