"""The real `kedro run` of the tiny study on a local Dask cluster (2 worker processes), against the
sequential run, and the ways a study stops: a killed worker, Ctrl-C, SIGTERM, kill -9, ParallelRunner,
and two runs at once in one project folder."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import mlflow
from mlflow import MlflowClient

from distillation_studies.study.identity import ArmRun
from tests.conftest import KEDRO, copy_project
from tests.test_end_to_end import load, versions

pytestmark = pytest.mark.e2e

DASK = "--runner=distillation_studies.runner.DaskRunner"
ARMS = {f"{m}/seed_{s}" for m in ("ce", "kd", "fitnet", "rkd") for s in (0, 1)}
TIMING = ("latency_ms", "throughput_per_s", "train_time_s")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the sequential run uses the torch thread count of each Dask task


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg", **(extra or {})}


def run(project: Path, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [KEDRO, "run", "--env=tiny", *args]
    return subprocess.run(command, cwd=project, env=environment(extra), capture_output=True, text=True, timeout=1500)


def start(project: Path, *args: str, extra: dict[str, str] | None = None) -> subprocess.Popen:
    command = [KEDRO, "run", "--env=tiny", *args]
    return subprocess.Popen(command, cwd=project, env=environment(extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def runs(project: Path) -> list:
    # Listing a run's model folder resolves its logged model through the global tracking URI.
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("distillation-studies")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"]) if experiment else []


def experiment_created(project: Path) -> bool:
    """Read-only: an MlflowClient on a database still being created would create its tables too."""
    try:
        with sqlite3.connect(f"file:{project / 'mlflow.db'}?mode=ro", uri=True) as db:
            return bool(db.execute("SELECT 1 FROM experiments WHERE name = 'distillation-studies'").fetchone())
    except sqlite3.Error:
        return False


def said(output: str) -> str:
    """The terminal's words with rich's line wrapping undone (a long warning wraps at the console width)."""
    return " ".join(output.split())


def running_arm(project: Path, timeout_s: float = 900) -> dict[str, str]:
    """Wait until a student's nested run is RUNNING; its tags (arm, pid of the process training it)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if experiment_created(project):
            for found in runs(project):
                if found.info.status == "RUNNING" and found.data.tags.get("arm", "teacher") != "teacher":
                    return found.data.tags
        time.sleep(0.3)
    raise AssertionError("no student started training")


def mlflow_tree(project: Path) -> dict[str, dict]:
    """Per nested run: status, parameter names, metric names, epochs logged, artifacts."""
    # Listing a run's model folder resolves its logged model through the global tracking URI.
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    tree = {}
    for found in runs(project):
        if "mlflow.parentRunId" not in found.data.tags:
            continue
        run_id = found.info.run_id
        model = ArmRun.from_key(found.data.tags["arm"]).model_name  # the logged model, by its name
        tree[found.data.tags["arm"]] = {
            "status": found.info.status,
            "params": sorted(found.data.params),
            "metrics": sorted(found.data.metrics),
            "epochs": [m.step for m in client.get_metric_history(run_id, "val/accuracy")],
            "artifacts": sorted(a.path for a in client.list_artifacts(run_id, "checkpoints")) + sorted(a.path for a in client.list_artifacts(run_id, model) if a.path == f"{model}/MLmodel") + [a.path for a in client.list_artifacts(run_id) if not a.is_dir],
        }
    return tree


@pytest.fixture(scope="module")
def sequential_and_dask(tmp_path_factory) -> tuple[Path, Path]:
    sequential, dask = (copy_project(tmp_path_factory.mktemp(name)) for name in ("sequential", "dask"))
    first = run(sequential, extra=ONE_THREAD)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = run(dask, DASK)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "local cluster, 2 workers x 1 torch threads" in second.stdout + second.stderr
    return sequential, dask


def test_two_workers_give_the_sequential_comparison_table(sequential_and_dask):
    sequential, dask = (load(project, "comparison_table") for project in sequential_and_dask)
    same = [c for c in sequential.columns if not any(c.startswith(t) for t in TIMING)]
    assert len(same) > 60 and list(sequential.columns) == list(dask.columns)
    pd.testing.assert_frame_equal(sequential[same], dask[same], check_exact=True)
    assert load(sequential_and_dask[1], "recommendation")["cells"][0]["ranked"]


def test_two_workers_give_the_sequential_mlflow_tree(sequential_and_dask):
    sequential, dask = (mlflow_tree(project) for project in sequential_and_dask)
    assert set(dask) == ARMS | {"teacher"}
    assert dask == sequential
    kd = dask["kd/seed_0"]
    assert kd["status"] == "FINISHED" and kd["epochs"] == [1, 2] and "test/accuracy" in kd["metrics"]
    assert kd["artifacts"] == ["checkpoints/last_model.pt", "checkpoints/model.pt", "kd-seed_0/MLmodel", "history.json"]
    assert "hyperparameters.temperature" in kd["params"]


def test_each_arm_is_tracked_by_the_worker_that_trains_it(sequential_and_dask):
    found = runs(sequential_and_dask[1])
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(children) == len(ARMS) + 1
    students = [c for c in children if c.data.tags["arm"] != "teacher"]
    assert all(c.data.tags["pid"] != parent.data.tags["pid"] for c in students)  # opened in a worker process
    assert len({c.data.tags["pid"] for c in students}) >= 1
    # On a local cluster without GPUs the driver trains the teacher while the workers still import the project.
    assert [c.data.tags["pid"] for c in children if c.data.tags["arm"] == "teacher"] == [parent.data.tags["pid"]]
    for child in children:  # each run's own start and end, inside the study's
        assert parent.info.start_time <= child.info.start_time < child.info.end_time <= parent.info.end_time
        assert child.data.tags["study_run"] == parent.info.run_id and child.data.tags["config_hash"] == parent.data.tags["config_hash"]
    recommendation = load(sequential_and_dask[1], "recommendation")
    cited = {run for cell in recommendation["cells"] for entry in cell["ranked"] for run in entry["run_ids"]}
    assert cited == {c.info.run_id for c in children if c.data.tags["arm"] != "teacher"}


def test_a_killed_worker_fails_the_study_naming_the_arm_then_resume_finishes_it(tmp_path):
    copy_project(tmp_path)
    slow = ["--params", "seeds=[0],student.training.epochs=30"]
    study = start(tmp_path, DASK, "--runner-params", "allowed_failures=0", *slow)
    victim = running_arm(tmp_path)
    os.kill(int(victim["pid"]), signal.SIGKILL)  # kill -9 of the worker process training this arm
    output, _ = study.communicate(timeout=900)
    assert study.returncode != 0
    assert f"arm {victim['arm']}: its worker process died" in said(output)
    assert "--only-missing-outputs" in output
    assert all(r.info.status != "RUNNING" for r in runs(tmp_path))
    before = versions(tmp_path)
    finished = {r.data.tags["arm"] for r in runs(tmp_path) if r.info.status == "FINISHED" and "arm" in r.data.tags}

    resumed = run(tmp_path, DASK, "--only-missing-outputs", *slow)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = versions(tmp_path)
    assert all(set(saved) <= set(after[path]) for path, saved in before.items())  # no saved version lost
    for arm in finished - {"teacher"}:  # finished arms are not retrained
        path = f"data/06_models/tiny/students/{arm}/model.pt"
        assert after[path] == before[path], arm
    killed_path = f"data/06_models/tiny/students/{victim['arm']}/model.pt"
    assert len(after[killed_path]) == 1
    assert all(r.info.status != "RUNNING" for r in runs(tmp_path))
    cited = {run for cell in load(tmp_path, "recommendation")["cells"] for entry in cell["ranked"] for run in entry["run_ids"]}
    assert len(cited) == 4


def test_an_arm_whose_worker_is_killed_is_retried_on_another_worker(tmp_path):
    copy_project(tmp_path)
    slow = ["--params", "seeds=[0],student.training.epochs=30"]
    study = start(tmp_path, DASK, *slow)  # allowed_failures: 1 (conf/base/runner.yml)
    victim = running_arm(tmp_path)
    os.kill(int(victim["pid"]), signal.SIGKILL)
    output, _ = study.communicate(timeout=900)
    assert study.returncode == 0, output[-3000:]
    assert f"left the cluster while running arm {victim['arm']}: retrying it on another worker (retry 1 of 1, runner.dask.allowed_failures)" in said(output)
    found = runs(tmp_path)
    attempts = [r for r in found if r.data.tags.get("arm") == victim["arm"]]
    assert sorted(r.info.status for r in attempts) == ["FINISHED", "KILLED"]
    assert all(r.info.status != "RUNNING" for r in found)
    assert len(versions(tmp_path)[f"data/06_models/tiny/students/{victim['arm']}/model.pt"]) == 1
    cited = {run for cell in load(tmp_path, "recommendation")["cells"] for entry in cell["ranked"] for run in entry["run_ids"]}
    assert next(r.info.run_id for r in attempts if r.info.status == "FINISHED") in cited


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_every_worker_killed_stops_the_study_with_a_message_then_resume_finishes_it(tmp_path):
    """A cluster of its own (scheduler and two workers without nannies, as `dask worker` starts them): once
    both are killed, nothing restarts them; the driver stops after runner.dask.no_worker_timeout_s."""
    copy_project(tmp_path)
    dask, port = str(Path(KEDRO).with_name("dask")), free_port()
    quiet = dict(cwd=tmp_path, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet)
    address = f"tcp://127.0.0.1:{port}"
    worker = [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--preload", "distillation_studies.runner"]
    workers = [subprocess.Popen(worker, **quiet) for _ in range(2)]
    slow = ["--params", "seeds=[0],student.training.epochs=30"]
    try:
        study = start(tmp_path, DASK, "--runner-params", "no_worker_timeout_s=5", *slow, extra={"DASK_SCHEDULER_ADDRESS": address})
        running_arm(tmp_path)
        for process in workers:
            process.kill()
        output, _ = study.communicate(timeout=600)
    finally:
        for process in (*workers, scheduler):
            process.kill()
            process.wait()
    assert study.returncode != 0
    assert "no Dask worker alive for 5 s (runner.dask.no_worker_timeout_s): the study stops" in said(output), output[-3000:]
    assert "Dask cluster: 0 of 2 workers alive; the study goes on with none, waiting up to 5 s for one" in said(output)
    assert all(r.info.status != "RUNNING" for r in runs(tmp_path))

    resumed = run(tmp_path, DASK, "--only-missing-outputs", *slow)  # on a local cluster this time
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert all(r.info.status != "RUNNING" for r in runs(tmp_path))
    cited = {run for cell in load(tmp_path, "recommendation")["cells"] for entry in cell["ranked"] for run in entry["run_ids"]}
    assert len(cited) == 4


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_study_leaves_no_run_running(tmp_path, stop):
    copy_project(tmp_path)
    study = start(tmp_path, "--params", "student.training.epochs=30")
    running_arm(tmp_path)
    study.send_signal(stop)
    study.communicate(timeout=300)
    assert study.returncode != 0
    found = runs(tmp_path)
    assert found and all(r.info.status != "RUNNING" for r in found)
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "KILLED" and parent.data.tags["error"] == f"StudyInterrupted: {stop.name} received: study interrupted"
    assert any(r.info.status == "KILLED" and r.data.tags.get("arm") not in (None, "teacher") for r in found)


def test_an_orphan_of_kill_9_is_closed_by_the_next_run_of_its_config(tmp_path):
    copy_project(tmp_path)
    args = ["--params", "student.training.epochs=30"]
    study = start(tmp_path, *args)
    running_arm(tmp_path)
    study.kill()  # kill -9: nothing in the process can react
    study.communicate(timeout=60)
    assert any(r.info.status == "RUNNING" for r in runs(tmp_path))
    resumed = run(tmp_path, "--only-missing-outputs", *args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    found = runs(tmp_path)
    assert all(r.info.status != "RUNNING" for r in found)
    orphan = found[0]
    assert orphan.info.status == "KILLED" and orphan.data.tags["error"].startswith("orphan: process")


def test_parallel_runner_stops_at_once_naming_the_project_runner(tmp_path):
    copy_project(tmp_path)
    result = run(tmp_path, "--runner=ParallelRunner")
    assert result.returncode != 0
    assert "--runner=distillation_studies.runner.DaskRunner" in result.stdout + result.stderr
    assert not runs(tmp_path) if (tmp_path / "mlflow.db").exists() else True
    assert not (tmp_path / "data" / "05_model_input").exists()  # stopped before any node


def own_versions_report(project: Path, output: str, epochs: int) -> None:
    """The run of config ``student.training.epochs=<epochs>`` (found by its manifest) built its report from
    its own arms: the study_histories under its save version hold students of ``epochs`` epochs only."""
    assert "did not match load version" not in output, output[-3000:]
    folder = project / "data" / ".runs" / "tiny"
    records = [json.loads(path.read_text()) for path in folder.glob("*.json")]
    (record,) = [r for r in records if r["parameters"]["student"]["training"]["epochs"] == epochs]
    saved = project / "data/08_reporting/tiny/study_histories.json" / record["save_version"] / "study_histories.json"
    histories = json.loads(saved.read_text())
    assert set(histories) == ARMS and {len(h["epochs"]) for h in histories.values()} == {epochs}


def test_a_dask_run_and_a_sequential_run_of_another_config_each_report_their_own_versions(tmp_path):
    copy_project(tmp_path)
    dask = start(tmp_path, DASK)
    time.sleep(0.2)
    sequential = start(tmp_path, "--params", "student.training.epochs=1")
    outputs = [p.communicate(timeout=1500)[0] for p in (dask, sequential)]
    assert dask.returncode == 0 and sequential.returncode == 0, outputs[0][-3000:] + outputs[1][-3000:]
    assert sum("Another run of study 'tiny' holds" in out for out in outputs) == 1  # one waited for the other
    own_versions_report(tmp_path, outputs[0], epochs=2)
    own_versions_report(tmp_path, outputs[1], epochs=1)


def test_two_runs_at_once_in_one_project_keep_the_database_and_every_version(tmp_path):
    copy_project(tmp_path)
    first, second = start(tmp_path), start(tmp_path)
    outputs = [p.communicate(timeout=1500)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs[0][-3000:] + outputs[1][-3000:]
    assert "did not match load version" not in "".join(outputs)
    assert sum("Another run of study 'tiny' holds" in out for out in outputs) == 1  # the second waited
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    found = runs(tmp_path)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2 and all(r.info.status == "FINISHED" for r in found)
    for parent in parents:
        assert {r.data.tags["arm"] for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id} == ARMS | {"teacher"}
    saved = versions(tmp_path)
    assert saved["data/08_reporting/tiny/comparison_table.csv"] and all(len(v) == 2 for v in saved.values()), saved
    for version in saved["data/07_model_output/tiny/students/kd/seed_0/history.json"]:
        path = tmp_path / "data/07_model_output/tiny/students/kd/seed_0/history.json" / version / "history.json"
        assert [row["epoch"] for row in json.loads(path.read_text())["epochs"]] == [1, 2]
