"""Recommendation: constraint filtering with reasons, noise-aware ranks and the seeds-needed verdict."""

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
from distillation_studies.analysis.stats import mean_ci, seeds_needed


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
    assert excluded["big"].reasons == ("parameters 20M > max_parameters 5M", "latency_ms 10 > max_latency_ms 5")
    assert "test_accuracy 0.51 < min_accuracy 0.6" in excluded["weak"].reason
    assert excluded["weak"].run_ids == ("weak-s0", "weak-s1", "weak-s2")
    markdown = result.to_markdown()
    assert "Excluded by the constraints" in markdown and "latency_ms 10 > max_latency_ms 5" in markdown
    assert result.enough_seeds and "Only kd" in result.seeds_message


def test_clear_winner_ranked_first_alone():
    base = 0.80 + SEED_EFFECT
    summary, runs = make({"ce": list(base + JITTER), "kd": list(base + 0.05), "fitnet": list(base + 0.02 - JITTER)})
    result = recommend(summary, runs)
    assert [(c.candidate, c.rank, c.tied) for c in result.ranked] == [("kd", 1, False), ("fitnet", 2, False), ("ce", 3, False)]
    assert result.best == ["kd"]
    assert result.enough_seeds and "ahead of the runner-up fitnet" in result.seeds_message
    kd = result.ranked[0]
    assert kd.run_ids == tuple(f"kd-s{s}" for s in range(5))
    for piece in ("test_accuracy 0.8502 ±", "95% CI, 5 seed(s)", "latency 1.000 ms", "parameters 1M", "rank 1", "kd-s4"):
        assert piece in kd.reason
    assert "behind kd beyond noise" in result.ranked[1].reason
    markdown = result.to_markdown()
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
    assert "within noise of a" in result.ranked[1].reason
    assert not result.enough_seeds
    # Expected from the observed paired differences a - b at the Holm worst-case level 0.05 / 3.
    diff = np.array(a) - np.array(b)
    expected = max(seeds_needed(diff.mean(), diff.std(ddof=1), significance=0.05 / 3), 6)
    assert result.seeds_needed == expected and expected > 5
    assert f"About {expected} seeds" in result.seeds_message
    markdown = result.to_markdown()
    assert re.search(r"^=1\. \*\*a\*\*", markdown, re.M) and re.search(r"^=1\. \*\*b\*\*", markdown, re.M)
    assert re.search(r"^3\. \*\*ce\*\*", markdown, re.M)


def test_ties_below_the_top_are_shown_as_equal_ranks():
    base = 0.80 + SEED_EFFECT
    summary, runs = make(
        {"kd": list(base + 0.10), "at": list(base + 0.05 + JITTER), "rkd": list(base + 0.05 - JITTER), "ce": list(base)}
    )
    result = recommend(summary, runs)
    assert [c.rank_label for c in result.ranked] == ["1", "=2", "=2", "4"]
    assert result.to_markdown().count("=2. **") == 2
    assert result.enough_seeds


def test_exactly_zero_difference_cannot_be_separated():
    summary, runs = make({"a": [0.85, 0.86, 0.84], "b": [0.86, 0.85, 0.84]})
    result = recommend(summary, runs)
    assert all(c.rank == 1 for c in result.ranked)
    assert not result.enough_seeds and result.seeds_needed == math.inf
    assert "exactly 0" in result.seeds_message and "cannot" in result.seeds_message


def test_fewer_than_two_shared_seeds_tie_with_a_note():
    summary, runs = make({"a": [0.95, 0.96], "b": [0.60, 0.61]})
    runs.loc[runs["candidate"] == "b", "seed"] = [1, 7]  # only seed 1 shared
    result = recommend(summary, runs)
    assert [c.rank_label for c in result.ranked] == ["=1", "=1"]
    assert "1 shared seed(s), too few for a paired test" in result.ranked[1].reason
    assert not result.enough_seeds and result.seeds_needed is None
    assert "share 1 seed(s)" in result.seeds_message


def test_lower_is_better_metric():
    base = 0.5 + SEED_EFFECT
    summary, runs = make({"ce": list(base + 0.1), "kd": list(base + JITTER)}, metric="test_nll")
    result = recommend(summary, runs, Constraints(metric="test_nll"))
    assert [c.candidate for c in result.ranked] == ["kd", "ce"] and result.ranked[1].rank == 2
    assert "lower is better" in result.to_markdown()


def test_to_dict_is_strict_json():
    summary, runs = make({"a": [0.85, 0.86, 0.84], "b": [0.86, 0.85, 0.84], "c": [0.9]})
    summary["run_ids"] = ["x1,x2 x3", ["y1"], None]
    data = recommend(summary, runs).to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["seeds_needed"] is None  # infinity becomes null
    ranked = {r["candidate"]: r for r in data["ranked"]}
    assert ranked["a"]["run_ids"] == ["x1", "x2", "x3"] and ranked["b"]["run_ids"] == ["y1"]
    assert ranked["c"]["run_ids"] == ["c-s0"] and ranked["c"]["ci_low"] is None
    assert {"rank_label", "reason", "costs"} <= set(ranked["a"])


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
