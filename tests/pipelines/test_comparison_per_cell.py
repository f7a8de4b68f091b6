"""Answers per data cell: a two-cell study whose overall best arm sits in the cell the user is not in.

A user with 10% of the labels cannot have the full-label arm, so no ranking, no paired test and no
correction family may mix cells; the values are checked against scipy and hand-applied Holm.
"""

from __future__ import annotations

import json
import re
from itertools import combinations

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from distillation_studies.analysis.comparison import family_size, family_sizes  # noqa: E402
from distillation_studies.analysis.recommend import Constraints  # noqa: E402
from distillation_studies.pipelines.comparison.nodes import build_report, compare_methods, recommend_method  # noqa: E402
from distillation_studies.study.schema import ComparisonConfig  # noqa: E402
from tests.pipelines.test_comparison_nodes import CAPACITY, DATA, PROTOCOL, TEACHER  # noqa: E402
from tests.verdicts import holm  # noqa: E402

COMPARISON = ComparisonConfig(baselines=("ce", "kd"), confidence=0.95, significance=0.05, correction="holm")
FULL = {"student": "student", "label_fraction": 1.0, "transfer_set": False, "label_noise": 0.0}
TENTH = {"student": "student", "label_fraction": 0.1, "transfer_set": True, "label_noise": 0.0}
# (method, cell) -> test accuracy per seed. ce__labels_100 has the best mean of the whole study (0.955).
ARMS = {
    "ce__labels_100": ("ce", FULL, [0.95, 0.96, 0.94, 0.97]),
    "kd__labels_100": ("kd", FULL, [0.94, 0.96, 0.95, 0.95]),
    "fitnet__labels_100": ("fitnet", FULL, [0.90, 0.91, 0.90, 0.92]),
    "ce__labels_10__transfer": ("ce", TENTH, [0.80, 0.82, 0.79, 0.81]),
    "kd__labels_10__transfer": ("kd", TENTH, [0.88, 0.90, 0.87, 0.90]),
}
CELL_OF = {arm: ("full" if cell is FULL else "tenth") for arm, (_, cell, _) in ARMS.items()}


def two_cell_runs() -> pd.DataFrame:
    rows = []
    for arm, (method, cell, accuracies) in ARMS.items():
        for seed, accuracy in enumerate(accuracies):
            rows.append({
                "arm": arm, "method": method, "registered_method": method, "setting": "{}", **cell,
                "labels_changed": 0.0, "train_size": 100 if cell is FULL else 10, "seed": seed,
                "test_accuracy": accuracy, "last_test_accuracy": accuracy, "best_val_accuracy": accuracy,
                "test_nll": 1 - accuracy, "test_ece": 0.05, "test_teacher_agreement": accuracy, "test_kl_to_teacher": 0.1,
                "parameters": 1000.0, "training_parameters": 1000.0, "flops": 2000.0, "throughput_per_s": 100.0,
                "latency_ms": 1.0, "train_time_s": 10.0 + seed,
            })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def outputs():
    runs = two_cell_runs()
    table, tests, sensitivity, _ = compare_methods(runs, TEACHER, COMPARISON)
    run_ids = {f"{arm}/seed_{seed}": f"{arm}-run{seed}" for arm in ARMS for seed in range(4)}
    record = recommend_method(table, runs, Constraints(), run_ids, COMPARISON, tests)
    histories = {f"{a}/seed_{s}": {"epochs": [{"epoch": 1, "val_accuracy": 0.5, "loss_total": 1.0}]} for a in ARMS for s in range(4)}
    markdown, _, _ = build_report(table, tests, sensitivity, record, CAPACITY, PROTOCOL, histories, {}, TEACHER, DATA, COMPARISON)
    return table, tests, record, markdown


def test_paired_tests_never_pair_arms_of_different_cells_and_correct_per_cell(outputs):
    _, tests, _, _ = outputs
    accuracy = tests[tests["metric"] == "test_accuracy"]
    assert all(CELL_OF[a] == CELL_OF[r] for a, r in zip(accuracy["arm"], accuracy["reference"]))
    # Within-cell pairs only: C(3, 2) = 3 with all labels, C(2, 2) = 1 at 10%; every pair of the study would be C(5, 2) = 10.
    assert len(accuracy) == 4 and accuracy["same_cell"].all()
    assert family_size(tests, "test_accuracy", FULL) == 3 and family_size(tests, "test_accuracy", TENTH) == 1
    assert family_sizes(tests, "test_accuracy") == [3, 1]
    values = {arm: values for arm, (_, _, values) in ARMS.items()}
    by_pair = accuracy.set_index(["arm", "reference"])
    full_pairs = [(a, r) for (a, r) in by_pair.index if CELL_OF[a] == "full"]
    raw = [stats.ttest_rel(values[a], values[r]).pvalue for a, r in full_pairs]
    for pair, p, expected in zip(full_pairs, raw, holm(raw)):
        assert by_pair.loc[pair, "p_value"] == pytest.approx(p, rel=1e-9)
        assert by_pair.loc[pair, "p_adjusted"] == pytest.approx(expected, rel=1e-9)
    # The 10% cell's one pair is a family of one: its adjusted p is its raw p, not 10 x or 4 x it.
    tenth = by_pair.loc[("kd__labels_10__transfer", "ce__labels_10__transfer")]
    p_tenth = stats.ttest_rel(values["kd__labels_10__transfer"], values["ce__labels_10__transfer"]).pvalue
    assert tenth["p_adjusted"] == pytest.approx(p_tenth, rel=1e-9) and tenth["verdict"] == "better"
    assert (tenth["label_fraction"], tenth["transfer_set"]) == (0.1, True)


def test_one_ranked_answer_per_cell_and_none_mixes_cells(outputs):
    _, _, record, _ = outputs
    assert set(record) == {"metric", "higher_is_better", "family", "cells", "constraints", "statistics", "markdown"}
    assert record["family"] == "cell" and "ranked" not in record and "best" not in record
    full, tenth = record["cells"]  # best data first
    assert set(tenth) == {"cell", "description", "key", "best", "ranked", "excluded", "enough_seeds", "seeds_needed", "seeds", "comparisons"}
    assert (full["cell"], full["description"], full["key"]) == (FULL, "all labels", "labels_100")
    assert (tenth["cell"], tenth["description"], tenth["key"]) == (TENTH, "10% labels + transfer set", "labels_10__transfer")
    for answer, name in ((full, "full"), (tenth, "tenth")):
        named = [e["candidate"] for e in answer["ranked"]]
        named += [e["versus"]["leader"] for e in answer["ranked"] if e["versus"]]
        named += [answer["seeds"]["first"], answer["seeds"]["second"]]
        assert {CELL_OF[n] for n in named} == {name}
        assert {e["candidate"] for e in answer["ranked"]} == {a for a, c in CELL_OF.items() if c == name}
    # The study's best arm (ce__labels_100) is not what a user with 10% of the labels is shown.
    assert full["best"] == ["ce__labels_100", "kd__labels_100"]  # within noise of each other
    assert tenth["best"] == ["kd__labels_10__transfer"]
    assert [e["rank_label"] for e in tenth["ranked"]] == ["1", "2"] and tenth["seeds"]["case"] == "separated"
    assert (full["comparisons"], tenth["comparisons"]) == (3, 1)
    assert tenth["ranked"][0]["run_ids"] == [f"kd__labels_10__transfer-run{s}" for s in range(4)]
    json.dumps(record, allow_nan=False)


def test_the_report_gives_one_answer_per_cell_under_the_cells_description(outputs):
    _, _, record, markdown = outputs
    section = markdown.split("## Recommendation", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^### (.+)$", section, flags=re.M) == ["all labels", "10% labels + transfer set"]
    assert section.count("**Enough seeds:**") == 2
    tenth = section.split("### 10% labels + transfer set", 1)[1]
    assert "1. **kd__labels_10__transfer**" in tenth and "labels_100" not in tenth
    assert "**Enough seeds:** yes. kd__labels_10__transfer is ahead of the runner-up ce__labels_10__transfer" in tenth
    assert "correction over the 1 pairwise comparison(s) of test_accuracy of this data cell" in tenth
    assert "correction over the 3 pairwise comparison(s) of test_accuracy of this data cell" in section
    assert "ranked and tested only against the arms of its own cell" in section
    assert "over the family of every pair of arms of a metric within that cell (1 to 3 pairs per cell for test_accuracy)" in markdown
    assert record["markdown"].count("### ") == 2
