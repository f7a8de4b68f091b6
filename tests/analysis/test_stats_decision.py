"""Decision statistics: p-value adjustment, paired tests against baselines and seeds needed for power."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from distillation_studies.analysis.stats import adjust_p_values, paired_t_power, seeds_needed


def test_holm_known_values():
    # Sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06.
    assert adjust_p_values([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_caps_at_one_and_is_monotone():
    assert adjust_p_values([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert adjust_p_values([0.02, 0.01]) == pytest.approx([0.02, 0.02])


def test_nan_passes_through_and_is_not_counted():
    adjusted = adjust_p_values([0.01, math.nan, 0.04, 0.03], "holm")
    assert math.isnan(adjusted[1])
    assert adjusted[[0, 2, 3]] == pytest.approx([0.03, 0.06, 0.06])  # m = 3, not 4
    bh = adjust_p_values([math.nan, 0.01, 0.04, 0.03], "bh")
    assert math.isnan(bh[0]) and bh[1:] == pytest.approx([0.03, 0.04, 0.04])


def test_bh_matches_scipy():
    p = np.random.default_rng(0).uniform(0, 0.2, size=12)
    assert adjust_p_values(p, "bh") == pytest.approx(stats.false_discovery_control(p, method="bh"))


def test_adjust_edge_cases():
    assert adjust_p_values([]).size == 0
    assert math.isnan(adjust_p_values([math.nan])[0])
    assert adjust_p_values([0.2, 0.01], "none") == pytest.approx([0.2, 0.01])
    with pytest.raises(ValueError, match="unknown method"):
        adjust_p_values([0.1], "bonferroni-ish")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_p_values([1.5])


@pytest.mark.parametrize("effect, expected", [(1.0, 10), (0.5, 34), (0.8, 15), (0.2, 199)])
def test_seeds_needed_matches_power_tables(effect, expected):
    # Paired t-test sample sizes for dz = effect, alpha 0.05 two-sided, power 0.8 (G*Power / Cohen tables).
    assert seeds_needed(effect, 1.0) == expected
    assert paired_t_power(expected, effect) >= 0.8 > paired_t_power(expected - 1, effect)


def test_seeds_needed_agrees_with_simulation():
    # Monte Carlo power of the paired t-test at d = 1: about 0.803 with 10 seeds, about 0.748 with 9.
    rng = np.random.default_rng(0)
    for n, expect_reached in ((10, True), (9, False)):
        diffs = rng.normal(1.0, 1.0, size=(20000, n))
        t = diffs.mean(axis=1) / (diffs.std(axis=1, ddof=1) / math.sqrt(n))
        power = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
        assert power == pytest.approx(paired_t_power(n, 1.0), abs=0.015)
        assert (power >= 0.79) == expect_reached
    assert seeds_needed(1.0, 1.0) == 10


def test_seeds_needed_is_scale_free_and_sign_free():
    assert seeds_needed(0.02, 0.02) == 10
    assert seeds_needed(-0.01, 0.01) == 10
    assert seeds_needed(1.0, 1.0, significance=0.01) > 10


def test_seeds_needed_special_cases():
    assert seeds_needed(0.0, 0.01) == math.inf
    assert seeds_needed(0.0001, 1.0) == math.inf  # needs far more than 1000 seeds
    assert seeds_needed(0.1, 1.0, max_seeds=100) == math.inf
    assert seeds_needed(0.1, 1.0) == 787
    assert seeds_needed(0.01, 0.0) == 2
    with pytest.raises(ValueError):
        seeds_needed(math.nan, 1.0)
    with pytest.raises(ValueError):
        seeds_needed(0.1, -1.0)
    with pytest.raises(ValueError):
        seeds_needed(0.1, 1.0, power=1.0)
