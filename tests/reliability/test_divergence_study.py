"""The real `kedro run` of the tiny study with one diverging arm: that arm stops with the named error,
the other arms are kept and ranked, and the study says which arm failed and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from distillation_studies.report.recommendation import violation_text
from tests.conftest import copy_project, kedro_run

pytestmark = pytest.mark.e2e


def _load(project: Path, *names: str) -> list:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="tiny") as session:
        catalog = session.load_context().catalog
        return [catalog.load(name) for name in names]


def test_a_diverging_arm_is_stopped_flagged_and_never_ranked(tmp_path):
    copy_project(tmp_path)
    # fitnet's hint weight 1e300 overflows fp32 at the first step: the loss is inf/NaN in epoch 1.
    result = kedro_run(tmp_path, "--params", "methods.fitnet.weight=1e300,tracking.enabled=false")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    for seed in (0, 1):
        assert f"fitnet/seed_{seed} is flagged unusable: diverged: fitnet/seed_{seed} (seed {seed}) epoch 1: non-finite loss" in log
    assert "1 arm(s) failed and are not ranked:\n- fitnet: training failed: seed 0: diverged" in log

    history, table, recommendation = _load(tmp_path, "students.fitnet.seed_0.history", "comparison_table", "recommendation")
    assert history["summary"]["failure"].startswith("diverged: fitnet/seed_0 (seed 0) epoch 1")
    assert [row["epoch"] for row in history["epochs"]] == []  # no epoch finished with a finite loss
    flags = table.set_index("arm")[["usable", "failure"]]
    assert flags["usable"].to_dict() == {"ce": True, "fitnet": False, "kd": True, "rkd": True}
    assert flags.loc["fitnet", "failure"].startswith("seed 0: diverged")
    [cell] = recommendation["cells"]
    ranked = {entry["candidate"] for entry in cell["ranked"]}
    assert ranked == {"ce", "kd", "rkd"}  # the other arms' results are kept and ranked
    excluded = {entry["candidate"]: violation_text(entry["violations"][0]) for entry in cell["excluded"]}
    assert excluded["fitnet"].startswith("training failed: seed 0: diverged")
    assert "**Failed training (never ranked):**\n\n- **fitnet**" in recommendation["markdown"]


def test_an_exploding_learning_rate_gives_no_recommendation(tmp_path):
    """The issue's command: every student at chance with losses of 1e12 is flagged; nothing is ranked."""
    copy_project(tmp_path)
    result = kedro_run(tmp_path, "--params", "student.training.lr=1000000.0,tracking.enabled=false")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (recommendation,) = _load(tmp_path, "recommendation")
    [cell] = recommendation["cells"]
    assert cell["ranked"] == [] and cell["best"] == []
    assert {e["candidate"] for e in cell["excluded"]} == {"ce", "kd", "fitnet", "rkd"}
    assert "No candidate is usable" in recommendation["markdown"]
