"""The words users read first, pinned as firmly as the numbers: the ± beside a difference, "Enough seeds",
the paired-tests rows, "helps"/"hurts", family sizes, negligible differences and intervals that say nothing.

Each test names the mutation it kills (applied by hand once, see the branch's report). Expected strings
are written out from hand-computed values (``tests/analysis/test_comparison.py``'s study).
"""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from scipy import stats

from distillation_studies.analysis.comparison import comparison_table, pairwise_tests
from distillation_studies.analysis.data_factors import distillation_gains
from distillation_studies.analysis.recommend import MORE_SEEDS, NEGLIGIBLE, SEPARATED, recommend
from distillation_studies.analysis.stats import Statistics
from distillation_studies.common.errors import ConfigError
from distillation_studies.report.data_factors import data_factor_sections
from distillation_studies.report.recommendation import recommendation_markdown
from distillation_studies.report.sections import family_text, noise_rows, paired_tests_markdown, statistics_sentence
from distillation_studies.report.text import with_ci
from distillation_studies.study.schema import ComparisonConfig
from tests.analysis.test_comparison import ACCURACY, HALF_001, study
from tests.analysis.test_data_factors import TABLE, TESTS, _test
from tests.analysis.test_recommend import make

STATISTICS = Statistics(baselines=("ce", "kd"))


def test_delta_vs_baseline_shows_the_half_width_of_its_own_interval():
    """Kills: the ± of "delta vs baseline" read from ``diff_ci_high`` instead of ``diff_ci_low``."""
    table, _ = comparison_table(study(ACCURACY), STATISTICS)
    rows = {row["arm"]: row for row in noise_rows(table, STATISTICS.baselines)}
    # kd - ce = 0.03 per seed on average, sd 0.01 over 3 seeds: ± t(0.975, 2) * 0.01 / sqrt(3) = 2.48 pp.
    assert f"{100 * HALF_001:.2f}" == "2.48"
    assert rows["kd"]["Δ vs ce, pp"] == "+3.00 ± 2.48"
    assert rows["ce"]["Δ vs kd, pp"] == "-3.00 ± 2.48"  # the mirrored pair: same half-width, opposite sign
    assert rows["kd"]["test acc (best val epoch), %"] == "84.00 ± 2.48"  # 0.83, 0.84, 0.85
    assert rows["ce"]["Δ vs ce, pp"] == "" and rows["ce"]["vs ce"] == "baseline"


def test_enough_seeds_says_yes_when_separated_and_no_when_more_seeds_are_needed():
    """Kills: "Enough seeds" yes/no inverted (in the words or in the verdict's flag)."""
    separated = recommend(*make({"kd": [0.90, 0.92, 0.91, 0.93], "ce": [0.80, 0.81, 0.82, 0.83]}))
    assert separated.seeds.case == SEPARATED
    assert "**Enough seeds:** yes. kd is ahead of the runner-up ce beyond noise" in recommendation_markdown(separated)
    close = recommend(*make({"a": [0.85, 0.86, 0.84, 0.87, 0.85], "b": [0.86, 0.85, 0.85, 0.86, 0.84]}))
    assert close.seeds.case == MORE_SEEDS
    assert "**Enough seeds:** no. a and b are not separable with 5 shared seeds" in recommendation_markdown(close)


def test_paired_tests_section_lists_each_pair_against_a_baseline_once():
    """Kills: the ce-kd pair listed twice (as kd vs ce and as ce vs kd)."""
    tests = pairwise_tests(study(ACCURACY), STATISTICS, ["test_accuracy"])
    markdown = paired_tests_markdown(tests, STATISTICS)
    pairs = re.findall(r"^\| test acc \(best val epoch\)\s*\|\s*(\S+)\s*\|\s*(\S+)\s*\|", markdown, re.M)
    assert pairs == [("fitnet", "ce"), ("kd", "ce"), ("fitnet", "kd")]  # by baseline, then arm
    kd_row = next(line for line in markdown.splitlines() if re.match(r"\| test acc \(best val epoch\)\s*\| kd ", line))
    assert "+3.00 pp" in kd_row and "[+0.52, +5.48]" in kd_row  # 3.00 ± 2.48


def test_comparison_count_and_family_sizes_leave_out_untestable_pairs():
    """Kills: the comparison count (and the family sizes in the report) including pairs with fewer than
    2 shared seeds, which have no p-value and are in no correction family."""
    summary, runs = make({"a": [0.90, 0.91, 0.92], "b": [0.80, 0.81, 0.82], "c": [0.85]})
    runs = runs[~((runs["candidate"] == "c") & (runs["seed"] == 0))]
    runs = pd.concat([runs, pd.DataFrame([{"candidate": "c", "seed": 7, "test_accuracy": 0.85, "run_id": "c-s7"}])])
    result = recommend(summary, runs)
    assert result.comparisons == 1  # a-b only: c shares no seed with either
    assert "correction over the 1 pairwise comparison(s) of test_accuracy" in recommendation_markdown(result)
    tests = pairwise_tests(runs.rename(columns={"candidate": "arm"}).assign(method=lambda f: f["arm"]), STATISTICS, ["test_accuracy"])
    assert len(tests) == 3 and tests["p_value"].notna().sum() == 1
    assert family_text(tests, "test_accuracy") == "1 pairs"
    assert "(1 pairs for test_accuracy)" in statistics_sentence(STATISTICS, tests)


def test_where_distillation_helps_says_hurts_and_reads_the_configured_significance():
    """Kills: "hurts" never shown, and the section ignoring ``comparison.significance`` (a fixed 0.05)."""
    hurt = pd.concat([TESTS, pd.DataFrame([_test("kd_1.0_False_0.4", "ce_1.0_False_0.4", -0.06, 0.02)])]).iloc[[0, 1, 4]]
    helps = dict(data_factor_sections(TABLE, hurt, ["ce", "kd"], 0.95, "holm", 0.05))["Where distillation helps"]
    assert "  - `kd`: -6.00 pp [-7.00, -5.00] over 5 seeds, adj. p = 0.02 (hurts)" in helps
    # At significance 0.01 the same p = 0.02 is within noise, and the 5% cell's p = 0.001 still helps.
    strict = dict(data_factor_sections(TABLE, hurt, ["ce", "kd"], 0.95, "holm", 0.01))["Where distillation helps"]
    assert "**helps** / **hurts**: adjusted p < 0.01; otherwise within noise." in strict
    assert "  - `kd`: -6.00 pp [-7.00, -5.00] over 5 seeds, adj. p = 0.02 (within noise)" in strict
    assert "adj. p = 0.001 (helps)" in strict
    gains = distillation_gains(TABLE, hurt, significance=0.01).set_index("arm")
    assert not gains.loc["kd_1.0_False_0.4", "hurts"] and gains.loc["kd_0.05_True_0.0", "helps"]


def test_a_difference_below_the_smallest_worth_detecting_is_negligible_not_hundreds_of_seeds():
    """Issue 23 item 7: "Enough seeds: no ... about 254 seeds" for a 0.17-point difference."""
    a = [0.9540, 0.9470, 0.9540, 0.9465, 0.9525]
    b = [0.9500, 0.9480, 0.9505, 0.9470, 0.9500]  # a - b = 0.40, -0.10, 0.35, -0.05, 0.25 points: mean 0.17
    summary, runs = make({"a": a, "b": b})
    without = recommend(summary, runs, statistics=Statistics(baselines=()))
    assert without.seeds.case == MORE_SEEDS and without.seeds_needed > 5  # what the report used to say
    result = recommend(summary, runs, statistics=Statistics(baselines=(), smallest_difference=0.005))
    assert result.seeds.case == NEGLIGIBLE and result.enough_seeds and result.seeds_needed is None
    diff = pd.Series(a) - pd.Series(b)
    half = stats.t.ppf(0.975, 4) * diff.std() / math.sqrt(5)
    low, high = 100 * (diff.mean() - half), 100 * (diff.mean() + half)
    assert f"[{low:+.2f}, {high:+.2f}]" == "[-0.12, +0.46]"
    assert (
        "**Enough seeds:** yes. a and b differ by +0.17 pp (a − b) over 5 shared seeds (its 95% CI [-0.12, +0.46] pp), less "
        "than the smallest difference worth detecting (comparison.smallest_difference = 0.50 pp): the difference is "
        "negligible, so more seeds would not change the choice. Treat them as equivalent on test_accuracy and "
        "choose by cost."
    ) in recommendation_markdown(result)


def test_smallest_difference_is_validated_with_its_key():
    assert ComparisonConfig().statistics().smallest_difference == 0.005
    for bad in (-0.01, "half a point", True, math.inf):
        with pytest.raises(ConfigError, match=r"comparison\.smallest_difference: expected a finite number >= 0"):
            ComparisonConfig(smallest_difference=bad).check("comparison")
    ComparisonConfig(smallest_difference=0).check("comparison")  # 0: every difference is worth detecting


def test_an_interval_spanning_every_possible_value_is_shown_as_n_a_and_explained():
    """Issue 23 item 7: "58.47 ± 167.65 %" for 2 seeds."""
    # Two seeds at 0.40 and 0.7694: half-width t(0.975, 1) * sd / sqrt(2) = 12.706 * 0.2612 / 1.414 = 2.35.
    values = [0.40, 0.7694]
    mean, half = sum(values) / 2, stats.t.ppf(0.975, 1) * pd.Series(values).std() / math.sqrt(2)
    assert f"{100 * mean:.2f} ± {100 * half:.2f}" == "58.47 ± 234.68"
    assert with_ci("test_accuracy", mean, mean - half) == "58.47 ± n/a"
    assert with_ci("test_accuracy", 0.99, 0.975) == "99.00 ± 1.50"  # past 100% on one side only: shown
    assert with_ci("test_accuracy", 0.02, 0.02 - 1.5, signed=True) == "+2.00 ± n/a"  # a difference: -100..+100 pp
    assert with_ci("test_accuracy", 0.02, 0.02 - 0.9, signed=True) == "+2.00 ± 90.00"
    assert with_ci("test_nll", 0.5, -3.0) == "0.500 ± 3.500"  # unbounded metrics keep their interval
    summary, runs = make({"a": values, "b": [0.45, 0.70]})
    markdown = recommendation_markdown(recommend(summary, runs))
    assert "test_accuracy 58.47 ± n/a % (95% CI spans every possible value, 2 seed(s))" in markdown
    wide = TABLE.copy()
    wide.loc[1, ["test_accuracy_ci_low", "test_accuracy_ci_high"]] = [0.925 - 1.2, 0.925 + 1.2]  # kd, all labels, clean
    quality = re.sub(r" +", " ", dict(data_factor_sections(wide, TESTS, ["ce", "kd"], 0.95, "holm", 0.05))["Data size and quality"])
    assert "| kd | 92.50 ± n/a | 90.00 ± 1.00 |" in quality and "| ce | 92.00 ± 1.00 | 80.00 ± 1.00 |" in quality
    sentence = statistics_sentence(STATISTICS, pairwise_tests(study(ACCURACY), STATISTICS, ["test_accuracy"]))
    assert "± n/a: the interval spans every value the metric can take (0 to 100%; for a difference, -100 to +100 pp)" in sentence
