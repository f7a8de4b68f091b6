"""kedro-viz's run state per environment, in-process: where a run's kedro-viz hooks write and the server reads."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from kedro_viz import constants
from kedro_viz.api.rest.responses import run_events  # the workflow panel's API (imported before or after the context)
from kedro_viz.integrations.kedro import data_loader, run_hooks
from kedro_viz.integrations.kedro.hooks import DatasetStatsHook

from distillation_studies.viz_state import use_study_state
from tests.conftest import ROOT


def test_a_study_writes_and_reads_its_own_viz_folder(tmp_path, monkeypatch):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)  # a Kedro project, for kedro-viz's project lookup
    monkeypatch.chdir(tmp_path)
    # Restored after the test: the module-level paths use_study_state sets.
    monkeypatch.setitem(constants.VIZ_METADATA_ARGS, "path", constants.VIZ_METADATA_ARGS["path"])
    monkeypatch.setattr(constants, "PIPELINE_EVENT_FULL_PATH", constants.PIPELINE_EVENT_FULL_PATH)
    monkeypatch.setattr(run_hooks, "write_events", run_hooks.write_events)
    monkeypatch.setattr(run_events, "PIPELINE_EVENT_FULL_PATH", run_events.PIPELINE_EVENT_FULL_PATH)

    for study, rows in (("tiny", 8), ("default", 30)):
        use_study_state(tmp_path, study)
        stats = DatasetStatsHook()  # what `kedro run` registers from kedro-viz's entry points
        stats.after_dataset_saved("study_runs", pd.DataFrame({"arm": ["kd"] * rows}))
        stats.after_pipeline_run()
        run_hooks.write_events([{"event": "before_pipeline_run", "study": study}])

    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / ".viz").rglob("*.json")) == [
        ".viz/default/kedro_pipeline_events.json", ".viz/default/stats.json",
        ".viz/tiny/kedro_pipeline_events.json", ".viz/tiny/stats.json",
    ]
    use_study_state(tmp_path, "tiny")  # what `kedro viz run --env tiny` reads
    assert data_loader._get_dataset_stats(tmp_path)["study_runs"]["rows"] == 8
    assert json.loads(run_events.PIPELINE_EVENT_FULL_PATH.read_text())[0]["study"] == "tiny"
    use_study_state(tmp_path, "default")
    assert data_loader._get_dataset_stats(tmp_path)["study_runs"]["rows"] == 30
    assert json.loads(run_events.PIPELINE_EVENT_FULL_PATH.read_text())[0]["study"] == "default"
