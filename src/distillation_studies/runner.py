"""Run a study's arms in parallel on Dask: ``kedro run --runner=distillation_studies.runner.DaskRunner``.

Written against Kedro 1.x's ``AbstractRunner`` and ``Task`` (Kedro's documented DaskRunner calls APIs
Kedro 1.0 removed). Nodes are grouped into tasks: each (arm, seed) namespace ``students.<arm>.seed_<n>``
is one task (its training and its evaluation, on one worker), every other node is a task of its own.
The driver starts a task once the tasks producing its inputs are done: the teacher runs once, the arms
then run side by side, and the comparison runs when all arms are done. Tasks that train or evaluate a
model go to the Dask workers; the light ones (data preparation, comparison, report) run in the driver, and
so does the teacher on a local cluster without GPUs (:func:`runs_in_driver`). Such a cluster starts when the
first task needs a worker (:class:`LazyClient`), its workers forked from a server that imported the project
meanwhile (:func:`start_forkserver`).

Each task receives the datasets it reads and writes (the catalog's own objects, so every output is saved
under the run's one save version, on a filesystem or fsspec URL the workers share) and the study's
``StudyRun``; it runs its nodes through Kedro's ``Task`` with the project's hooks in the worker, so each
arm's MLflow run is opened, filled and closed where the arm trains. Outputs kept in memory are sent
back to the driver. Settings: ``conf/<env>/runner.yml`` (``dask:``), overridden by the environment
variable ``DASK_SCHEDULER_ADDRESS`` and by ``--runner-params``.
"""

from __future__ import annotations

import functools
import logging
import shutil
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, fields
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, Callable, Iterator

from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import AbstractVersionedDataset
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from kedro.runner import AbstractRunner
from kedro.runner.task import Task

from distillation_studies.common.errors import ConfigError
from distillation_studies.config_loader import session_config_loader
from distillation_studies.tracking.hooks import STUDY_RUN, arm_of
from distillation_studies.study.identity import ArmRun

log = logging.getLogger(__name__)

PACKAGE = __name__.split(".")[0]
TRAINING_TAGS = {"search", "confirmation"}  # nodes that train many models each (pipelines/search)


@dataclass(frozen=True)
class DaskSettings:
    """How the study's tasks are spread (``conf/base/runner.yml``, key ``dask``)."""

    address: str | None = None  # a running scheduler (tcp://host:8786); None starts a local cluster
    workers: int = 2  # local cluster: worker processes
    torch_threads: int = 1  # torch intra-op threads of each task (one task at a time per worker)
    gpus_per_worker: int = 0  # local cluster: 1 = one GPU per worker (needs dask-cuda's LocalCUDACluster)
    allowed_failures: int = 1  # local cluster: times a task is retried elsewhere after its worker died
    dashboard: bool = False  # local cluster: serve Dask's dashboard on port 8787 (needs bokeh)
    no_worker_timeout_s: float = 120  # the study stops when no worker has been alive for this long

    def check(self) -> None:
        for name in ("workers", "torch_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"runner.dask.{name}: must be an integer >= 1, got {value!r}")
        for name in ("gpus_per_worker", "allowed_failures"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"runner.dask.{name}: must be an integer >= 0, got {value!r}")
        timeout = self.no_worker_timeout_s
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
            raise ConfigError(f"runner.dask.no_worker_timeout_s: must be a number of seconds > 0, got {timeout!r}")
        if self.gpus_per_worker > 1:
            raise ConfigError("runner.dask.gpus_per_worker: 0 or 1 (a task trains one model on one GPU)")


def settings_from(config_loader) -> dict[str, Any]:
    """The ``dask`` section of ``conf/<env>/runner.yml`` (empty when there is none)."""
    try:
        return dict((config_loader["runner"] or {}).get("dask") or {})
    except Exception:  # MissingConfigException: no runner.yml in this conf source
        return {}


def resolve_settings(configured: dict[str, Any], overrides: dict[str, Any]) -> DaskSettings:
    """Defaults < ``runner.yml`` < ``DASK_SCHEDULER_ADDRESS`` (Dask's own config) < ``--runner-params``."""
    import dask

    known = {f.name for f in fields(DaskSettings)}
    unknown = sorted((set(configured) | set(overrides)) - known)
    if unknown:
        raise ConfigError(f"runner.dask: unknown key(s) {unknown}; allowed: {sorted(known)}")
    merged = {**configured}
    address = dask.config.get("scheduler-address", None)
    if address:
        merged["address"] = address
    merged.update(overrides)
    settings = DaskSettings(**merged)
    settings.check()
    return settings


def task_groups(pipeline: Pipeline) -> dict[str, list[Node]]:
    """Nodes per task, in run order: one task per (arm, seed) namespace, one per other node.

    Falls back to one task per node if grouping would make the tasks depend on each other in a cycle.
    """
    groups: dict[str, list[Node]] = {}
    for node in pipeline.nodes:  # topologically sorted
        groups.setdefault(_group_name(node), []).append(node)
    try:
        TopologicalSorter(group_dependencies(groups)).prepare()
    except CycleError:
        return {node.name: [node] for node in pipeline.nodes}
    return groups


def _group_name(node: Node) -> str:
    """An arm's namespace (``students.kd.seed_0``) for its nodes, the node's own name for the others."""
    arm = next((ArmRun.parse(output) for output in node.outputs if ArmRun.parse(output)), None)
    return arm[0].namespace if arm is not None and not arm[0].is_teacher else node.name


def group_dependencies(groups: dict[str, list[Node]]) -> dict[str, set[str]]:
    producer = {output: name for name, nodes in groups.items() for node in nodes for output in node.outputs}
    return {
        name: {producer[i] for node in nodes for i in node.inputs if i in producer and producer[i] != name}
        for name, nodes in groups.items()
    }


def describe(group: str) -> str:
    """A task as a user knows it: ``arm kd/seed_0`` for an arm's namespace, else ``node <name>``."""
    arm = arm_of(f"{group}.history")
    return f"arm {arm.key}" if arm is not None else f"node {group}"


class StudyTaskError(RuntimeError):
    """One or more of the study's tasks failed; the message names them (arms by arm and seed)."""


class DaskRunner(AbstractRunner):
    """Runs a Kedro pipeline's tasks on a Dask cluster (local by default), with the project's hooks
    running where each task runs."""

    def __init__(self, is_async: bool = False, **settings: Any) -> None:
        super().__init__(is_async=is_async)
        self._overrides = settings

    def _get_executor(self, max_workers: int) -> None:
        return None  # tasks go to Dask; see _run

    def _run(self, pipeline: Pipeline, catalog, hook_manager=None, run_id: str | None = None) -> None:
        # The CLI builds the runner before any config is read; the session's loader exists by now.
        settings = resolve_settings(settings_from(session_config_loader()), self._overrides)
        groups = task_groups(pipeline)
        needs = group_dependencies(groups)
        # A local cluster's workers are forked from a server that imports the project while the driver runs its own
        # tasks; without one (off Linux), the cluster starts now and its workers import the project meanwhile.
        forked = _local_cpu_cluster(settings) and start_forkserver(worker_node_modules(groups, settings))
        announce = lambda client: self._logger.info(  # noqa: E731
            "Dask: %d tasks on %s (%s)", len(groups), client.scheduler.address, _describe_cluster(settings)
        )
        with LazyClient(settings, announce) as client:
            if not forked:
                client.connect()
            self._schedule(client, groups, needs, catalog, hook_manager, run_id, settings)

    def _schedule(self, client, groups, needs, catalog, hook_manager, run_id, settings: DaskSettings) -> None:
        """Submit each task once its inputs are done, one at a time to each idle worker; run the light ones
        here, in the driver. A task waits in the driver until a worker is free, so one that never started
        is never lost with a worker that dies."""
        done: set[str] = set()
        todo = set(groups)
        local: list[str] = []
        ready: list[str] = []
        names: dict[Any, str] = {}
        failures: list[tuple[str, BaseException]] = []
        watch = ClusterWatch(client, settings, names, self._logger)
        try:
            while True:
                if not failures:
                    for name in sorted(g for g in todo if needs[g] <= done):
                        todo.discard(name)
                        (local if runs_in_driver(groups[name], settings) else ready).append(name)
                if local and not failures:
                    name = local.pop(0)
                    try:
                        # A training task here (the teacher's) trains with the workers' torch threads.
                        with _torch_threads(settings.torch_threads if runs_on_workers(groups[name]) else None):
                            for node in groups[name]:
                                Task(node=node, catalog=catalog, hook_manager=hook_manager, is_async=self._is_async, run_id=run_id).execute()
                    except Exception as error:  # noqa: BLE001 - reported with the others below
                        failures.append((name, error))
                        continue
                    self._completed(name, done, len(groups))
                    continue
                if failures:
                    ready.clear()
                for worker in watch.idle_workers()[: len(ready)] if ready else []:  # no cluster needed before
                    name = ready.pop(0)
                    future = client.submit(
                        run_task,
                        groups[name],
                        _task_catalog(catalog, groups[name]),
                        run_id,
                        settings.torch_threads,
                        self._is_async,
                        key=f"{name}-{run_id}",
                        pure=False,
                        workers=[worker],
                        allow_other_workers=True,  # a retry after this worker died goes elsewhere
                    )
                    names[future] = name
                    watch.assigned(future, worker)
                if not names and not ready:
                    break
                finished = _first_done(list(names))
                watch.check(waiting=[describe(n) for n in (*names.values(), *ready)], done=len(done), total=len(groups))
                for future in finished:
                    self._collect(future, names.pop(future), catalog, done, failures, len(groups))
        except BaseException:
            if names:
                client.cancel(list(names))
            raise
        finally:
            watch.close()
        if failures:
            raise _failure(failures, len(done), len(groups)) from failures[0][1]
        if todo:
            raise StudyTaskError(f"tasks could not be scheduled (their inputs are never produced): {sorted(todo)}")

    def _collect(self, future, name: str, catalog, done: set[str], failures: list, total: int) -> None:
        """Save a finished task's in-memory outputs in the driver's catalog, or record its failure."""
        try:
            outputs = future.result()
        except Exception as error:  # noqa: BLE001 - collected, reported together below
            self._logger.error("Dask task %s failed: %s: %s", describe(name), type(error).__name__, error)
            failures.append((name, error))
            return
        for dataset, value in outputs.items():  # outputs kept in memory come back to the driver
            catalog.save(dataset, value)
        self._completed(name, done, total)

    def _completed(self, name: str, done: set[str], total: int) -> None:
        done.add(name)
        self._logger.info("Completed %s (%d of %d tasks)", describe(name), len(done), total)


POLL_S = 1.0  # how often the driver looks at the cluster while tasks run


def _first_done(futures: list) -> set:
    """The futures done within ``POLL_S`` (none when there are none to wait for, after that pause)."""
    import time

    from distributed import wait

    if not futures:
        time.sleep(POLL_S)
        return set()
    try:
        return wait(futures, timeout=POLL_S, return_when="FIRST_COMPLETED").done
    except TimeoutError:
        return set()


class ClusterWatch:
    """What the driver sees of the cluster while the study runs: which workers are idle, each worker that
    leaves (with the arms it was running, retried or not), a cluster that shrinks, and no worker at all for
    ``no_worker_timeout_s`` (the study then stops with a message instead of waiting forever)."""

    def __init__(self, client, settings: DaskSettings, names: dict[Any, str], logger: logging.Logger) -> None:
        self._client, self._settings, self._names, self._log = client, settings, names, logger
        self._pinned: dict[Any, str] = {}  # future -> the worker it was sent to, until it shows there
        self._losses: dict[str, int] = {}  # task -> times a worker died while running it
        self._expected = None if settings.address else settings.workers
        self._largest = 0
        self._alone_since: float | None = None
        self._reported: int | None = None  # the worker count last warned about
        self._followed: set[str] = set()  # workers whose own event topic this driver reads

    def assigned(self, future, worker: str) -> None:
        self._pinned[future] = worker

    def idle_workers(self) -> list[str]:
        """Live workers running none of this study's tasks (nor about to), least recently used first."""
        processing = self._client.processing()
        self._follow(processing)
        running = {key for keys in processing.values() for key in keys}
        self._pinned = {f: w for f, w in self._pinned.items() if f in self._names and f.key not in running}
        busy = {w for w, keys in processing.items() if keys} | set(self._pinned.values())
        in_flight = len(self._names)
        idle = [w for w in sorted(processing) if w not in busy]
        return idle[: max(0, len(processing) - in_flight)]

    def check(self, waiting: list[str], done: int, total: int) -> None:
        """Warn when the cluster shrinks; stop the study when no worker has been alive for too long."""
        import time

        alive = self._client.nthreads()
        self._follow(alive)
        workers = len(alive)
        full = max(self._expected or 0, self._largest)
        if workers < full and workers != self._reported:
            self._log.warning(
                "Dask cluster: %d of %d workers alive; the study goes on with %s", workers, full,
                f"{workers} worker(s)" if workers else f"none, waiting up to {self._settings.no_worker_timeout_s:g} s for one",
            )
            self._reported = workers
        elif workers >= full and self._reported is not None:
            self._log.info("Dask cluster: %d workers alive again", workers)
            self._reported = None
        self._largest = max(self._largest, workers)
        if workers:
            self._alone_since = None
            return
        now = time.monotonic()
        self._alone_since = self._alone_since or now
        if now - self._alone_since >= self._settings.no_worker_timeout_s:
            raise StudyTaskError(no_worker_message(self._settings.no_worker_timeout_s, waiting, done, total))

    def _follow(self, workers) -> None:
        """Read each worker's own event topic, where the scheduler says it left and what it was running.

        Not the ``all`` topic: it also carries ``replicate`` events that hold scheduler objects, and the
        scheduler drops the connection of a client it cannot send one to (``scatter(broadcast=True)``
        inside a search node did exactly that)."""
        for worker in set(workers) - self._followed:
            self._client.subscribe_topic(worker, functools.partial(self._on_event, worker))
            self._followed.add(worker)

    def _on_event(self, worker: str, event: tuple[float, dict]) -> None:
        """A worker left: name the arms it was running and say whether Dask retries them elsewhere."""
        message = event[1]
        if not isinstance(message, dict) or message.get("action") != "remove-worker" or message.get("expected"):
            return
        keys = {future.key: name for future, name in list(self._names.items())}
        lost = [keys[key] for key in message.get("processing-tasks", ()) if key in keys]
        if not lost:
            self._log.warning("Dask worker %s left the cluster (it was running none of the study's tasks)", worker)
        for name in lost:
            self._losses[name] = self._losses.get(name, 0) + 1
            self._log.warning("Dask worker %s left the cluster while running %s: %s", worker, describe(name), self._retry(name))

    def _retry(self, name: str) -> str:
        if self._settings.address:
            return "Dask retries it on another worker unless distributed.scheduler.allowed-failures is used up"
        allowed, losses = self._settings.allowed_failures, self._losses[name]
        if losses > allowed:
            return f"no retry left (runner.dask.allowed_failures: {allowed}): it fails"
        return f"retrying it on another worker (retry {losses} of {allowed}, runner.dask.allowed_failures)"

    def close(self) -> None:
        for worker in self._followed:
            try:
                self._client.unsubscribe_topic(worker)
            except Exception:  # noqa: BLE001 - the client may already be closing
                pass


def no_worker_message(timeout_s: float, waiting: list[str], done: int, total: int) -> str:
    return (
        f"no Dask worker alive for {timeout_s:g} s (runner.dask.no_worker_timeout_s): the study stops "
        f"({done} of {total} tasks done and saved; not finished: {', '.join(waiting) or 'none'}).\n"
        "Start workers again (or find why they died), then finish the study without redoing finished work: "
        "kedro run --only-missing-outputs (same --env, --params and --runner)"
    )


def runs_on_workers(nodes: list[Node]) -> bool:
    """Tasks that train or evaluate a model (they write a teacher's or an arm's outputs) go to the workers,
    where the GPUs are, and so do the search and its confirmation, which spread their jobs over every worker
    from there; data preparation and the comparison and report run in the driver."""
    trains = any(arm_of(output) is not None for node in nodes for output in node.outputs)
    return trains or any(node.tags & TRAINING_TAGS for node in nodes)


def runs_in_driver(nodes: list[Node], settings: DaskSettings) -> bool:
    """Data preparation, the comparison and the report (not :func:`runs_on_workers`), and, on a local cluster
    without GPUs, the teacher's training: every arm waits for the teacher, and the driver, which has imported
    the project already, trains it while the new workers still import theirs (about 5 s on 2 cores). With
    GPUs (one per worker) or an existing cluster the teacher trains on a worker, where the devices are."""
    if not runs_on_workers(nodes):
        return True
    teacher = ArmRun.teacher().key
    trains_teacher = any((arm := arm_of(output)) is not None and arm.key == teacher for node in nodes for output in node.outputs)
    return trains_teacher and _local_cpu_cluster(settings)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside (unchanged for None), as they were after."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _failure(failures: list[tuple[str, BaseException]], done: int, total: int) -> StudyTaskError:
    from distributed import KilledWorker

    lines = []
    for name, error in failures:
        if isinstance(error, KilledWorker):
            lines.append(f"{describe(name)}: its worker process died while running it (retries exhausted: {error})")
        else:
            lines.append(f"{describe(name)}: {type(error).__name__}: {error}")
    return StudyTaskError(
        f"{len(failures)} study task(s) failed ({done} of {total} done and saved):\n  "
        + "\n  ".join(lines)
        + "\nFix the cause, then finish the study without redoing finished work: "
        "kedro run --only-missing-outputs (same --env, --params and --runner)"
    )


def _describe_cluster(settings: DaskSettings) -> str:
    if settings.address:
        return "existing cluster"
    return f"local cluster, {settings.workers} workers x {settings.torch_threads} torch threads" + (
        ", one GPU each" if settings.gpus_per_worker else ""
    )


class LazyClient:
    """The run's Dask client, connected when first used: a local cluster starts once a task must go to a
    worker, so the driver's own tasks (data preparation, the teacher's training) run meanwhile, and the
    workers' processes, forked from a server that has imported the project by then
    (:func:`start_forkserver`), are ready at once. Closes what it opened."""

    def __init__(self, settings: DaskSettings, on_connect: Callable[[Any], None]) -> None:
        self._settings, self._on_connect = settings, on_connect
        self._stack = ExitStack()
        self._client: Any = None

    def connect(self) -> Any:
        if self._client is None:
            self._client = self._stack.enter_context(_connect(self._settings))
            self._on_connect(self._client)
        return self._client

    def __getattr__(self, name: str) -> Any:  # the client's own methods: submit, processing, cancel...
        return getattr(self.connect(), name)

    def __enter__(self) -> LazyClient:
        return self

    def __exit__(self, *error: Any) -> None:
        self._stack.close()


def _local_cpu_cluster(settings: DaskSettings) -> bool:
    return settings.address is None and not settings.gpus_per_worker


def worker_node_modules(groups: dict[str, list[Node]], settings: DaskSettings) -> list[str]:
    """The modules of the node functions this run sends to workers (a search's too, when it has one)."""
    modules = {node.func.__module__ for nodes in groups.values() if not runs_in_driver(nodes, settings) for node in nodes}
    return sorted(name for name in modules if name.startswith(f"{PACKAGE}."))


def start_forkserver(node_modules: list[str] = ()) -> bool:
    """Start the server that local workers' processes are forked from, importing what a worker needs
    (:data:`~distillation_studies.worker_preload.WORKER_MODULES` and this run's ``node_modules``, about 6 s of
    CPU) on a core the driver leaves free while it prepares the data and trains the teacher. Each worker then
    starts with the project imported, instead of two workers importing it each on the cores the teacher's
    training needs. Off Linux (False), or where a forkserver runs already (its imports are what they are),
    nothing changes."""
    import multiprocessing
    from multiprocessing import forkserver

    from distillation_studies.worker_preload import WORKER_MODULES

    if not _has_forkserver():
        return False
    preload = ["distributed", *dict.fromkeys([*WORKER_MODULES, *node_modules]), f"{PACKAGE}.worker_forkserver"]
    multiprocessing.get_context("forkserver").set_forkserver_preload(preload)
    forkserver.ensure_running()
    return True


def _has_forkserver() -> bool:
    """Linux only: macOS has a forkserver, but forking a process that loaded its system frameworks (torch does)
    is what made Python start processes afresh there by default."""
    import multiprocessing
    import sys

    return sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods()


@contextmanager
def _connect(settings: DaskSettings) -> Iterator[Any]:
    """A client of the configured scheduler, or of a local cluster started (and stopped) for this run."""
    import dask
    from distributed import Client, LocalCluster

    if settings.address:
        if not settings.address.startswith("tls://"):
            log.warning(
                "runner.dask.address %s is not TLS: whoever reaches that port can run any code as the workers' user. "
                "Use a tls:// scheduler with certificates (distributed.comm.tls in Dask's config; README, Cluster).",
                settings.address,
            )
        try:
            client = Client(settings.address, timeout="30s")  # TLS credentials from Dask's config (distributed.comm.tls)
        except OSError as error:
            raise ConfigError(
                f"runner.dask.address (or DASK_SCHEDULER_ADDRESS): no Dask scheduler at {settings.address}: {error}"
            ) from error
        with client:
            yield client
        return
    options = dict(
        n_workers=settings.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":8787" if settings.dashboard else None,
        preload=[f"{PACKAGE}.worker_preload"],  # workers import the project while the driver prepares the data
        # TLS with certificates made for this cluster alone: a process that does not hold them (another user
        # of this machine, anything reaching the ports) is refused, and cannot run code in the workers.
        security=local_security(),
    )
    # A worker restarted by its nanny on a loaded machine may take longer than distributed's 15 s to register;
    # the local cluster then closed its nanny for good. Wait as long as the study waits for a worker.
    patience = {
        "distributed.scheduler.allowed-failures": settings.allowed_failures,
        "distributed.deploy.lost-worker-timeout": f"{settings.no_worker_timeout_s}s",
    }
    if not settings.gpus_per_worker and _has_forkserver():
        patience["distributed.worker.multiprocessing-method"] = "forkserver"  # see start_forkserver
    with dask.config.set(patience):
        if settings.gpus_per_worker:
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError as error:
                raise ConfigError(
                    "runner.dask.gpus_per_worker: 1 needs dask-cuda (pip install 'distillation_studies[cuda]')"
                ) from error
            cluster = LocalCUDACluster(**{k: v for k, v in options.items() if k != "processes"})
        else:
            cluster = LocalCluster(**options)
        with cluster, Client(cluster, security=options["security"]) as client:
            yield client


def local_security() -> Any:
    """Temporary TLS credentials (CA, certificate and key held in memory) for a local cluster and its client."""
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError as error:  # distributed makes them with the cryptography package
        raise ConfigError("the local Dask cluster runs over TLS, which needs the cryptography package (pip install cryptography)") from error


def _task_catalog(catalog, nodes: list[Node]) -> DataCatalog:
    """The datasets a task reads and writes (and the study's tracking handle), to ship to its worker."""
    names = {name for node in nodes for name in (*node.inputs, *node.outputs)}
    if STUDY_RUN in catalog:
        names.add(STUDY_RUN)
    return DataCatalog(datasets={name: catalog.get(name, fallback_to_runtime_pattern=True) for name in names})


# ---- on the worker ------------------------------------------------------------------------------------

_worker_hooks: Any = None


def run_task(nodes: list[Node], catalog: DataCatalog, run_id: str | None, torch_threads: int, is_async: bool) -> dict[str, Any]:
    """Run one task's nodes in order on this worker; return the outputs that live in memory only."""
    import torch

    from distillation_studies import worker_preload

    worker_preload.wait()  # a local cluster's worker imports the project in the background
    torch.set_num_threads(torch_threads)
    hook_manager = _hook_manager()
    for node in nodes:
        _discard_earlier_attempt(node, catalog)
        Task(node=node, catalog=catalog, hook_manager=hook_manager, is_async=is_async, run_id=run_id).execute()
    return {
        name: catalog.load(name)
        for node in nodes
        for name in node.outputs
        if isinstance(catalog.get(name), MemoryDataset)
    }


def dask_setup(worker=None) -> None:
    """Dask preload (``dask worker --preload distillation_studies.runner``): import the project's nodes and
    hooks when the worker starts, not inside its first task."""
    import importlib

    from distillation_studies.worker_preload import WORKER_MODULES

    for module in WORKER_MODULES:
        importlib.import_module(module)
    _hook_manager()


def _hook_manager():
    """The project's hooks, registered once per worker process (Kedro's hook manager cannot be pickled)."""
    global _worker_hooks
    if _worker_hooks is None:
        from kedro.framework.hooks.manager import _create_hook_manager, _register_hooks
        from kedro.framework.project import configure_project, settings

        configure_project(PACKAGE)
        _worker_hooks = _create_hook_manager()
        _register_hooks(_worker_hooks, settings.HOOKS)
    return _worker_hooks


def _discard_earlier_attempt(node: Node, catalog: DataCatalog) -> None:
    """Remove what an earlier attempt of this very task wrote under this run's save version before its
    worker died: a retry must be able to save, and the save version is this run's alone."""
    for name in node.outputs:
        dataset = catalog.get(name)
        version = getattr(dataset, "_version", None)
        if not isinstance(dataset, AbstractVersionedDataset) or version is None or not version.save:
            continue
        path = dataset._get_versioned_path(version.save)
        if not dataset._exists_function(str(path)):
            continue
        log.warning("%s: removing %s, written by an earlier attempt of this task whose worker died", node.name, path)
        filesystem = getattr(dataset, "_fs", None)
        if filesystem is not None:
            filesystem.rm(str(path), recursive=True)
        elif Path(path).is_dir():
            shutil.rmtree(path)
        else:
            Path(path).unlink()

