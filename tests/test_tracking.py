"""MLflow tracking of a study: names, URIs, a store MLflow cannot use, a copied project, orphans, the
runs found by their tags, and several processes writing one SQLite database at once."""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import sqlite3

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from distillation_studies.common.epochs import publish, reporter
from distillation_studies.common.errors import ConfigError
from distillation_studies.provenance import flatten
from distillation_studies.tracking.hooks import ArmDataset, arm_of, protocol_tags
from distillation_studies.analysis.metrics import METRICS
from distillation_studies.tracking.runs import (
    NestedRun,
    StudyTracker,
    arm_runs,
    check_store,
    end_study,
    SearchTracking,
    epoch_metric_name,
    live_run,
    metric_name,
    _log_batch,
    open_search_job,
    resolve_uri,
    search_job_runs,
)


def test_datasets_map_to_their_nested_run():
    assert arm_of("teacher_metrics") == ArmDataset("teacher", "metrics", None)
    assert arm_of("students.kd__temperature_2.seed_1.history") == ArmDataset("kd__temperature_2/seed_1", "history", 1)
    assert arm_of("comparison_table") is None
    assert arm_of("model_input") is None


def test_relative_sqlite_uri_is_anchored_at_the_project():
    assert resolve_uri("sqlite:///mlflow.db", Path("/work/project")) == "sqlite:////work/project/mlflow.db"
    assert resolve_uri("sqlite:////abs/m.db", Path("/work/project")) == "sqlite:////abs/m.db"
    assert resolve_uri("http://tracking:5000", Path("/x")) == "http://tracking:5000"


def test_nested_config_becomes_dotted_string_params():
    assert flatten({"kd": {"temperature": 4.0, "layers": ["a", "b"]}, "seeds": [0, 1]}) == {
        "kd.temperature": "4.0",
        "kd.layers": '["a", "b"]',
        "seeds": "[0, 1]",
    }


def test_protocol_card_becomes_searchable_tags():
    tags = protocol_tags({"dataset": "mnist5k", "seeds": [0, 1, 2], "git_commit": "abc", "package_versions": {}})
    assert tags == {"protocol.dataset": "mnist5k", "protocol.seeds": "[0, 1, 2]", "protocol.git_commit": "abc"}


@pytest.mark.parametrize(
    "uri", ["mlflow.db", "sqllite:///mlflow.db", "ftp://host/x", "file:///tmp/mlruns", "sqlite:////no/such/folder/mlflow.db"]
)
def test_a_tracking_uri_mlflow_cannot_use_names_the_key(uri):
    with pytest.raises(ConfigError, match=r"^tracking\.uri: "):
        check_store(uri)


def test_a_truncated_database_is_named(tmp_path):
    database = tmp_path / "mlflow.db"
    StudyTracker(f"sqlite:///{database}", "e", tmp_path)  # a real MLflow database ...
    database.write_bytes(database.read_bytes()[:1000])  # ... cut short
    with pytest.raises(ConfigError, match=rf"{database}: the MLflow database cannot be read"):
        check_store(f"sqlite:///{database}")
    (tmp_path / "random.db").write_bytes(b"\x00not sqlite at all" * 100)
    with pytest.raises(ConfigError, match="random.db: the MLflow database cannot be read"):
        check_store(f"sqlite:///{tmp_path / 'random.db'}")


def test_a_database_with_corrupted_interior_pages_is_named_before_any_work(tmp_path):
    """Its header and schema page read fine (the check before ``PRAGMA quick_check`` passed it)."""
    database = tmp_path / "mlflow.db"
    tracker = StudyTracker(f"sqlite:///{database}", "e", tmp_path)
    for index in range(20):  # enough rows for tables and indexes spread over many pages
        tracker.start(f"run-{index}", {f"p{i}": "x" * 50 for i in range(50)}, {}, "v")
    with sqlite3.connect(database) as connection:  # the params table's root: a page sqlite_master never reads
        (root,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'params'").fetchone()
    content = bytearray(database.read_bytes())
    page = int.from_bytes(content[16:18], "big")
    start = (root - 1) * page  # pages are numbered from 1
    content[start : start + page] = b"\xff" * page  # one interior page overwritten
    database.write_bytes(bytes(content))
    with sqlite3.connect(database) as connection:  # what the old check read still reads
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    with pytest.raises(ConfigError, match=rf"{database}: the MLflow database cannot be read \(.+\); it is truncated, corrupted"):
        check_store(f"sqlite:///{database}")


def _make_read_only(path: Path, monkeypatch) -> None:
    """chmod ``path`` read-only. Root ignores permission bits, so when the tests run as root the kernel's
    refusal is emulated: ``os.open`` for writing at or under ``path`` fails with EACCES, as it would for
    any other user (and as it does for root on a read-only mount)."""
    path.chmod(0o555 if path.is_dir() else 0o444)
    if os.geteuid() != 0:
        return
    real_open = os.open

    def refusing_open(target, flags, *args, **kwargs):
        resolved = Path(target).absolute()
        if flags & (os.O_WRONLY | os.O_RDWR) and (resolved == path or path in resolved.parents):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(target))
        return real_open(target, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)


@pytest.mark.parametrize("read_only", ["folder", "database"])
def test_a_read_only_store_is_named_before_any_work(tmp_path, monkeypatch, read_only):
    """Used to fail after ~110 s of MLflow retries with only ``unable to open database file``."""
    folder = tmp_path / "project"
    folder.mkdir()
    database = folder / "mlflow.db"
    uri = f"sqlite:///{database}"
    StudyTracker(uri, "e", folder)
    check_store(uri)  # writable: passes, and leaves nothing behind
    assert sorted(p.name for p in folder.iterdir()) == ["mlflow.db", "mlflow.db.lock"]
    _make_read_only(folder if read_only == "folder" else database, monkeypatch)
    try:
        what = f"the folder {folder}" if read_only == "folder" else f"the MLflow database {database}"
        with pytest.raises(ConfigError) as raised:
            check_store(uri)
        assert str(raised.value) == (
            f"tracking.uri: {uri!r}: {what} is not writable (Permission denied); make it writable, "
            "point tracking.uri elsewhere, or set tracking.enabled: false"
        )
        assert sorted(p.name for p in folder.iterdir()) == ["mlflow.db", "mlflow.db.lock"]  # no probe left
    finally:
        folder.chmod(0o755), database.chmod(0o644)


def test_a_copied_project_does_not_write_into_the_original(tmp_path):
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    StudyTracker(f"sqlite:///{original / 'mlflow.db'}", "study", original)
    shutil.copytree(original, copy)  # what `cp -a` does: the copied mlflow.db still points into original/mlruns
    with pytest.raises(ConfigError, match=rf"stores its artifacts in {original}/mlruns/study, outside this project"):
        StudyTracker(f"sqlite:///{copy / 'mlflow.db'}", "study", copy)
    assert StudyTracker(f"sqlite:///{original / 'mlflow.db'}", "study", original).experiment_id  # the original still works


def _tracker(tmp_path: Path) -> StudyTracker:
    return StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "study", tmp_path)


def test_arm_runs_are_found_by_their_tags_own_and_adopted(tmp_path):
    tracker = _tracker(tmp_path)
    earlier = tracker.start("earlier", {}, {"config_hash": "h"}, "v1")
    kd = NestedRun.open(earlier, "kd/seed_0", 0, {"role": "student"})
    kd.finish()
    unfinished = NestedRun.open(earlier, "ce/seed_0", 0, {})  # its process died: never reused
    end_study(earlier, "KILLED")
    study = tracker.start("later", {}, {"config_hash": "h"}, "v2")
    adopted = tracker.earlier_arm_runs(study)
    assert adopted == {"kd/seed_0": kd.run_id}
    tracker.adopt(study, adopted)
    ce = NestedRun.open(study, "ce/seed_0", 0, {})
    ce.finish()
    assert arm_runs(study) == {"kd/seed_0": kd.run_id, "ce/seed_0": ce.run_id}
    client = MlflowClient(tracker.uri)
    assert client.get_run(unfinished.run_id).info.status == "KILLED"
    assert client.get_run(kd.run_id).data.tags["resumed_by"] == study.run_id
    assert client.get_run(ce.run_id).data.tags["mlflow.parentRunId"] == study.run_id


def test_a_retried_arm_closes_its_earlier_attempt(tmp_path):
    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    first = NestedRun.open(study, "kd/seed_0", 0, {})  # its worker was killed mid-arm
    second = NestedRun.open(study, "kd/seed_0", 0, {})
    client = MlflowClient(study.tracking_uri)
    assert client.get_run(first.run_id).info.status == "KILLED"
    assert "retried" in client.get_run(first.run_id).data.tags["error"]
    second.finish()
    assert arm_runs(study) == {"kd/seed_0": second.run_id}


def test_epochs_are_logged_as_they_end_with_real_timestamps(tmp_path):
    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    run = NestedRun.open(study, "kd/seed_0", 0, {})
    before = int(time.time() * 1000)
    run.log_epoch({"epoch": 1, "loss_ce": 0.5, "val_accuracy": 0.25})
    time.sleep(0.05)
    run.log_epoch({"epoch": 2, "loss_ce": 0.4, "val_accuracy": 0.5})
    run.finish()
    history = MlflowClient(study.tracking_uri).get_metric_history(run.run_id, "val/accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]
    assert before <= history[0].timestamp < history[1].timestamp <= int(time.time() * 1000)
    info = MlflowClient(study.tracking_uri).get_run(run.run_id).info
    assert info.start_time <= history[0].timestamp and history[1].timestamp <= info.end_time


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_orphans_of_any_config_are_closed_live_runs_are_not(tmp_path):
    tracker = _tracker(tmp_path)
    orphan = tracker.start("orphan", {}, {"config_hash": "h"}, "v1")
    child = NestedRun.open(orphan, "kd/seed_0", 0, {})
    client = MlflowClient(tracker.uri)
    for run_id in (orphan.run_id, child.run_id):
        client.set_tag(run_id, "pid", str(_dead_pid()))  # as if written by a process that was killed (kill -9)
    live = tracker.start("live", {}, {"config_hash": "h"}, "v2")  # this process: alive
    other = tracker.start("other", {}, {"config_hash": "other"}, "v3")
    client.set_tag(other.run_id, "pid", str(_dead_pid()))
    assert set(tracker.close_orphans()) == {orphan.run_id, child.run_id, other.run_id}
    assert client.get_run(orphan.run_id).info.status == "KILLED"
    assert client.get_run(child.run_id).info.status == "KILLED"
    assert "orphan" in client.get_run(orphan.run_id).data.tags["error"]
    assert client.get_run(live.run_id).info.status == "RUNNING"
    assert client.get_run(other.run_id).info.status == "KILLED"  # another config's orphan: closed all the same


def test_ending_a_study_closes_every_run_left_running(tmp_path):
    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    done, lost = NestedRun.open(study, "ce/seed_0", 0, {}), NestedRun.open(study, "kd/seed_0", 0, {})
    done.finish()
    end_study(study, "KILLED", KeyboardInterrupt("study interrupted (SIGINT)"))
    client = MlflowClient(study.tracking_uri)
    assert client.get_run(done.run_id).info.status == "FINISHED"
    assert client.get_run(lost.run_id).info.status == "KILLED"
    parent = client.get_run(study.run_id)
    assert parent.info.status == "KILLED" and "SIGINT" in parent.data.tags["error"]


def _write_arm(args: tuple) -> str:
    """One worker process: an arm run with params, 20 epochs, metrics and an artifact, as a worker does."""
    study, key = args
    run = NestedRun.open(study, key, 0, {"role": "student", "hyperparameters": {"t": 4.0}})
    for epoch in range(1, 21):
        run.log_epoch({"epoch": epoch, "loss_ce": 1.0 / epoch, "val_accuracy": epoch / 20})
    run.log_metrics({"test_accuracy": 0.5})
    run.log_history({"epochs": [], "summary": {}})
    run.finish()
    return run.run_id


def test_several_processes_write_one_sqlite_database_at_once(tmp_path):
    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    keys = [f"m{i}/seed_0" for i in range(6)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        run_ids = pool.map(_write_arm, [(study, key) for key in keys])
    client = MlflowClient(study.tracking_uri)
    assert arm_runs(study) == dict(zip(keys, run_ids))
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.metrics["test/accuracy"] == 0.5
        assert [m.step for m in client.get_metric_history(run_id, "train/loss_ce")] == list(range(1, 21))
        assert [a.path for a in client.list_artifacts(run_id)] == ["history.json"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("test_accuracy", "test/accuracy"),
        ("last_test_accuracy", "test/last_accuracy"),
        ("test_teacher_agreement", "test/teacher_agreement"),
        ("best_val_accuracy", "val/best_accuracy"),
        ("best_epoch", "val/best_epoch"),
        ("flops", "cost/flops"),
        ("train_time_s", "cost/train_time_s"),
        ("seed", None),
        ("label_fraction", None),
        ("hp_temperature", None),
    ],
)
def test_reported_metrics_get_their_section_prefix_and_labels_none(name, expected):
    assert metric_name(name) == expected


def test_every_reported_metric_has_one_distinct_prefixed_name():
    names = [metric_name(m.name) for m in METRICS]
    assert len(set(names)) == len(METRICS) and all(n.split("/")[0] in {"test", "cost", "val"} for n in names)


@pytest.mark.parametrize(
    ("column", "expected"),
    [("loss_ce", "train/loss_ce"), ("loss_total", "train/loss_total"), ("lr", "train/lr"), ("train_accuracy", "train/accuracy"),
     ("val_accuracy", "val/accuracy"), ("val_loss", "val/loss")],
)
def test_history_columns_are_logged_under_train_and_val(column, expected):
    assert epoch_metric_name(column) == expected


def test_an_evaluation_logs_its_metrics_prefixed_and_its_labels_not_at_all(tmp_path):
    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    run = NestedRun.open(study, "kd/seed_0", 0, {"seed": 0})
    run.log_metrics({"seed": 0, "label_fraction": 0.1, "train_size": 120, "hp_temperature": 4.0, "usable": True,
                     "test_accuracy": 0.9, "flops": 1000, "best_val_accuracy": 0.8, "best_epoch": 3})
    run.finish()
    metrics = MlflowClient(study.tracking_uri).get_run(run.run_id).data.metrics
    assert metrics == {"test/accuracy": 0.9, "cost/flops": 1000.0, "val/best_accuracy": 0.8, "val/best_epoch": 3.0}


@pytest.mark.parametrize(("setting", "gpu_visible", "logged"), [(True, False, True), (False, True, False), (None, True, True), (None, False, False)])
def test_system_metrics_follow_the_setting_and_by_default_a_visible_gpu(tmp_path, monkeypatch, setting, gpu_visible, logged):
    monkeypatch.setattr("torch.cuda.is_available", lambda: gpu_visible)
    study = replace(_tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v"), system_metrics=setting, system_metrics_interval_s=0.2)
    run = NestedRun.open(study, "kd/seed_0", 0, {})
    time.sleep(1.0)  # a few samples
    run.finish()
    metrics = MlflowClient(study.tracking_uri).get_run(run.run_id).data.metrics
    assert ("system/cpu_utilization_percentage" in metrics) is logged
    assert ("system/system_memory_usage_megabytes" in metrics) is logged


def test_a_search_job_run_takes_its_epochs_while_live_and_its_fate_afterwards(tmp_path):
    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    tracking = SearchTracking(study)  # what the search's nodes receive as ``search_tracking``
    params = {"method": "kd", "hp_temperature": 2.0, "stage": "rung"}
    with tracking.job("kd__t0__e1__s0", "kd__t0__e1/seed_0", params, {"stage": "rung"}) as job:
        reporter("kd__t0__e1/seed_0")({"epoch": 1, "val_accuracy": 0.5})
        job.log_values({"cost/optimizer_steps": 12})
    reporter("kd__t0__e1/seed_0")({"epoch": 2, "val_accuracy": 0.9})  # no longer live: not logged
    with pytest.raises(KeyboardInterrupt), live_run(open_search_job(study, "ce__t0__e1__s0", {}, {}), "ce__t0__e1/seed_0"):
        raise KeyboardInterrupt
    assert search_job_runs(study) == {"kd__t0__e1__s0": job.run_id}  # FINISHED ones only
    assert arm_runs(study) == {}  # a search job is not an arm the recommendation cites
    tracking.tag_jobs({"kd__t0__e1__s0": "stopped_early", "missing__t0__e1__s0": "finalist"})
    client = MlflowClient(study.tracking_uri)
    run = client.get_run(job.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "stopped_early" and run.data.tags["role"] == "search"
    assert run.data.tags["mlflow.parentRunId"] == study.run_id and run.data.params["hp_temperature"] == "2.0"
    assert [(m.step, m.value) for m in client.get_metric_history(job.run_id, "val/accuracy")] == [(1, 0.5)]
    assert run.data.metrics["cost/optimizer_steps"] == 12
    (failed,) = [r for r in client.search_runs([study.experiment_id], "tags.job = 'ce__t0__e1__s0'")]
    assert failed.info.status == "FAILED"


def test_a_resumed_search_adopts_the_earlier_runs_of_the_jobs_it_replays(tmp_path):
    """After a Ctrl-C the search replays finished jobs from its storage instead of training them again:
    their runs are the earlier study run's, and the resuming run adopts them (``resumed_by``), never a run
    of another config with the same job name."""
    tracker = _tracker(tmp_path)
    client = tracker.client

    def finished_job(study, name):
        with SearchTracking(study).job(name, name, {}, {}) as job:
            pass
        return job.run_id

    interrupted = tracker.start("interrupted", {}, {"config_hash": "h"}, "v1")
    replayed = finished_job(interrupted, "kd__t0__e1__s0")
    other_config = tracker.start("other", {}, {"config_hash": "other"}, "v2")
    elsewhere = finished_job(other_config, "ce__t0__e1__s0")
    resumed = tracker.start("resumed", {}, {"config_hash": "h"}, "v3")
    trained = finished_job(resumed, "dkd__t0__e1__s0")

    SearchTracking(resumed).tag_jobs({"kd__t0__e1__s0": "finalist", "dkd__t0__e1__s0": "dropped_by_race", "ce__t0__e1__s0": "completed"})
    tags = {run_id: client.get_run(run_id).data.tags for run_id in (replayed, trained, elsewhere)}
    assert (tags[replayed]["status"], tags[replayed]["resumed_by"]) == ("finalist", resumed.run_id)
    assert tags[trained]["status"] == "dropped_by_race" and "resumed_by" not in tags[trained]
    assert "status" not in tags[elsewhere] and "resumed_by" not in tags[elsewhere]


def test_epochs_nobody_listens_to_are_dropped():
    publish("kd/seed_0", {"epoch": 1, "val_accuracy": 0.5})  # tracking off: the node trains all the same


def _epochs(study, run_id: str, name: str = "val/accuracy") -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in MlflowClient(study.tracking_uri).get_metric_history(run_id, name)]


def test_an_arms_epochs_appear_in_mlflow_while_it_trains(tmp_path):
    study = replace(_tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v"), epoch_flush_s=0.1)
    seen_while_training = []
    with SearchTracking(study).arm("kd/seed_0", 0, {}) as run:
        on_epoch = reporter("kd/seed_0")  # what the node passes to the training loop
        for epoch in range(1, 4):
            time.sleep(0.15)  # an epoch longer than the flush interval
            on_epoch({"epoch": epoch, "val_accuracy": epoch / 10})
            seen_while_training.append(_epochs(study, run.run_id))
        assert MlflowClient(study.tracking_uri).get_run(run.run_id).info.status == "RUNNING"
    assert seen_while_training == [[(1, 0.1)], [(1, 0.1), (2, 0.2)], [(1, 0.1), (2, 0.2), (3, 0.3)]]


def test_a_failing_arm_keeps_every_epoch_it_logged(tmp_path):
    study = replace(_tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v"), epoch_flush_s=3600)
    with pytest.raises(RuntimeError, match="diverged"), SearchTracking(study).arm("kd/seed_0", 0, {}) as run:
        for epoch in range(1, 4):
            reporter("kd/seed_0")({"epoch": epoch, "val_accuracy": epoch / 10})
        assert _epochs(study, run.run_id) == []  # buffered: no write per epoch
        raise RuntimeError("loss diverged")
    client = MlflowClient(study.tracking_uri)
    assert client.get_run(run.run_id).info.status == "FAILED"
    assert "diverged" in client.get_run(run.run_id).data.tags["error"]
    assert _epochs(study, run.run_id) == [(1, 0.1), (2, 0.2), (3, 0.3)]


def test_a_short_arms_epochs_cost_one_write_and_finding_an_arm_one_query(tmp_path, monkeypatch):
    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    runs = {}
    for key in ("ce/seed_0", "kd/seed_0", "kd/seed_1"):
        runs[key] = NestedRun.open(study, key, 0, {})
        runs[key].finish()
    calls = {"log_batch": 0, "search_runs": []}
    log_batch, search_runs = MlflowClient.log_batch, MlflowClient.search_runs

    def counted_log_batch(self, *args, **kwargs):
        calls["log_batch"] += 1
        return log_batch(self, *args, **kwargs)

    def counted_search_runs(self, *args, **kwargs):
        found = search_runs(self, *args, **kwargs)
        calls["search_runs"].append(len(found))
        return found

    monkeypatch.setattr(MlflowClient, "log_batch", counted_log_batch)
    monkeypatch.setattr(MlflowClient, "search_runs", counted_search_runs)
    assert NestedRun.find(study, "kd/seed_1").run_id == runs["kd/seed_1"].run_id
    assert calls["search_runs"] == [1]  # one query, returning the arm's run alone
    run = NestedRun(study, runs["kd/seed_0"].run_id)
    for epoch in range(1, 31):
        run.log_epoch({"epoch": epoch, "loss_ce": 1.0 / epoch, "val_accuracy": epoch / 30})
    run.flush()
    assert calls["log_batch"] == 1 and len(_epochs(study, run.run_id)) == 30


def test_a_training_node_that_fails_closes_its_run_with_every_epoch_it_published(tmp_path):
    """Through the hooks, as `kedro run` calls them: the node publishes epochs (no MLflow import), it raises."""
    from kedro.io import DataCatalog
    from kedro.pipeline import node

    from distillation_studies.tracking.hooks import STUDY_RUN, StudyHooks

    study = replace(_tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v"), epoch_flush_s=3600)
    catalog = DataCatalog()
    catalog[STUDY_RUN] = study
    training = node(lambda params: params, "params:student.training", "students.kd.seed_0.history", name="train_kd")
    hooks, inputs = StudyHooks(), {"params:student.training": {}}
    hooks.before_node_run(node=training, catalog=catalog, inputs=inputs)
    for epoch in (1, 2):
        reporter("kd/seed_0")({"epoch": epoch, "val_accuracy": epoch / 10})
    hooks.on_node_error(error=RuntimeError("loss diverged"), node=training, catalog=catalog, inputs=inputs)
    reporter("kd/seed_0")({"epoch": 3, "val_accuracy": 0.3})  # after the node: nobody listens
    (run,) = MlflowClient(study.tracking_uri).search_runs([study.experiment_id], "tags.arm = 'kd/seed_0'")
    assert run.info.status == "FAILED" and "loss diverged" in run.data.tags["error"]
    assert _epochs(study, run.info.run_id) == [(1, 0.1), (2, 0.2)]


def test_an_arms_test_metrics_and_labels_are_its_logged_models_too(tmp_path):
    """The Models tab sorts and filters logged models by their own metrics, params and tags: an arm's
    evaluation reaches its model, with the data cell and method logged after the model was created."""
    from mlflow.entities import LoggedModelOutput

    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    run = NestedRun.open(study, "kd__labels_10/seed_1", 1, {})
    client = MlflowClient(study.tracking_uri)
    model = client.create_logged_model(study.experiment_id, name="model", source_run_id=run.run_id, params={"training.epochs": "2"})
    client.log_outputs(run.run_id, [LoggedModelOutput(model.model_id, step=0)])
    run.log_params({"arm": "kd__labels_10", "method": "kd", "seed": 1, "label_fraction": 0.1})  # as the history brings them
    run.log_metrics({"test_accuracy": 0.875, "best_val_accuracy": 0.9})
    run.finish()

    logged = client.get_logged_model(model.model_id)
    metrics = {metric.key: metric.value for metric in logged.metrics}
    assert metrics["test/accuracy"] == 0.875 and metrics == {k: v for k, v in client.get_run(run.run_id).data.metrics.items() if k in metrics}
    assert logged.params == {"training.epochs": "2", "arm": "kd__labels_10", "method": "kd", "seed": "1", "label_fraction": "0.1"}
    assert {k: logged.tags[k] for k in ("arm", "method", "seed", "study_run")} == {
        "arm": "kd__labels_10", "method": "kd", "seed": "1", "study_run": study.run_id,
    }
    [found] = client.search_logged_models([study.experiment_id], filter_string="params.method = 'kd' AND metrics.`test/accuracy` > 0.8")
    assert found.model_id == model.model_id


def test_an_arms_evaluation_finds_its_run_with_one_query_and_reads_nothing_else(tmp_path, monkeypatch):
    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    opened = NestedRun.open(study, "kd/seed_0", 0, {"training": {"lr": 0.1}})
    opened.log_params({"method": "kd", "arm": "kd", "seed": 0})
    opened.finish()
    reads: list[str] = []
    for name in ("get_run", "search_runs", "get_logged_model"):
        real = getattr(MlflowClient, name)
        monkeypatch.setattr(MlflowClient, name, lambda self, *a, real=real, name=name, **kw: reads.append(name) or real(self, *a, **kw))
    found = NestedRun.find(study, "kd/seed_0")
    found.log_metrics({"test_accuracy": 0.75})
    assert reads == ["search_runs"]  # no model logged: nothing to label
    assert MlflowClient(study.tracking_uri).get_run(opened.run_id).data.metrics["test/accuracy"] == 0.75


def test_an_arm_without_a_logged_model_logs_its_metrics_to_the_run_alone(tmp_path):
    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    run = NestedRun.open(study, "ce/seed_0", 0, {})
    run.log_metrics({"test_accuracy": 0.5})
    assert MlflowClient(study.tracking_uri).get_run(run.run_id).data.metrics["test/accuracy"] == 0.5


def test_superseded_work_closes_its_run_killed_and_a_failure_failed(tmp_path):
    from distillation_studies.common.errors import Superseded

    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    client = MlflowClient(study.tracking_uri)
    for key, error, status in (("kd/seed_0", Superseded("kd: rerun elsewhere"), "KILLED"), ("kd/seed_1", RuntimeError("diverged"), "FAILED")):
        run = NestedRun.open(study, key, 0, {})
        run.fail(error)
        assert client.get_run(run.run_id).info.status == status and str(error) in client.get_run(run.run_id).data.tags["error"]


def test_an_arm_run_opened_here_adds_params_without_reading_the_run_back(tmp_path, monkeypatch):
    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    run = NestedRun.open(study, "kd/seed_0", 0, {"training": {"lr": 0.1}})
    reads: list[str] = []
    real = MlflowClient.get_run
    monkeypatch.setattr(MlflowClient, "get_run", lambda self, run_id: reads.append(run_id) or real(self, run_id))
    run.log_params({"training": {"lr": 0.5}, "method": "kd"})  # a param it has keeps its value; a new one is added
    assert reads == []
    assert run.params == {"training.lr": "0.1", "method": "kd"}
    run.flush()  # buffered until the run's next write (the node's end)
    found = NestedRun.find(study, "kd/seed_0")  # another process's view: the params as its query returned them
    found.log_params({"arm": "kd"})
    assert reads == [] and found.params is None
    found.log_params({"method": "ce", "seed": 0})  # changed the run since: read back, the kept value stays
    assert reads == [run.run_id]
    assert real(MlflowClient(study.tracking_uri), run.run_id).data.params == {"training.lr": "0.1", "method": "kd", "arm": "kd", "seed": "0"}


def test_an_arm_run_opened_here_writes_its_epochs_and_later_params_in_one_call_when_it_finishes(tmp_path, monkeypatch):
    study = replace(_tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v"), epoch_flush_s=3600)
    run = NestedRun.open(study, "kd/seed_0", 0, {"training": {"lr": 0.1}})
    batches: list[tuple[int, int]] = []
    real = MlflowClient.log_batch
    monkeypatch.setattr(MlflowClient, "log_batch", lambda self, run_id, metrics=(), params=(), tags=(), **kw: batches.append((len(metrics), len(params))) or real(self, run_id, metrics, params, tags, **kw))
    for epoch in (1, 2, 3):
        run.log_epoch({"epoch": epoch, "val_accuracy": epoch / 10, "loss_ce": 1.0})
    run.log_params({"method": "kd", "arm": "kd"})  # what the history brings at the node's end
    assert batches == []
    run.finish()
    assert batches == [(6, 2)]  # 3 epochs x 2 metrics and the 2 params, one transaction
    logged = MlflowClient(study.tracking_uri).get_run(run.run_id).data
    assert logged.params == {"training.lr": "0.1", "method": "kd", "arm": "kd"} and len(_epochs(study, run.run_id)) == 3


def test_log_batch_packs_params_tags_and_metrics_into_as_few_calls_as_mlflows_limits_allow(tmp_path, monkeypatch):
    study = _tracker(tmp_path).start("s", {}, {"config_hash": "h"}, "v")
    client = MlflowClient(study.tracking_uri)
    run_id = client.create_run(study.experiment_id).info.run_id
    calls: list[tuple[int, int, int]] = []
    real = MlflowClient.log_batch
    monkeypatch.setattr(MlflowClient, "log_batch", lambda self, run_id, metrics=(), params=(), tags=(), **kw: calls.append((len(metrics), len(params), len(tags))) or real(self, run_id, metrics, params, tags, **kw))
    metrics = [Metric("m", float(step), 0, step) for step in range(1200)]
    _log_batch(client, run_id, metrics=metrics, params=[Param(f"p{i}", "v") for i in range(150)], tags=[RunTag(f"t{i}", "v") for i in range(50)])
    # per call at most 100 params, 100 tags and 1000 entities: 100 + 50 + 850, then 50 + 350
    assert calls == [(850, 100, 50), (350, 50, 0)]
    logged = client.get_run(run_id).data
    assert len(logged.params) == 150 and sum(key.startswith("t") for key in logged.tags) == 50
    assert len(client.get_metric_history(run_id, "m")) == 1200
    _log_batch(client, run_id)  # nothing to write: no call
    assert len(calls) == 2
