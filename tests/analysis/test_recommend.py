"""Recommendation: constraint filtering with reasons, noise-aware ranks and the seeds-needed verdict.

The recommender returns data; the words are the report's (``recommendation_markdown``), checked here too.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from distillation_studies.common.config import parse_dataclass
from distillation_studies.common.errors import ConfigError
from distillation_studies.analysis.recommend import Constraints, recommend
from distillation_studies.analysis.recommend import MORE_SEEDS, SEPARATED, SINGLE, TOO_FEW_SHARED, ZERO_DIFFERENCE, Violation
from distillation_studies.analysis.stats import Statistics, mean_ci, seeds_needed
from distillation_studies.report.recommendation import candidate_text, recommendation_markdown, seeds_text, violation_text


def make(values: dict[str, list[float]], costs: dict[str, dict[str, float]] | None = None, metric="test_accuracy"):
    """summary (one row per candidate) and runs (one row per candidate and seed) from per-seed values."""
    runs = pd.DataFrame(
        [{"candidate": c, "seed": s, metric: v, "run_id": f"{c}-s{s}"} for c, vs in values.items() for s, v in enumerate(vs)]
    )
    rows = []
    for candidate, vs in values.items():
        stats = mean_ci(vs)
        row = {"candidate": candidate, f"{metric}_mean": stats["mean"], f"{metric}_std": stats["std"], "seeds": len(vs)}
        row.update({"parameters_mean": 1e6, "flops_mean": 2e8, "latency_ms_mean": 1.0, "train_time_s_mean": 30.0})
        row.update((costs or {}).get(candidate, {}))
        rows.append(row)
    return pd.DataFrame(rows), runs


SEED_EFFECT = np.array([0.0, 0.01, -0.01, 0.005, -0.004])
JITTER = np.array([0.001, -0.001, 0.0005, 0.0, -0.0005])


def test_constraints_filter_with_reasons():
    summary, runs = make(
        {"kd": [0.85, 0.86, 0.84], "big": [0.95, 0.96, 0.94], "weak": [0.50, 0.52, 0.51]},
        costs={"big": {"latency_ms_mean": 10.0, "parameters_mean": 2e7}},
    )
    result = recommend(summary, runs, Constraints(max_latency_ms=5, max_parameters=5e6, min_accuracy=0.6))
    assert [c.candidate for c in result.ranked] == ["kd"]
    excluded = {e.candidate: e for e in result.excluded}
    assert set(excluded) == {"big", "weak"}
    # Every broken limit is listed with the value and the limit.
    assert excluded["big"].violations == (
        Violation("max_parameters", "parameters", 2e7, 5e6), Violation("max_latency_ms", "latency_ms", 10.0, 5.0)
    )
    record = result.to_dict()
    big = next(e for e in record["excluded"] if e["candidate"] == "big")
    assert [violation_text(v) for v in big["violations"]] == ["parameters 20M > max_parameters 5M", "latency_ms 10 > max_latency_ms 5"]
    weak = next(e for e in record["excluded"] if e["candidate"] == "weak")
    assert violation_text(weak["violations"][0]) == "test_accuracy 0.51 < min_accuracy 0.6"
    assert excluded["weak"].run_ids == ("weak-s0", "weak-s1", "weak-s2")
    markdown = recommendation_markdown(result)
    assert "Excluded by the constraints" in markdown and "latency_ms 10 > max_latency_ms 5" in markdown
    assert result.enough_seeds and result.seeds.case == SINGLE and "Only kd" in seeds_text(record)


def test_clear_winner_ranked_first_alone():
    base = 0.80 + SEED_EFFECT
    summary, runs = make({"ce": list(base + JITTER), "kd": list(base + 0.05), "fitnet": list(base + 0.02 - JITTER)})
    result = recommend(summary, runs)
    assert [(c.candidate, c.rank, c.tied) for c in result.ranked] == [("kd", 1, False), ("fitnet", 2, False), ("ce", 3, False)]
    assert result.best == ["kd"]
    record = result.to_dict()
    assert result.enough_seeds and result.seeds.case == SEPARATED and "ahead of the runner-up fitnet" in seeds_text(record)
    kd = result.ranked[0]
    assert kd.run_ids == tuple(f"kd-s{s}" for s in range(5)) and kd.versus is None
    for piece in ("test_accuracy 85.02 ±", "95% CI, 5 seed(s)", "latency 1.000 ms", "parameters 1M", "rank 1", "kd-s4"):
        assert piece in candidate_text(record, record["ranked"][0])
    # fitnet - kd = -0.03 on every seed but for the jitter: the candidate-minus-leader sign, as in the table.
    assert result.ranked[1].versus.leader == "kd" and not result.ranked[1].versus.within_noise
    assert result.ranked[1].versus.diff_mean == pytest.approx(-0.03, abs=1e-9)
    assert "behind kd beyond noise (paired difference -3.00 pp" in candidate_text(record, record["ranked"][1])
    markdown = recommendation_markdown(result)
    assert re.search(r"^1\. \*\*kd\*\*", markdown, re.M)
    assert re.search(r"^2\. \*\*fitnet\*\*", markdown, re.M) and re.search(r"^3\. \*\*ce\*\*", markdown, re.M)
    assert "=1." not in markdown


def test_indistinguishable_candidates_share_rank_one_and_seeds_message_has_a_number():
    a = [0.85, 0.86, 0.84, 0.87, 0.85]
    b = [0.86, 0.85, 0.85, 0.86, 0.84]
    summary, runs = make({"b": b, "a": a, "ce": [0.70, 0.72, 0.69, 0.71, 0.70]})
    result = recommend(summary, runs)
    assert [(c.candidate, c.rank, c.tied) for c in result.ranked] == [("a", 1, True), ("b", 1, True), ("ce", 3, False)]
    assert sorted(result.best) == ["a", "b"]
    record = result.to_dict()
    assert result.ranked[1].versus.within_noise and "within noise of a" in candidate_text(record, record["ranked"][1])
    assert not result.enough_seeds and result.seeds.case == MORE_SEEDS
    # Expected from the observed paired differences a - b at the Holm worst-case level 0.05 / 3.
    diff = np.array(a) - np.array(b)
    expected = max(seeds_needed(diff.mean(), diff.std(ddof=1), significance=0.05 / 3), 6)
    assert result.seeds_needed == expected and expected > 5
    assert f"About {expected} seeds" in seeds_text(record)
    markdown = recommendation_markdown(result)
    assert re.search(r"^=1\. \*\*a\*\*", markdown, re.M) and re.search(r"^=1\. \*\*b\*\*", markdown, re.M)
    assert re.search(r"^3\. \*\*ce\*\*", markdown, re.M)


def test_ties_below_the_top_are_shown_as_equal_ranks():
    base = 0.80 + SEED_EFFECT
    summary, runs = make(
        {"kd": list(base + 0.10), "at": list(base + 0.05 + JITTER), "rkd": list(base + 0.05 - JITTER), "ce": list(base)}
    )
    result = recommend(summary, runs)
    assert [c.rank_label for c in result.ranked] == ["1", "=2", "=2", "4"]
    assert recommendation_markdown(result).count("=2. **") == 2
    assert result.enough_seeds


def test_exactly_zero_difference_cannot_be_separated():
    summary, runs = make({"a": [0.85, 0.86, 0.84], "b": [0.86, 0.85, 0.84]})
    result = recommend(summary, runs)
    assert all(c.rank == 1 for c in result.ranked)
    assert not result.enough_seeds and result.seeds_needed == math.inf
    assert result.seeds.case == ZERO_DIFFERENCE
    assert "exactly 0" in seeds_text(result.to_dict()) and "cannot" in seeds_text(result.to_dict())


def test_fewer_than_two_shared_seeds_tie_with_a_note():
    summary, runs = make({"a": [0.95, 0.96], "b": [0.60, 0.61]})
    runs.loc[runs["candidate"] == "b", "seed"] = [1, 7]  # only seed 1 shared
    result = recommend(summary, runs)
    assert [c.rank_label for c in result.ranked] == ["=1", "=1"]
    record = result.to_dict()
    assert "1 shared seed(s), too few for a paired test" in candidate_text(record, record["ranked"][1])
    assert not result.enough_seeds and result.seeds_needed is None and result.seeds.case == TOO_FEW_SHARED
    assert "share 1 seed(s)" in seeds_text(record)


def test_lower_is_better_metric():
    base = 0.5 + SEED_EFFECT
    summary, runs = make({"ce": list(base + 0.1), "kd": list(base + JITTER)}, metric="test_nll")
    result = recommend(summary, runs, Constraints(metric="test_nll"))
    assert [c.candidate for c in result.ranked] == ["kd", "ce"] and result.ranked[1].rank == 2
    assert "lower is better" in recommendation_markdown(result, heading=True)


def test_to_dict_is_strict_json():
    summary, runs = make({"a": [0.85, 0.86, 0.84], "b": [0.86, 0.85, 0.84], "c": [0.9]})
    summary["run_ids"] = ["x1,x2 x3", ["y1"], None]
    data = recommend(summary, runs).to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["seeds_needed"] is None  # infinity becomes null
    ranked = {r["candidate"]: r for r in data["ranked"]}
    assert ranked["a"]["run_ids"] == ["x1", "x2", "x3"] and ranked["b"]["run_ids"] == ["y1"]
    assert ranked["c"]["run_ids"] == ["c-s0"] and ranked["c"]["ci_low"] is None
    assert {"rank_label", "versus", "costs"} <= set(ranked["a"])
    assert ranked["b"]["versus"]["leader"] == "c" and ranked["b"]["versus"]["n_pairs"] == 1


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"max_latency_ms": -1.0}, "max_latency_ms"),
        ({"max_parameters": -5}, "max_parameters"),
        ({"max_flops": 0}, "max_flops"),
        ({"max_train_time_s": math.nan}, "max_train_time_s"),
        ({"min_accuracy": 1.5}, "min_accuracy"),
        ({"min_accuracy": -0.1}, "min_accuracy"),
        ({"max_latency_ms": True}, "max_latency_ms"),
        ({"significance": 0.0}, "significance"),
        ({"target_power": 1.2}, "target_power"),
        ({"metric": ""}, "metric"),
    ],
)
def test_bad_constraints_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=rf"constraints\.{key}:"):
        Constraints(**raw).check()
    with pytest.raises(ConfigError, match=rf"study\.recommend\.{key}:"):
        parse_dataclass(Constraints, raw, "study.recommend")
    summary, runs = make({"a": [0.8, 0.81]})
    with pytest.raises(ConfigError, match=key):
        recommend(summary, runs, Constraints(**raw))


def test_config_parsing_and_bad_inputs():
    assert parse_dataclass(Constraints, {"max_latency_ms": 2, "min_accuracy": 0.8}, "r").max_latency_ms == 2.0
    with pytest.raises(ConfigError, match=r"r\.max_memory: unknown key"):
        parse_dataclass(Constraints, {"max_memory": 2}, "r")
    summary, runs = make({"a": [0.8, 0.81]})
    with pytest.raises(ConfigError, match=r"constraints\.max_flops: the summary has no flops_mean"):
        recommend(summary.drop(columns="flops_mean"), runs, Constraints(max_flops=1e9))
    with pytest.raises(ConfigError, match=r"summary\.test_nll_mean"):
        recommend(summary, runs, Constraints(metric="test_nll"))
    with pytest.raises(ConfigError, match="more than once"):
        recommend(summary, pd.concat([runs, runs]))


def hand_tests(pairs: dict[tuple[str, str], float], significance: float = 0.05) -> pd.DataFrame:
    """A paired-tests family given adjusted p-values per (arm, reference), 5 shared seeds each."""
    return pd.DataFrame(
        [
            {"metric": "test_accuracy", "arm": arm, "reference": ref, "arm_method": arm, "reference_method": ref,
             "same_cell": True, "n_pairs": 5, "diff_mean": -0.01, "diff_std": 0.01, "diff_ci_low": -0.02,
             "diff_ci_high": 0.0, "p_value": p / 3, "p_adjusted": p, "within_noise": p >= significance, "verdict": ""}
            for (arm, ref), p in pairs.items()
        ]
    )


def test_each_candidate_is_tested_against_its_groups_leader_not_the_previous_candidate():
    summary, runs = make({"a": [0.90] * 5, "b": [0.89] * 5, "c": [0.88] * 5, "d": [0.87] * 5})
    # b and c are each within noise of their neighbour, but c is clearly behind the leader a; d is within
    # noise of c (its own group's leader) though clearly behind a and b.
    tests = hand_tests({("b", "a"): 0.5, ("c", "b"): 0.5, ("c", "a"): 0.001, ("d", "c"): 0.6, ("d", "b"): 0.001, ("d", "a"): 0.001})
    result = recommend(summary, runs, tests=tests)
    assert [c.rank_label for c in result.ranked] == ["=1", "=1", "=3", "=3"]
    assert [c.versus.leader if c.versus else None for c in result.ranked] == [None, "a", "a", "c"]
    assert result.ranked[2].versus.p_adjusted == 0.001 and not result.ranked[2].versus.within_noise
    assert result.comparisons == 6


def test_significance_comes_from_the_statistics_section():
    summary, runs = make({"a": [0.90] * 5, "b": [0.89] * 5})
    tests = hand_tests({("b", "a"): 0.03})
    assert [c.rank for c in recommend(summary, runs, tests=tests).ranked] == [1, 2]
    strict = Statistics(baselines=(), significance=0.01)
    assert [c.rank for c in recommend(summary, runs, statistics=strict, tests=hand_tests({("b", "a"): 0.03}, 0.01)).ranked] == [1, 1]
    with pytest.warns(FutureWarning, match=r"constraints\.significance is deprecated.*set comparison\.significance"):
        result = recommend(summary, runs, Constraints(significance=0.01))
    assert result.statistics.significance == 0.01


def test_unknown_ranking_metric_names_the_key_and_the_table():
    with pytest.raises(ConfigError, match=r"recommendation\.metric: expected a reported metric, one of \[.*'test_nll'"):
        parse_dataclass(Constraints, {"metric": "score"}, "recommendation")


def test_cells_are_described_as_a_user_names_their_data():
    from distillation_studies.report.text import cell_description

    def cell(fraction=1.0, transfer=False, noise=0.0, student="student"):
        return {"student": student, "label_fraction": fraction, "transfer_set": transfer, "label_noise": noise}

    assert cell_description(cell()) == "all labels"
    assert cell_description(cell(0.1, True)) == "10% labels + transfer set"
    assert cell_description(cell(0.05, False, 0.2)) == "5% labels, no transfer set, 20% label noise"
    assert cell_description(cell(student="wide")) == "all labels, student wide"


def test_recommend_per_cell_orders_cells_best_data_first_and_ranks_within_each():
    from distillation_studies.analysis.recommend import recommend_per_cell

    base = 0.8 + SEED_EFFECT
    values = {"ce_noisy": base, "kd_noisy": base + 0.05, "ce_tenth": base + 0.01, "kd_tenth": base + 0.02 + JITTER,
              "ce_full": base + 0.1, "kd_full": base + 0.101 + JITTER}
    summary, runs = make({k: list(v) for k, v in values.items()})
    cells = {"noisy": (1.0, False, 0.2), "tenth": (0.1, True, 0.0), "full": (1.0, False, 0.0)}
    for column, index in (("label_fraction", 0), ("transfer_set", 1), ("label_noise", 2)):
        summary[column] = [cells[c.split("_")[1]][index] for c in summary["candidate"]]
    result = recommend_per_cell(summary, runs)  # tests computed per cell from the runs
    assert [tuple(a.cell[k] for k in ("label_fraction", "transfer_set", "label_noise")) for a in result.cells] == [
        (1.0, False, 0.0), (0.1, True, 0.0), (1.0, False, 0.2)
    ]
    assert [[c.candidate for c in a.recommendation.ranked] for a in result.cells] == [
        ["kd_full", "ce_full"], ["kd_tenth", "ce_tenth"], ["kd_noisy", "ce_noisy"]
    ]
    assert [a.recommendation.comparisons for a in result.cells] == [1, 1, 1]  # one pair per cell, not C(6, 2) = 15
    markdown = recommendation_markdown(result, heading=True)
    assert re.findall(r"^### (.+)$", markdown, flags=re.M) == ["all labels", "10% labels + transfer set", "all labels, 20% label noise"]


def test_latency_limit_is_met_only_beyond_run_to_run_noise():
    """Two arms of one network measure 0.0195 and 0.0206 ms (intervals over seeds overlap): a limit of
    0.02 ms between their means must not keep one and drop the other. Both run the same network, so both
    are judged on its interval's high end (0.0212 ms); a limit above it keeps both."""
    summary, runs = make(
        {"kd": [0.85, 0.86, 0.84], "fitnet": [0.84, 0.85, 0.83]},
        costs={
            "kd": {"latency_ms_mean": 0.0195, "latency_ms_ci_low": 0.0185, "latency_ms_ci_high": 0.0205},
            "fitnet": {"latency_ms_mean": 0.0206, "latency_ms_ci_low": 0.0200, "latency_ms_ci_high": 0.0212},
        },
    )
    result = recommend(summary, runs, Constraints(max_latency_ms=0.02))
    assert result.ranked == () and {e.candidate for e in result.excluded} == {"kd", "fitnet"}
    quantity = "latency_ms (upper end of its run-to-run noise)"
    assert {e.violations for e in result.excluded} == {(Violation("max_latency_ms", quantity, 0.0212, 0.02),)}
    kd = next(e for e in result.to_dict()["excluded"] if e["candidate"] == "kd")
    assert violation_text(kd["violations"][0]) == f"{quantity} 0.0212 > max_latency_ms 0.02"
    assert [c.candidate for c in recommend(summary, runs, Constraints(max_latency_ms=0.0213)).ranked] == ["kd", "fitnet"]
