"""The real `kedro run --env=search_tiny`: a budgeted search, its confirmation and the comparison of the
confirmation runs, read back from the catalog and from MLflow; a rerun replays the finished jobs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import KEDRO, copy_project, kedro_run
from tests.test_end_to_end import load_env, mlflow_runs
from tests.test_runner_e2e import experiment_created

pytestmark = pytest.mark.e2e

ENV = "search_tiny"
RUNGS, MAX_EPOCHS = (1, 2), 2  # conf/search_tiny: min_epochs 1, eta 2, max_epochs 2
RACE_SEEDS, CONFIRMATION_SEEDS = {0, 1, 2}, {100, 101}
BASELINES = {"ce", "kd"}  # conf/base comparison.baselines
FATES = {"completed", "stopped_early", "dropped_by_race", "finalist", "cut_by_finalists", "failed"}
SEARCH_OUTPUTS = ("search/trials.csv", "search/events.csv", "search/finalists.json")
CONFIRMATION_OUTPUTS = ("study_runs.parquet", "run_details.json", "study_histories.json")


def load(project: Path, name: str):
    return load_env(project, name, ENV)


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[Path, str]:
    path = copy_project(tmp_path_factory.mktemp("search"))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "study"]):
        subprocess.run([*git, *command], cwd=path, check=True, capture_output=True)
    result = kedro_run(path, env_name=ENV)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return path, result.stdout + result.stderr


def test_search_trains_rungs_then_races_and_confirms_on_fresh_seeds(searched):
    project, _ = searched
    trials, finalists = load(project, "search_trials"), load(project, "search_finalists")
    assert set(trials["method"]) == {"ce", "kd", "fitnet"}
    assert not trials.duplicated(["trial", "epochs", "seed"]).any()
    rungs = trials[trials["stage"] == "rung"]
    assert set(rungs["epochs"]) <= set(RUNGS) and set(rungs["seed"]) == {0}
    race = trials[trials["stage"] == "race"]
    assert set(race["epochs"]) == {MAX_EPOCHS} and set(race["seed"]) <= RACE_SEEDS - {0}
    assert set(trials["status"]) <= FATES
    assert (trials.loc[trials["method"] == "ce", "trial"] == "ce__t0").all()  # a fixed method: one trial
    assert trials.loc[trials["method"] == "kd", ["hp_temperature", "hp_kd_weight"]].notna().all().all()
    assert trials["optimizer_steps"].gt(0).all() and trials["val_accuracy"].between(0, 1).all()
    finalist_trials = {t["trial_id"] for t in finalists["finalists"]}
    assert finalist_trials and finalist_trials <= {t["trial_id"] for t in finalists["champions"].values()}
    assert set(trials.loc[trials["trial"].isin(finalist_trials), "status"]) == {"finalist"}
    assert finalists["spent"]["epochs"] == trials["epochs"].sum()  # every job's epochs, counted once
    assert finalists["spent"]["optimizer_steps"] == trials["optimizer_steps"].sum()

    runs = load(project, "study_runs")
    confirmed = {t["method_key"] for t in finalists["finalists"]} | BASELINES
    assert set(runs["arm"]) == confirmed
    assert set(runs["seed"]) == CONFIRMATION_SEEDS and len(runs) == len(confirmed) * len(CONFIRMATION_SEEDS)
    for arm, trial in zip(runs["arm"], runs["search_trial"]):
        assert trial == finalists["champions"][arm]["trial_id"]
    assert set(load(project, "comparison_table")["arm"]) == confirmed
    assert set(load(project, "study_histories")) == {f"{a}/seed_{s}" for a in confirmed for s in CONFIRMATION_SEEDS}
    report = load(project, "study_report_md")
    assert "## Search\n\nThe search trained **" in report and "search_anytime.png" in report
    assert f"used **{100 * finalists['spent']['epochs'] / finalists['grid_cost_epochs']:.0f}%** of the grid's compute" in report


def test_every_job_is_a_nested_run_with_its_setting_stage_and_fate(searched):
    project, _ = searched
    trials = load(project, "search_trials").set_index("job")
    client, runs = mlflow_runs(project)
    (study,) = [r for r in runs if r.data.tags.get("role") == "study"]
    artifacts = {a.path for a in client.list_artifacts(study.info.run_id, "report")}
    assert {"report/search_trials.csv", "report/search_events.csv", "report/search_finalists.json"} <= artifacts
    jobs = {r.data.tags["job"]: r for r in runs if r.data.tags.get("role") == "search"}
    assert set(jobs) == set(trials.index)
    for key, run in jobs.items():
        row = trials.loc[key]
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == study.info.run_id
        assert run.data.params["method"] == row["method"] and run.data.params["stage"] == row["stage"]
        assert int(run.data.params["epochs"]) == row["epochs"] and int(run.data.params["seed"]) == row["seed"]
        assert run.data.tags["status"] == row["status"] and run.data.tags["stage"] == row["stage"]
        assert run.data.metrics["cost/optimizer_steps"] == row["optimizer_steps"]
        assert run.data.metrics["val/best_accuracy"] == pytest.approx(row["val_accuracy"])
        assert "val/accuracy" in run.data.metrics  # each epoch's, as a study arm logs them
        if row["method"] == "kd":
            assert float(run.data.params["hp_temperature"]) == pytest.approx(row["hp_temperature"])
    confirmation = [r for r in runs if r.data.tags.get("stage") == "confirmation"]
    assert {r.data.tags["role"] for r in confirmation} == {"arm"}
    assert {int(r.data.tags["seed"]) for r in confirmation} == CONFIRMATION_SEEDS
    cells = load(project, "recommendation")["cells"]
    assert len(cells) == 1  # a search study has one data cell
    cited = {run for entry in cells[0]["ranked"] for run in entry["run_ids"]}
    assert cited <= {r.info.run_id for r in confirmation} and cited


def test_a_rerun_replays_every_finished_job_instead_of_training_it(searched):
    """The search's outputs and the confirmation's deleted, as after a Ctrl-C during the search: the
    rerun finds every job in the storage and trains none of them again."""
    project, _ = searched
    before = load(project, "search_trials")
    _, runs_before = mlflow_runs(project)
    data = project / "data" / "07_model_output" / ENV
    for output in SEARCH_OUTPUTS:
        shutil.rmtree(data / output)
    for output in CONFIRMATION_OUTPUTS:
        shutil.rmtree(project / "data" / "08_reporting" / ENV / output)
    resumed = kedro_run(project, "--only-missing-outputs", env_name=ENV)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "Search: 0 job(s) to train" in log and "job(s) to train, 0 replayed" not in log
    _, runs_after = mlflow_runs(project)
    search_runs = [r for r in runs_after if r.data.tags.get("role") == "search"]
    assert len(search_runs) == len([r for r in runs_before if r.data.tags.get("role") == "search"])
    after = load(project, "search_trials")
    assert after[["job", "val_accuracy", "status"]].equals(before[["job", "val_accuracy", "status"]])


def test_on_the_dask_runner_the_jobs_spread_over_the_workers(tmp_path):
    """The search node runs on a worker and submits each batch to the cluster: the job runs come from
    both worker processes, and every job and confirmation run finishes."""
    copy_project(tmp_path)
    result = kedro_run(tmp_path, "--runner=distillation_studies.runner.DaskRunner", env_name=ENV)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = load(tmp_path, "search_trials")
    _, runs = mlflow_runs(tmp_path)
    jobs = [r for r in runs if r.data.tags.get("role") == "search"]
    assert sorted(r.data.tags["job"] for r in jobs) == sorted(trials["job"])
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["pid"] for r in jobs}) == 2  # conf/base/runner.yml: 2 workers
    assert set(load(tmp_path, "study_runs")["seed"]) == CONFIRMATION_SEEDS


def test_kedro_viz_draws_search_then_finalists_then_confirmation_then_comparison(searched):
    project, _ = searched
    env = {**os.environ, "KEDRO_ENV": ENV, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run([KEDRO, "viz", "build"], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    main = json.loads((project / "build" / "api" / "main").read_text())
    names = {node["id"]: node["name"] for node in main["nodes"]}
    edges = {(names[e["source"]], names[e["target"]]) for e in main["edges"]}
    chain = ["search_methods", "search_finalists", "confirm_finalists", "study_runs", "compare_methods"]
    assert set(zip(chain, chain[1:])) <= edges
    assert not any(name.startswith("students.") for name in names.values())  # no grid of arms in a search study


def test_after_ctrl_c_during_the_search_the_same_command_trains_only_the_unfinished_jobs(tmp_path):
    copy_project(tmp_path)
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    command = [KEDRO, "run", f"--env={ENV}"]
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    batches, seen = 0, []
    for line in first.stdout:  # the second batch starts once the first batch's jobs are all saved
        seen.append(line)
        batches += "Search: " in line
        if batches == 2:
            first.send_signal(signal.SIGINT)
            break
    rest, _ = first.communicate(timeout=300)
    assert batches == 2 and first.returncode != 0, (first.returncode, "".join(seen)[-3000:] + rest[-3000:])
    _, interrupted = mlflow_runs(tmp_path)
    done_before = {r.data.tags["job"] for r in interrupted if r.data.tags.get("role") == "search" and r.info.status == "FINISHED"}
    assert done_before and not any(r.info.status == "RUNNING" for r in interrupted)

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    _, runs = mlflow_runs(tmp_path)
    finished = [r.data.tags["job"] for r in runs if r.data.tags.get("role") == "search" and r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished))  # no job finished twice: the rerun replayed the saved ones
    assert set(finished) == set(load(tmp_path, "search_trials")["job"])
    first_batch = next(line for line in (again.stdout + again.stderr).splitlines() if "Search: " in line)
    assert "Search: 0 job(s) to train" in first_batch  # the batch finished before Ctrl-C: replayed whole
    (resuming,) = {r.info.run_id for r in runs if r.data.tags.get("role") == "study"} - {r.info.run_id for r in interrupted if r.data.tags.get("role") == "study"}
    replayed = [r for r in runs if r.data.tags.get("job") in done_before and r.info.status == "FINISHED"]
    assert {r.data.tags.get("resumed_by") for r in replayed} == {resuming} and all("status" in r.data.tags for r in replayed)  # adopted


def test_a_search_whose_worker_is_killed_finishes_with_every_job_once(tmp_path):
    """kill -9 of the worker process training a search job (or hosting the search node): Dask reschedules
    what it held, finished jobs are replayed from the storage, and the study ends with each job once."""
    copy_project(tmp_path)
    longer = "search.min_epochs=10,search.max_epochs=20,student.training.epochs=20,search.budget_epochs=1000"
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg"}
    command = [KEDRO, "run", f"--env={ENV}", "--runner=distillation_studies.runner.DaskRunner", "--params", longer]
    study = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = _running_search_job(tmp_path)
    os.kill(int(victim["pid"]), signal.SIGKILL)
    output, _ = study.communicate(timeout=1200)
    assert study.returncode == 0, output[-3000:]
    trials = load(tmp_path, "search_trials")
    assert trials["job"].is_unique
    _, runs = mlflow_runs(tmp_path)
    assert not any(r.info.status == "RUNNING" for r in runs)
    finished = [r.data.tags["job"] for r in runs if r.data.tags.get("role") == "search" and r.info.status == "FINISHED"]
    assert sorted(finished) == sorted(trials["job"])  # every job finished once, none twice
    assert set(load(tmp_path, "study_runs")["seed"]) == CONFIRMATION_SEEDS


def _running_search_job(project: Path, timeout_s: float = 600) -> dict[str, str]:
    """The tags (job, pid of the worker training it) of the first search job seen RUNNING."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if experiment_created(project):  # read-only: a client on a database being created would create it too
            for found in mlflow_runs(project)[1]:
                if found.info.status == "RUNNING" and found.data.tags.get("role") == "search":
                    return found.data.tags
        time.sleep(0.2)
    raise AssertionError("no search job started")
