"""The README's headline data-factor study end to end: `kedro run --env=tiny_factors` (a label fraction with
its transfer set, label noise, and the full-label clean cell), read back from the report and from MLflow.

Every verdict is recomputed from the saved per-seed metrics (scipy and Holm by hand, ``tests/verdicts.py``).
"""

from __future__ import annotations

import math
import re

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow import MlflowClient

from distillation_studies.study.identity import ArmRun
from tests.conftest import copy_project, kedro_run
from tests.verdicts import cell_verdicts, markdown_table

pytestmark = pytest.mark.e2e

ENV = "tiny_factors"
SEEDS = (0, 1)
NOISE = 0.3
# arm -> (label fraction, transfer set, noise rate), written out from conf/tiny_factors's grid
CELLS = {
    "labels_100__noise_0": (1.0, False, 0.0),
    "labels_50__transfer__noise_0": (0.5, True, 0.0),
    "labels_100__noise_30": (1.0, False, NOISE),
    "labels_50__transfer__noise_30": (0.5, True, NOISE),
}
ARMS = {f"{method}__{cell}": (method, cell) for method in ("ce", "kd") for cell in CELLS}
DESCRIPTIONS = {  # the report's heading of each cell's answer
    "labels_100__noise_0": "all labels",
    "labels_50__transfer__noise_0": "50% labels + transfer set",
    "labels_100__noise_30": "all labels, 30% label noise",
    "labels_50__transfer__noise_30": "50% labels + transfer set, 30% label noise",
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One finished tiny_factors study, its per-seed test accuracies and its catalog outputs."""
    path = copy_project(tmp_path_factory.mktemp("factors"))
    result = kedro_run(path, env_name=ENV)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bootstrap_project(path)
    with KedroSession.create(project_path=path, env=ENV) as session:
        catalog = session.load_context().catalog
        metrics = {arm: [catalog.load(ArmRun(arm, seed).dataset("metrics")) for seed in SEEDS] for arm in ARMS}
        outputs = {name: catalog.load(name) for name in ("study_report_md", "recommendation", "data_summary", "comparison_table")}
    accuracy = {arm: [m["test_accuracy"] for m in per_seed] for arm, per_seed in metrics.items()}
    return path, accuracy, outputs


def expected_verdicts(accuracy: dict[str, list[float]]) -> dict[tuple[str, str], tuple[str, float]]:
    verdicts = {}
    for cell in CELLS:
        verdicts.update(cell_verdicts({f"{m}__{cell}": accuracy[f"{m}__{cell}"] for m in ("ce", "kd")}))
    return verdicts


def test_the_report_gives_each_cell_the_verdicts_of_its_own_seeds(study):
    _, accuracy, outputs = study
    report, verdicts = outputs["study_report_md"], expected_verdicts(accuracy)
    rows = {row["arm"]: row for row in markdown_table(report, "### Test accuracy against the baselines")}
    assert set(rows) == set(ARMS)
    for (arm, reference), (verdict, p) in verdicts.items():
        baseline = ARMS[reference][0]
        assert rows[arm][f"vs {baseline}"] == f"{verdict} (adj. p {p:.3f})", (arm, reference)
    # Each cell's answer sits under its own heading; the cell's two arms only.
    for cell, description in DESCRIPTIONS.items():
        answer = report.split(f"### {description}\n", 1)[1].split("\n### ", 1)[0]
        assert re.findall(r"\*\*(\w+)\*\*: test_accuracy", answer) == sorted(
            [f"ce__{cell}", f"kd__{cell}"], key=lambda arm: -sum(accuracy[arm]))
    # "Where distillation helps": kd against ce of the same cell, tagged helps / hurts / within noise.
    helps = report.split("## Where distillation helps", 1)[1]
    for cell in CELLS:
        verdict, p = verdicts[(f"kd__{cell}", f"ce__{cell}")]
        tag = {"better": "helps", "worse": "hurts", "within noise": "within noise"}[verdict]
        gain = 100 * (sum(accuracy[f"kd__{cell}"]) - sum(accuracy[f"ce__{cell}"])) / len(SEEDS)
        assert re.search(rf"  - `kd`: {gain:+.2f} pp .* over 2 seeds, adj\. p = {p:.3g} \({tag}\)", helps), (cell, helps)


def test_the_recommendation_ranks_within_each_cell_as_the_paired_tests_say(study):
    _, accuracy, outputs = study
    verdicts = expected_verdicts(accuracy)
    answers = {cell["description"]: cell for cell in outputs["recommendation"]["cells"]}
    assert set(answers) == set(DESCRIPTIONS.values())
    for cell, description in DESCRIPTIONS.items():
        ranked = answers[description]["ranked"]
        first, second = (entry["candidate"] for entry in ranked)
        assert sum(accuracy[first]) >= sum(accuracy[second])
        separated = verdicts[(first, second)][0] != "within noise"
        assert [entry["rank"] for entry in ranked] == ([1, 2] if separated else [1, 1]), cell
        assert answers[description]["enough_seeds"] == (separated or answers[description]["seeds"]["case"] == "negligible")


def test_mlflow_runs_carry_their_data_cell_and_the_study_run_the_means(study):
    path, accuracy, outputs = study
    client = MlflowClient(f"sqlite:///{path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("distillation-studies")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    for arm, values in accuracy.items():  # the mean over seeds, never the std
        assert parent.data.metrics[f"test/accuracy_mean/{arm}"] == pytest.approx(sum(values) / len(values), abs=1e-9), arm
    train, val = outputs["data_summary"]["sizes"]["train"], outputs["data_summary"]["sizes"]["val"]
    # Exactly round(rate * n) labels of a split change (learning/data.py): the training split's share,
    # which differs from the validation split's, so reading the wrong split shows here.
    changed_train, changed_val = round(NOISE * train) / train, round(NOISE * val) / val
    assert not math.isclose(changed_train, changed_val, abs_tol=1e-6)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id and r.data.tags["arm"] != "teacher"]
    assert sorted(r.data.tags["arm"] for r in children) == sorted(ArmRun(arm, s).key for arm in ARMS for s in SEEDS)
    for run in children:
        params = run.data.params
        method, cell = ARMS[params["arm"]]
        fraction, transfer, noise = CELLS[cell]
        assert params["method"] == method and float(params["label_fraction"]) == fraction, run.info.run_name
        assert params["transfer_set"] == str(transfer) and float(params["label_noise"]) == noise, run.info.run_name
        assert float(params["labels_changed"]) == pytest.approx(changed_train if noise else 0.0, abs=1e-6), run.info.run_name
        labelled = int(params["labelled_size"])
        assert labelled == train if fraction == 1.0 else abs(labelled - fraction * train) <= 10, run.info.run_name


def test_the_readmes_mlflow_grouping_gives_one_arm_of_one_cell_one_run_per_seed(study):
    """README "Compare methods in the MLflow UI", step 2, done through the client as the UI does it: the
    study's runs (filter ``tags.study_run``), grouped by the param ``arm``, averaged per group."""
    path, accuracy, outputs = study
    client = MlflowClient(f"sqlite:///{path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("distillation-studies")
    [parent] = client.search_runs([experiment.experiment_id], "tags.role = 'study'")
    runs = client.search_runs([experiment.experiment_id], f"tags.study_run = '{parent.info.run_id}'")
    groups: dict[str, list] = {}
    for run in runs:
        groups.setdefault(run.data.params["arm"], []).append(run)
    assert set(groups) == set(ARMS) | {"teacher"}
    table = outputs["comparison_table"].set_index("arm")
    for arm, members in groups.items():
        if arm == "teacher":
            continue
        cells = {(r.data.params["method"], r.data.params["label_fraction"], r.data.params["transfer_set"], r.data.params["label_noise"]) for r in members}
        assert len(cells) == 1, arm  # one method of one data cell
        assert sorted(int(r.data.params["seed"]) for r in members) == list(SEEDS), arm  # one run per seed
        mean = sum(r.data.metrics["test/accuracy"] for r in members) / len(members)
        assert mean == pytest.approx(table.loc[arm, "test_accuracy_mean"], abs=1e-9), arm  # the report's number
