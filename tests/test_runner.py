"""The Dask runner on small pipelines: how nodes become tasks, where they run, its settings, outputs kept
in memory coming back from the workers, and a failing task named by its arm."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node

from distillation_studies.common.errors import ConfigError
from distillation_studies.runner import (
    DaskRunner,
    DaskSettings,
    StudyTaskError,
    describe,
    group_dependencies,
    resolve_settings,
    runs_in_driver,
    runs_on_workers,
    task_groups,
)


def double(x: float) -> float:
    return 2 * x


def add(a: float, b: float) -> float:
    return a + b


def explode(x: float) -> float:
    raise ValueError("loss is nan at epoch 3")


def study_like(failing: str | None = None) -> Pipeline:
    """teacher -> two arms (train + evaluate each) -> a comparison, named as the study names them;
    the ``failing`` arm's training raises."""

    def arm(key: str) -> Pipeline:
        train = explode if key == failing else double
        return Pipeline([node(train, "teacher_model", "model", name="distil"), node(double, "model", "metrics", name="evaluate")])

    arms = [Pipeline(arm(key), namespace=f"students.{key}.seed_0", inputs={"teacher_model"}) for key in ("ce", "kd")]
    return Pipeline(
        [
            node(double, "raw", "teacher_model", name="train_teacher"),
            *arms,
            node(add, ["students.ce.seed_0.metrics", "students.kd.seed_0.metrics"], "comparison_table", name="compare"),
        ]
    )


def test_each_arm_is_one_task_after_the_teacher_and_before_the_comparison():
    groups = task_groups(study_like())
    assert {name: [n.name for n in nodes] for name, nodes in groups.items()} == {
        "train_teacher": ["train_teacher"],
        "students.ce.seed_0": ["students.ce.seed_0.distil", "students.ce.seed_0.evaluate"],
        "students.kd.seed_0": ["students.kd.seed_0.distil", "students.kd.seed_0.evaluate"],
        "compare": ["compare"],
    }
    assert group_dependencies(groups) == {
        "train_teacher": set(),
        "students.ce.seed_0": {"train_teacher"},
        "students.kd.seed_0": {"train_teacher"},
        "compare": {"students.ce.seed_0", "students.kd.seed_0"},
    }
    # tasks writing the teacher's or an arm's outputs go to the workers, the comparison stays in the driver
    on_workers = [name for name, nodes in groups.items() if runs_on_workers(nodes)]
    assert on_workers == ["train_teacher", "students.ce.seed_0", "students.kd.seed_0"]
    assert describe("students.kd.seed_0") == "arm kd/seed_0" and describe("compare") == "node compare"


def test_settings_precedence_and_errors(monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert resolve_settings({}, {}) == DaskSettings()
    assert resolve_settings({"workers": 4, "torch_threads": 2}, {"workers": 3}) == DaskSettings(workers=3, torch_threads=2)
    import dask

    with dask.config.set({"scheduler-address": "tcp://10.0.0.5:8786"}):  # what DASK_SCHEDULER_ADDRESS sets
        assert resolve_settings({"address": "tcp://other:1"}, {}).address == "tcp://10.0.0.5:8786"
    with pytest.raises(ConfigError, match=r"runner.dask: unknown key\(s\) \['worker'\]"):
        resolve_settings({"worker": 2}, {})
    with pytest.raises(ConfigError, match=r"runner.dask.workers: must be an integer >= 1, got 0"):
        resolve_settings({"workers": 0}, {})
    with pytest.raises(ConfigError, match=r"runner.dask.gpus_per_worker: 0 or 1"):
        resolve_settings({"gpus_per_worker": 2}, {})


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as local:
        yield local.scheduler_address


def catalog_for(pipeline: Pipeline) -> DataCatalog:
    return DataCatalog(datasets={"raw": MemoryDataset(1.0)})


def test_a_study_shaped_pipeline_runs_on_two_worker_processes(cluster):
    pipeline = study_like()
    catalog = catalog_for(pipeline)
    DaskRunner(address=cluster).run(pipeline, catalog)
    # raw 1 -> teacher 2 -> each arm 4 then 8 -> comparison 16; the arms' outputs came back from the workers
    assert catalog.load("comparison_table") == 16.0
    assert catalog.load("students.kd.seed_0.model") == 4.0


def test_a_failing_arm_is_named_and_the_other_arms_finish(cluster):
    failing = study_like(failing="kd")
    catalog = catalog_for(failing)
    with pytest.raises(StudyTaskError, match=r"arm kd/seed_0: ValueError: loss is nan at epoch 3") as raised:
        DaskRunner(address=cluster).run(failing, catalog)
    assert "--only-missing-outputs" in str(raised.value)
    assert catalog.load("students.ce.seed_0.metrics") == 8.0  # the other arm ran to the end
    assert "comparison_table" not in catalog or not catalog.exists("comparison_table")


def test_the_runner_reads_runner_yml_of_the_sessions_environment(tmp_path, monkeypatch):
    """The CLI builds the runner before any config is read; it takes the session loader's runner.yml."""
    from distillation_studies import config_loader
    from distillation_studies.config_loader import StudyConfigLoader, session_config_loader
    from distillation_studies.runner import settings_from
    from distillation_studies.settings import CONFIG_LOADER_ARGS

    for env, workers in (("base", 2), ("cluster", 5)):
        (tmp_path / env).mkdir()
        (tmp_path / env / "runner.yml").write_text(f"dask:\n  workers: {workers}\n  torch_threads: 1\n")
    (tmp_path / "local").mkdir()
    monkeypatch.setattr(config_loader, "_last_loader", None)
    StudyConfigLoader(conf_source=str(tmp_path), env="cluster", **CONFIG_LOADER_ARGS)  # what KedroSession.load_context creates
    assert settings_from(session_config_loader()) == {"workers": 5, "torch_threads": 1}
    StudyConfigLoader(conf_source=str(tmp_path), **CONFIG_LOADER_ARGS)  # a later session without --env
    assert resolve_settings(settings_from(session_config_loader()), {}).workers == 2


def _tls_handshake_without_a_certificate(address: str) -> None:
    """Open a TLS connection that trusts any server but shows no client certificate, and read from it."""
    import socket
    import ssl

    host, port = address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=10) as raw, context.wrap_socket(raw) as connection:
        connection.recv(1)  # TLS 1.3: the server's refusal of the missing certificate arrives with the first read


def test_the_local_cluster_runs_over_tls_and_refuses_a_client_without_its_certificates():
    import ssl

    from distributed import Client
    from distributed.security import Security

    from distillation_studies.runner import DaskSettings, _connect

    with _connect(DaskSettings(workers=1)) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3  # the runner's own client works
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _tls_handshake_without_a_certificate(address)
        with pytest.raises((OSError, TimeoutError)):
            Client(address, security=Security.temporary(), timeout="5s")  # certificates of another cluster


def test_no_worker_timeout_is_validated():
    assert resolve_settings({"no_worker_timeout_s": 30}, {}).no_worker_timeout_s == 30
    for bad in (0, -1, "soon", True):
        with pytest.raises(ConfigError, match=r"runner.dask.no_worker_timeout_s: must be a number of seconds > 0, got "):
            resolve_settings({"no_worker_timeout_s": bad}, {})


def test_a_cluster_without_any_worker_stops_the_study_with_a_message():
    import time

    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None) as empty:
        pipeline = study_like()
        started = time.monotonic()
        with pytest.raises(StudyTaskError) as raised:
            DaskRunner(address=empty.scheduler_address, no_worker_timeout_s=2).run(pipeline, catalog_for(pipeline))
    assert time.monotonic() - started < 30
    assert str(raised.value).startswith("no Dask worker alive for 2 s (runner.dask.no_worker_timeout_s): the study stops (0 of 4 tasks done")
    assert "not finished: node train_teacher" in str(raised.value) and "kedro run --only-missing-outputs" in str(raised.value)


def timed(teacher: float) -> tuple[int, float, float]:
    """An arm's training that takes half a second: the process it ran in, its start and end."""
    import os
    import time

    start = time.time()
    time.sleep(0.5)
    return os.getpid(), start, time.time()


def test_arms_go_one_at_a_time_to_each_idle_worker_even_on_workers_with_many_threads():
    from distributed import LocalCluster

    keys = ("ce", "kd", "fitnet", "rkd")
    arms = [Pipeline([node(timed, "teacher_model", "model", name="distil")], namespace=f"students.{k}.seed_0", inputs={"teacher_model"}) for k in keys]
    pipeline = Pipeline([node(double, "raw", "teacher_model", name="train_teacher"), *arms])
    catalog = catalog_for(pipeline)
    with LocalCluster(n_workers=2, threads_per_worker=4, processes=True, host="127.0.0.1", dashboard_address=None) as local:
        DaskRunner(address=local.scheduler_address).run(pipeline, catalog)
    spans = [catalog.load(f"students.{k}.seed_0.model") for k in keys]
    assert len({pid for pid, _, _ in spans}) == 2  # both workers trained arms
    for pid in {pid for pid, _, _ in spans}:  # and no worker ever trained two at once
        mine = sorted((start, end) for p, start, end in spans if p == pid)
        assert all(earlier[1] <= later[0] for earlier, later in zip(mine, mine[1:])), mine


def dies_once(teacher: float, marker: str) -> float:
    """Kill this worker process the first time (as the OOM killer would); succeed on the retry."""
    import os
    import signal
    from pathlib import Path

    if not Path(marker).exists():
        Path(marker).write_text("died once")
        os.kill(os.getpid(), signal.SIGKILL)
    return 2 * teacher


def test_a_worker_lost_while_running_an_arm_is_logged_with_the_arm_then_retried(tmp_path, caplog):
    from distributed import LocalCluster

    arms = [
        Pipeline([node(dies_once if k == "kd" else double, ["teacher_model", "marker"] if k == "kd" else "teacher_model", "model", name="distil")],
                 namespace=f"students.{k}.seed_0", inputs={"teacher_model", "marker"} if k == "kd" else {"teacher_model"})
        for k in ("ce", "kd")
    ]
    pipeline = Pipeline([node(double, "raw", "teacher_model", name="train_teacher"), *arms])
    catalog = DataCatalog(datasets={"raw": MemoryDataset(1.0), "marker": MemoryDataset(str(tmp_path / "died"))})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as local:
        with caplog.at_level("INFO", logger="distillation_studies.runner"):
            DaskRunner(address=local.scheduler_address).run(pipeline, catalog)
    assert catalog.load("students.kd.seed_0.model") == 4.0  # retried on a live worker
    lost = [r.getMessage() for r in caplog.records if "left the cluster while running" in r.getMessage()]
    assert len(lost) == 1 and lost[0].endswith(
        "left the cluster while running arm kd/seed_0: Dask retries it on another worker unless "
        "distributed.scheduler.allowed-failures is used up"
    ), lost


def test_the_workers_preload_returns_at_once_and_tasks_wait_for_its_import(monkeypatch):
    """The local cluster's preload starts the project's import in the background (the cluster then starts
    in about a second, not after each worker's imports); ``wait`` returns once the hooks are registered."""
    import threading

    from distillation_studies import runner, worker_preload

    release = threading.Event()
    imported: list[str] = []

    def slow_import() -> None:
        release.wait(timeout=30)
        imported.append("nodes and hooks")

    monkeypatch.setattr(runner, "dask_setup", slow_import)  # what the background thread imports and runs
    monkeypatch.setattr(worker_preload, "_importing", None)
    worker_preload.dask_setup()
    assert imported == [] and worker_preload._importing.is_alive()  # the preload did not wait
    release.set()
    worker_preload.wait()
    assert imported == ["nodes and hooks"]


def test_on_a_local_cpu_cluster_the_teacher_trains_in_the_driver_and_elsewhere_on_a_worker():
    groups = task_groups(study_like())
    local, remote, gpus = DaskSettings(), DaskSettings(address="tls://10.0.0.1:8786"), DaskSettings(gpus_per_worker=1)
    assert runs_in_driver(groups["train_teacher"], local)
    assert not runs_in_driver(groups["train_teacher"], remote) and not runs_in_driver(groups["train_teacher"], gpus)
    assert not any(runs_in_driver(groups[arm], settings) for arm in ("students.ce.seed_0", "students.kd.seed_0") for settings in (local, remote))
    assert all(runs_in_driver(groups["compare"], settings) for settings in (local, remote, gpus))


def where_and_threads(x: float) -> tuple[int, int]:
    import os

    import torch

    return os.getpid(), torch.get_num_threads()


def test_the_driver_trains_the_local_clusters_teacher_with_the_workers_torch_threads():
    import os

    import torch

    arms = [Pipeline([node(where_and_threads, "teacher_model", "model", name="distil")], namespace=f"students.{k}.seed_0", inputs={"teacher_model"}) for k in ("ce", "kd")]
    pipeline = Pipeline([node(where_and_threads, "raw", "teacher_model", name="train_teacher"), *arms])
    catalog = catalog_for(pipeline)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        DaskRunner(workers=2, torch_threads=1).run(pipeline, catalog)  # its own local cluster
        assert torch.get_num_threads() == 2  # the driver's own setting, back after the teacher
    finally:
        torch.set_num_threads(before)
    assert catalog.load("teacher_model") == (os.getpid(), 1)
    assert all(catalog.load(f"students.{k}.seed_0.model")[0] != os.getpid() for k in ("ce", "kd"))


def _worker_start_state() -> tuple[int, bool]:
    """A worker's parent process and whether the project's arm nodes were imported when it was asked."""
    import os
    import sys

    return os.getppid(), "distillation_studies.pipelines.distillation.nodes" in sys.modules


def _recording_connect(monkeypatch, events: list) -> None:
    from contextlib import contextmanager

    from distillation_studies import runner

    real_connect = runner._connect

    @contextmanager
    def recorded(settings):
        events.append("cluster starts")
        with real_connect(settings) as client:
            events.append(sorted(client.run(_worker_start_state).values()))
            yield client

    monkeypatch.setattr(runner, "_connect", recorded)


def test_a_local_cluster_starts_when_an_arm_needs_a_worker_and_its_workers_share_one_forkserver(monkeypatch):
    import os

    events: list = []
    _recording_connect(monkeypatch, events)

    def teacher(raw: float) -> float:
        events.append("teacher trained")
        return raw

    arms = [Pipeline([node(double, "teacher_model", "model", name="distil")], namespace=f"students.{k}.seed_0", inputs={"teacher_model"}) for k in ("ce", "kd")]
    pipeline = Pipeline([node(teacher, "raw", "teacher_model", name="train_teacher"), *arms])
    catalog = catalog_for(pipeline)
    DaskRunner(workers=2, torch_threads=1).run(pipeline, catalog)
    assert catalog.load("students.kd.seed_0.model") == 2.0
    assert events[:2] == ["teacher trained", "cluster starts"]  # the driver's own task first, the cluster after it
    (first, _), (second, _) = events[2]
    assert first == second != os.getpid()  # forked by one server, not started by this process's nannies


FRESH_DRIVER = """
from distillation_studies.runner import DaskSettings, _connect, start_forkserver


def _worker_start_state():
    import os, sys

    return os.getppid(), "distillation_studies.pipelines.distillation.nodes" in sys.modules


if __name__ == "__main__":
    assert start_forkserver()
    with _connect(DaskSettings(workers=2)) as client:
        print("imported at start:", sorted(imported for _, imported in client.run(_worker_start_state).values()))
"""


def test_workers_forked_from_the_server_start_with_the_project_imported(tmp_path):
    """In a process of its own, as in ``kedro run``: a forkserver started earlier (by another test's cluster in
    this process) keeps the imports it was started with."""
    import subprocess
    import sys

    script = tmp_path / "driver.py"
    script.write_text(FRESH_DRIVER)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = [line for line in done.stdout.splitlines() if line.startswith("imported at start:")]
    assert found == ["imported at start: [True, True]"], done.stdout[-3000:]  # there when each worker was first asked


def test_a_run_whose_tasks_all_run_in_the_driver_starts_no_cluster(monkeypatch):
    events: list = []
    _recording_connect(monkeypatch, events)
    pipeline = Pipeline([node(double, "raw", "doubled", name="prepare"), node(double, "doubled", "report", name="report")])
    catalog = catalog_for(pipeline)
    DaskRunner(workers=2, torch_threads=1).run(pipeline, catalog)
    assert catalog.load("report") == 4.0 and events == []


def test_an_existing_cluster_is_connected_at_once(monkeypatch, cluster):
    events: list = []
    _recording_connect(monkeypatch, events)
    pipeline = Pipeline([node(double, "raw", "doubled", name="prepare")])
    DaskRunner(address=cluster).run(pipeline, catalog_for(pipeline))
    assert events[0] == "cluster starts"  # no forkserver to wait for: connected before the first task


def test_the_forkserver_imports_the_node_modules_of_the_tasks_sent_to_workers():
    from distillation_studies.pipelines.comparison.nodes import gather_seeds
    from distillation_studies.pipelines.search.nodes import search_methods
    from distillation_studies.runner import DaskSettings, worker_node_modules

    pipeline = Pipeline(
        [
            node(  # trains: on a worker
                search_methods,
                ["teacher_model", "model_input", "data_summary", "student_model", "student_training", "methods", "search", "storage", "tracking"],
                "search_trials",
                name="search",
                tags="search",
            ),
            node(gather_seeds, "search_trials", "gathered", name="gather"),  # light: in the driver
            node(double, "gathered", "report", name="report"),  # a function outside the project: its module is not ours
        ]
    )
    assert worker_node_modules(task_groups(pipeline), DaskSettings()) == ["distillation_studies.pipelines.search.nodes"]


@pytest.mark.parametrize(("platform", "forked"), [("linux", True), ("darwin", False), ("win32", False)])
def test_workers_are_forked_on_linux_only(monkeypatch, platform, forked):
    import multiprocessing
    import sys

    from distillation_studies import runner

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn", "fork", "forkserver"])
    assert runner._has_forkserver() is forked
