"""MLflow bookkeeping for a study: one study (parent) run per ``kedro run``, one nested run per arm.

Everything a process needs to log into a study is a :class:`StudyRun` (tracking URI, experiment,
study run id, config hash, save version), handed to it with the catalog: a Dask worker or a resumed
run rebuilds the rest from MLflow by run tags, never from state held by another process. Each arm's
nested run is opened, filled and closed by the process that trains it (:class:`NestedRun`). Runs are
created with ``MlflowClient`` and an explicit ``mlflow.parentRunId`` tag, so nesting never depends
on a global "active run".
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterator
from urllib.parse import urlparse

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first runs there are not guarded
    fcntl = None

import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

from distillation_studies.analysis.metrics import BY_NAME, COST, QUALITY, SELECTION
from distillation_studies.common import epochs
from distillation_studies.common.errors import ConfigError
from distillation_studies.datasets import model_payload
from distillation_studies.tracking.models import label_model, newest_model_id
from distillation_studies.provenance import flatten

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 5000
EPOCH_FLUSH_S = 5.0  # seconds: live enough to watch an arm train, one write per arm when its arms are short
MAX_BATCH_ENTITIES = 1000  # MLflow's log_batch limits per call: metrics, params and tags together
MAX_BATCH_PARAMS_OR_TAGS = 100  # of which params (and tags) at most
SEARCH_LIMIT = 50000  # MLflow's largest page: more runs than any study has
URI_SCHEMES = ("sqlite", "http", "https", "databricks", "postgresql", "mysql", "mssql", "file")
# MLflow groups a run's charts by the prefix before the first "/": test quality, costs, validation
# (the selection), training curves, and MLflow's own system/ metrics.
SECTIONS = {QUALITY: "test", COST: "cost", SELECTION: "val"}


def metric_name(name: str) -> str | None:
    """The MLflow name of a reported metric (``analysis/metrics.py``), under its section:
    ``test_accuracy`` -> ``test/accuracy``, ``best_val_accuracy`` -> ``val/best_accuracy``,
    ``flops`` -> ``cost/flops``; None for anything else (labels, settings: those are params)."""
    if name == "best_epoch":
        return "val/best_epoch"
    metric = BY_NAME.get(name)
    if metric is None:
        return None
    section = SECTIONS[metric.kind]
    return f"{section}/{name.replace(f'{section}_', '', 1)}"


def epoch_metric_name(column: str) -> str:
    """A history column's MLflow name: loss terms, the learning rate and training accuracy under
    ``train/``, validation under ``val/`` (``loss_ce`` -> ``train/loss_ce``, ``val_loss`` -> ``val/loss``)."""
    section, _, rest = column.partition("_")
    if section in ("train", "val") and rest:
        return f"{section}/{rest}"
    return f"train/{column}"


def resolve_uri(uri: str, project_path: Path) -> str:
    """``sqlite:///relative.db`` is made absolute under the project, so any working directory works."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((project_path / uri[len(prefix) :]).resolve())
    return uri


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute), None for other stores."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def check_store(uri: str) -> None:
    """One clear error, naming ``tracking.uri`` or the database file, for a store MLflow cannot use.

    Called before any work: a typo'd URI or a truncated ``mlflow.db`` otherwise fails deep inside
    MLflow (or SQLAlchemy) with a message naming neither.
    """
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme not in URI_SCHEMES:
        raise ConfigError(
            f"tracking.uri: {uri!r} is not a tracking URI MLflow can use; use sqlite:///mlflow.db (the default), "
            "a tracking server (http://host:5000) or a database URL (postgresql://...), or set tracking.enabled: false"
        )
    if scheme == "file":
        raise ConfigError(
            f"tracking.uri: {uri!r}: MLflow 3 no longer supports the file store for this project's tracking; "
            "use sqlite:///mlflow.db or a tracking server"
        )
    database = sqlite_file(uri)
    if database is None:
        return
    if not database.parent.is_dir():
        raise ConfigError(f"tracking.uri: {uri!r}: the folder {database.parent} does not exist")
    check_store_writable(database, uri)
    if not database.exists():
        return
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
            connection.execute("PRAGMA schema_version").fetchone()
            # Reads every page: a database with corrupted interior pages opens fine and fails mid-study.
            problems = [row[0] for row in connection.execute("PRAGMA quick_check(3)").fetchall()]
    except sqlite3.DatabaseError as error:
        problems = [str(error)]
    if problems != ["ok"]:
        raise ConfigError(
            f"{database}: the MLflow database cannot be read ({' '.join('; '.join(problems).split())[:500]}); it is truncated, corrupted "
            "or not an SQLite file. Move it aside (nothing else in the project depends on it) to start a new one, "
            "or set tracking.uri"
        )


def check_store_writable(database: Path, uri: str) -> None:
    """The SQLite file (when it exists) and its folder (SQLite writes its journal and MLflow its lock
    there) must take writes: otherwise MLflow retries for about two minutes, then says only
    ``unable to open database file``. Probed by opening, never by permission bits (root ignores them)."""
    probe = database.parent / f".{database.name}.write_check_{os.getpid()}"
    _open_for_writing(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, f"the folder {database.parent}", uri)
    probe.unlink()
    if database.exists():
        _open_for_writing(database, os.O_RDWR, f"the MLflow database {database}", uri)


def _open_for_writing(path: Path, flags: int, what: str, uri: str) -> None:
    try:
        os.close(os.open(path, flags))
    except OSError as error:
        raise ConfigError(
            f"tracking.uri: {uri!r}: {what} is not writable ({error.strerror or error}); make it writable, "
            "point tracking.uri elsewhere, or set tracking.enabled: false"
        ) from None


@dataclass(frozen=True)
class StudyRun:
    """What any process needs to log into one study: small and picklable, passed with the catalog."""

    tracking_uri: str
    experiment_id: str
    run_id: str  # the study (parent) run
    config_hash: str
    save_version: str  # Kedro's run id: every dataset of the run is saved under it
    git_commit: str = ""  # MLflow's standard source tags, on the study run and on every nested run
    register: str | None = None  # tracking.register: the registered model the recommendation's candidates join
    system_metrics: bool | None = None  # tracking.system_metrics: None logs them where the arm's process sees a GPU
    system_metrics_interval_s: float = 10.0
    epoch_flush_s: float = EPOCH_FLUSH_S  # an arm's epoch metrics reach MLflow at most this often, and when it ends

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)


def source_tags(git_commit: str) -> dict[str, str]:
    """MLflow's own Source, User and git columns (the UI reads these tags, not custom ones)."""
    tags = {MLFLOW_SOURCE_NAME: "kedro run", MLFLOW_SOURCE_TYPE: "PROJECT", MLFLOW_USER: getpass.getuser()}
    return {**tags, MLFLOW_GIT_COMMIT: git_commit} if git_commit and git_commit != "unknown" else tags


def _process_tags() -> dict[str, str]:
    """Where a run is being written from: lets a later run tell an orphan from a live run."""
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


def _metrics(values: dict[str, Any], step: int = 0, timestamp_ms: int | None = None, model_id: str | None = None) -> list[Metric]:
    """MLflow metrics of the numeric ``values``; with ``model_id`` they are that logged model's metrics too."""
    stamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    return [
        Metric(k, float(v), stamp, step, model_id=model_id)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]


def _log_batch(client: MlflowClient, run_id: str, metrics=(), params=(), tags=()) -> None:
    """``log_batch`` within MLflow's limits (100 params, 100 tags, 1000 entities in all per call), in as few
    calls as they allow: params, tags and metrics share a call (each call is a database transaction)."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    while metrics or params or tags:
        some_params, params = params[:MAX_BATCH_PARAMS_OR_TAGS], params[MAX_BATCH_PARAMS_OR_TAGS:]
        some_tags, tags = tags[:MAX_BATCH_PARAMS_OR_TAGS], tags[MAX_BATCH_PARAMS_OR_TAGS:]
        room = MAX_BATCH_ENTITIES - len(some_params) - len(some_tags)
        some_metrics, metrics = metrics[:room], metrics[room:]
        client.log_batch(run_id, metrics=some_metrics, params=some_params, tags=some_tags)


def _params(params: dict[str, str]) -> list[Param]:
    return [Param(k, v[:MAX_PARAM_LENGTH]) for k, v in params.items()]


@contextmanager
def _creation_lock(uri: str) -> Iterator[None]:
    """Serialise creating the SQLite database and the experiment: two ``kedro run`` started together in
    one project folder would otherwise both create the tables, or the experiment, and one would fail."""
    database = sqlite_file(uri)
    if database is None or fcntl is None:
        yield
        return
    with open(database.with_name(database.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class StudyTracker:
    """The driver's side: the experiment, the study run, orphans, and the end of the study."""

    def __init__(self, uri: str, experiment: str, project_path: Path) -> None:
        self.uri = uri
        artifact_root = project_path / "mlruns" / experiment
        with _creation_lock(uri):
            self.client = MlflowClient(tracking_uri=uri)
            try:
                found = self.client.get_experiment_by_name(experiment)
            except Exception as error:  # an unreachable server, a database MLflow cannot open or migrate
                raise ConfigError(f"tracking.uri: MLflow cannot use {uri}: {type(error).__name__}: {error}"[:2000]) from error
            # A tracking server picks the artifact store itself (its --artifacts-destination, shared by every
            # clone of the project that logs to it); a local store keeps them in this project's mlruns/.
            server = urlparse(uri).scheme in ("http", "https", "databricks")
            if found is None:
                location = None if server else artifact_root.as_uri()
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
                return
        self.experiment_id = found.experiment_id
        if not server:
            _check_artifacts_belong_here(found.artifact_location, project_path, experiment, uri)

    def artifact_folder(self) -> Path | None:
        """The local folder the experiment's artifacts go to (``mlruns/<experiment>``), None for a remote store."""
        location = self.client.get_experiment(self.experiment_id).artifact_location
        return Path(urlparse(location).path) if location.startswith("file:") else None

    def start(self, name: str, params: dict[str, Any], tags: dict[str, str], save_version: str) -> StudyRun:
        commit = tags.get("git_commit", "")
        run_tags = {**tags, **source_tags(commit), **_process_tags(), "role": "study"}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=run_tags)
        _log_batch(self.client, run.info.run_id, params=_params(flatten(params)))
        return StudyRun(self.uri, self.experiment_id, run.info.run_id, tags.get("config_hash", ""), save_version, commit)

    def close_orphans(self) -> list[str]:
        """Close, as KILLED, the RUNNING study runs of the experiment (any config) whose process is gone, and
        their RUNNING nested runs. Runs written from another host are left alone (their process cannot be seen)."""
        closed = []
        query = "attributes.status = 'RUNNING' and tags.role = 'study'"
        for parent in self.client.search_runs([self.experiment_id], query, max_results=SEARCH_LIMIT):
            if not _process_is_gone(parent.data.tags):
                continue
            reason = f"orphan: process {parent.data.tags.get('pid')} on {parent.data.tags.get('host')} ended without closing it"
            for child in running_children(self.client, self.experiment_id, parent.info.run_id):
                close_run(self.client, child, "KILLED", reason)
                closed.append(child)
            close_run(self.client, parent.info.run_id, "KILLED", reason)
            closed.append(parent.info.run_id)
        return closed

    def earlier_arm_runs(self, study: StudyRun) -> dict[str, str]:
        """{arm key: run id} of the FINISHED nested runs of earlier study runs of this config, newest first:
        the runs whose saved outputs a resumed ``kedro run --only-missing-outputs`` reuses."""
        return earlier_runs(self.client, study, role="arm", tag="arm")

    def adopt(self, study: StudyRun, runs: dict[str, str]) -> None:
        """Earlier nested runs become this study's own evidence, tagged with the run that resumed them."""
        for run_id in runs.values():
            set_tags(self.client, run_id, {"resumed_by": study.run_id})
        set_tags(self.client, study.run_id, {"resumed_runs": ",".join(sorted(runs.values()))[:MAX_TAG_LENGTH]})


def end_study(study: StudyRun, status: str, error: BaseException | None = None) -> None:
    """Close the study run, and any of its nested runs still RUNNING: their process died (a killed worker
    whose arm was retried elsewhere) or the study itself was interrupted or failed."""
    client = study.client()
    reason = _error_text(error) if error is not None else "left RUNNING: the process training it ended without closing it"
    for child in running_children(client, study.experiment_id, study.run_id):
        close_run(client, child, "KILLED" if status == "FINISHED" else status, reason)
    if error is not None:
        set_tags(client, study.run_id, {"error": _error_text(error)})
    if client.get_run(study.run_id).info.status == "RUNNING":
        client.set_terminated(study.run_id, status)


def _check_artifacts_belong_here(location: str, project_path: Path, experiment: str, uri: str) -> None:
    """A copied project (``cp -a``) shares the original's ``mlflow.db``, whose experiment stores an absolute
    artifact path into the original's ``mlruns/``: stop rather than write results into another project."""
    if not location.startswith("file:"):
        return  # a server's or a bucket's artifact store is meant to be shared
    path = Path(urlparse(location).path).resolve()
    if not path.is_relative_to(project_path.resolve()):
        raise ConfigError(
            f"tracking: experiment {experiment!r} in {uri} stores its artifacts in {path}, outside this project "
            f"({project_path}); this project looks copied from another. Remove the copied mlflow.db and mlruns/ here "
            "to start fresh, or set tracking.experiment to a new name"
        )


def _process_is_gone(tags: dict[str, str]) -> bool:
    if tags.get("host") != socket.gethostname() or not tags.get("pid", "").isdigit():
        return False
    try:
        os.kill(int(tags["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:MAX_TAG_LENGTH]


def running_children(client: MlflowClient, experiment_id: str, study_run_id: str) -> list[str]:
    query = f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{study_run_id}' and attributes.status = 'RUNNING'"
    return [run.info.run_id for run in client.search_runs([experiment_id], query, max_results=SEARCH_LIMIT)]


def close_run(client: MlflowClient, run_id: str, status: str, reason: str) -> None:
    set_tags(client, run_id, {"error": reason[:MAX_TAG_LENGTH]})
    client.set_terminated(run_id, status)


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    _log_batch(client, run_id, tags=[RunTag(k, str(v)[:MAX_TAG_LENGTH]) for k, v in tags.items()])


def arm_runs(study: StudyRun, status: str | None = "FINISHED") -> dict[str, str]:
    """{arm key: run id} of a study's nested runs, found by their tags: its own, and the earlier ones it
    adopted when resuming. The newest run of an arm wins (a retried arm has one run per attempt)."""
    client = study.client()
    found: dict[str, str] = {}
    for tag in ("study_run", "resumed_by"):
        query = f"tags.{tag} = '{study.run_id}' and tags.role = 'arm'"
        if status:
            query += f" and attributes.status = '{status}'"
        found = {**newest_per_tag(client, study.experiment_id, query, "arm"), **found}  # its own runs first
    return found


def newest_per_tag(client: MlflowClient, experiment_id: str, query: str, tag: str, skip_study_run: str | None = None) -> dict[str, str]:
    """{value of tag ``tag``: run id} of the runs ``query`` finds, the newest per value (a retried or rerun
    job has several); runs without the tag, or of study run ``skip_study_run``, are left out."""
    found: dict[str, str] = {}
    for run in client.search_runs([experiment_id], query, max_results=SEARCH_LIMIT, order_by=["attributes.start_time DESC"]):
        value = run.data.tags.get(tag)
        if value and (skip_study_run is None or run.data.tags.get("study_run") != skip_study_run):
            found.setdefault(value, run.info.run_id)
    return found


def earlier_runs(client: MlflowClient, study: StudyRun, role: str, tag: str) -> dict[str, str]:
    """{value of tag ``tag``: run id} of the FINISHED ``role`` runs (``arm``, ``search``) of earlier study runs
    of this config, the newest per value: what a resumed study adopts, never another config's runs."""
    query = f"tags.config_hash = '{study.config_hash}' and tags.role = '{role}' and attributes.status = 'FINISHED'"
    return newest_per_tag(client, study.experiment_id, query, tag, skip_study_run=study.run_id)


class NestedRun:
    """One arm's nested run, opened by the process that trains the arm: start and end times are its own.

    Epochs are buffered, each stamped when it ends, and written in one ``log_batch`` at most every
    ``study.epoch_flush_s`` (live in the UI during a long arm, one write for a short one) and when the
    run finishes or fails: a synchronous database write per epoch cost more than some arms' training.
    A run opened here buffers its later params too (the history's, at the node's end): they share that write."""

    def __init__(self, study: StudyRun, run_id: str, found: Run | None = None) -> None:
        self.study, self.run_id = study, run_id
        self.client = study.client()
        self._monitor: Any = None  # MLflow's system-metrics thread, in the process that trains the arm
        self._epochs: list[Metric] = []  # logged, not yet written
        self._params: list[Param] = []  # logged, not yet written
        self._flushed_at = time.monotonic()
        # The run's params when this object logged every one of them (opened here), else None: read from MLflow.
        self.params: dict[str, str] | None = None
        # The run as ``find`` read it, until this object changes its params or tags: saves reading it again.
        self._found = found

    @classmethod
    def open(cls, study: StudyRun, key: str, seed: int | None, params: dict[str, Any]) -> NestedRun:
        """A new nested run of ``key`` under the study; an earlier attempt of the same arm in this study still
        RUNNING (its worker was killed and the task retried) is closed as KILLED first."""
        client = study.client()
        for run_id in _attempts(client, study, key):
            close_run(client, run_id, "KILLED", "superseded: the arm was retried after its process was lost")
        tags = {
            MLFLOW_PARENT_RUN_ID: study.run_id,
            MLFLOW_RUN_NAME: key,
            "role": "arm",
            "arm": key,
            "study_run": study.run_id,
            "config_hash": study.config_hash,
            "save_version": study.save_version,
            **({"seed": str(seed)} if seed is not None else {}),
            **source_tags(study.git_commit),
            **_process_tags(),
        }
        run = client.create_run(study.experiment_id, run_name=key, tags=tags)
        arm = cls(study, run.info.run_id)
        logged = _params(flatten(params))
        _log_batch(client, arm.run_id, params=logged)  # a new run: no param to keep
        arm.params = {param.key: param.value for param in logged}
        if _system_metrics_on(study):
            arm._monitor = _start_monitor(study, arm.run_id)
        return arm

    @classmethod
    def find(cls, study: StudyRun, key: str) -> NestedRun | None:
        """The arm's newest run in this study (or, resuming, adopted by it), whatever its status: one query
        for this arm's run alone (a second when resuming), never a listing of the study's runs."""
        client = study.client()
        for tag in ("study_run", "resumed_by"):
            query = f"tags.{tag} = '{study.run_id}' and tags.arm = '{key}' and tags.role = 'arm'"
            runs = client.search_runs([study.experiment_id], query, max_results=1, order_by=["attributes.start_time DESC"])
            if runs:
                return cls(study, runs[0].info.run_id, found=runs[0])
        return None

    def log_params(self, params: dict[str, Any]) -> None:
        """The params the run does not have yet (MLflow refuses to change a param's value); a run opened
        here writes them with its next flush (at the latest when it finishes or fails)."""
        if self.params is None:
            existing = (self._found or self.client.get_run(self.run_id)).data.params
            _log_batch(self.client, self.run_id, params=_params({k: v for k, v in flatten(params).items() if k not in existing}))
            self._found = None
            return
        logged = _params({k: v for k, v in flatten(params).items() if k not in self.params})
        self._params.extend(logged)
        self.params.update((param.key, param.value) for param in logged)

    def log_epoch(self, row: dict[str, float]) -> None:
        """One epoch's loss terms, accuracies, validation loss and learning rate, stamped now (step = epoch);
        written with the epochs before it once ``study.epoch_flush_s`` has passed since the last write."""
        values = {epoch_metric_name(k): v for k, v in row.items() if k != "epoch"}
        self._epochs.extend(_metrics(values, step=int(row["epoch"])))
        if time.monotonic() - self._flushed_at >= self.study.epoch_flush_s:
            self.flush()

    def flush(self) -> None:
        """Write the buffered epochs and params now."""
        metrics, params = self._epochs, self._params
        self._epochs, self._params, self._flushed_at = [], [], time.monotonic()
        _log_batch(self.client, self.run_id, metrics=metrics, params=params)

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        """The reported metrics of an evaluation, under their sections; its labels are the run's params.

        They are also the metrics of the model the run logged, which gets the run's labels as params and
        tags, so the experiment's Models tab can sort by ``test/accuracy`` and filter by method or arm."""
        named = {metric_name(k): v for k, v in metrics.items()}
        named.pop(None, None)
        if self._params or self._epochs:  # the model's labels are read from the run: write what it buffers first
            self.flush()
        run = self._found or self.client.get_run(self.run_id)
        model_id = newest_model_id(run)
        _log_batch(self.client, self.run_id, metrics=_metrics(named, model_id=model_id))
        if model_id is None:
            return
        try:
            label_model(self.client, model_id, run)
        except Exception as error:  # noqa: BLE001 - labels on a model never fail an evaluated arm
            log.warning("%s: its logged model keeps no labels (%s: %s)", run.info.run_name, type(error).__name__, error)

    def log_values(self, values: dict[str, float]) -> None:
        """Metrics under the names given (``val/accuracy``, ``cost/optimizer_steps``)."""
        _log_batch(self.client, self.run_id, metrics=_metrics(values))

    def log_inputs(self, inputs: list[Any]) -> None:
        """The datasets (``mlflow_datasets.split_inputs``) the arm trains and is evaluated on."""
        self.client.log_inputs(self.run_id, datasets=inputs)

    def log_history(self, history: dict[str, Any]) -> None:
        self.client.log_text(self.run_id, json.dumps(history, indent=1), "history.json")

    def log_model(self, model: torch.nn.Module, name: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{name}.pt"
            torch.save(model_payload(model), path)
            self.client.log_artifact(self.run_id, str(path), artifact_path="checkpoints")

    def set_tags(self, tags: dict[str, str]) -> None:
        set_tags(self.client, self.run_id, tags)
        self._found = None

    def finish(self) -> None:
        self.flush()
        self._stop_monitor()
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, error: BaseException) -> None:
        """Close the run FAILED (KILLED for superseded work: ``common.errors.Superseded``), with every
        epoch logged before the error."""
        try:
            self.flush()
        finally:
            self._stop_monitor()
            close_run(self.client, self.run_id, getattr(error, "run_status", "FAILED"), _error_text(error))

    def _stop_monitor(self) -> None:
        """Stop sampling and flush what was sampled, before the run closes (a closed run takes no metrics)."""
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None


def _system_metrics_on(study: StudyRun) -> bool:
    """tracking.system_metrics, with null meaning: on where this process sees a CUDA GPU."""
    return torch.cuda.is_available() if study.system_metrics is None else study.system_metrics


def _start_monitor(study: StudyRun, run_id: str) -> Any:
    """MLflow's sampler of CPU, memory, disk, network and (with nvidia-ml-py and a GPU) GPU use, logged
    as ``system/*`` into the arm's run; a sampler that cannot start never stops the arm."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    try:
        monitor = SystemMetricsMonitor(run_id, sampling_interval=study.system_metrics_interval_s, tracking_uri=study.tracking_uri)
        monitor.start()
        return monitor
    except Exception as error:  # noqa: BLE001 - e.g. psutil missing: the arm trains without system metrics
        log.warning("system metrics not logged for run %s: %s", run_id, error)
        return None


def _attempts(client: MlflowClient, study: StudyRun, key: str) -> list[str]:
    query = f"tags.study_run = '{study.run_id}' and tags.arm = '{key}' and attributes.status = 'RUNNING'"
    return [run.info.run_id for run in client.search_runs([study.experiment_id], query)]


class StudyLog:
    """Report artifacts of the study run (tables, plots, the report)."""

    def __init__(self, study: StudyRun) -> None:
        self.client, self.run_id = study.client(), study.run_id

    def log_text(self, text: str, file_name: str) -> None:
        self.client.log_text(self.run_id, text, file_name)

    def log_figure(self, figure: Any, file_name: str) -> None:
        self.client.log_figure(self.run_id, figure, file_name)

    def log_file(self, path: Path, folder: str) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def log_folder(self, path: Path, folder: str) -> None:
        """Every file of ``path`` under ``folder`` (one copy of the tree, not a call per file)."""
        self.client.log_artifacts(self.run_id, str(path), artifact_path=folder)

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        _log_batch(self.client, self.run_id, metrics=_metrics(metrics))

    def set_tags(self, tags: dict[str, str]) -> None:
        set_tags(self.client, self.run_id, tags)


# ---- the budgeted search: one nested run per job, opened by the process that trains it ------------------


def open_search_job(study: StudyRun, name: str, params: dict[str, Any], tags: dict[str, str]) -> NestedRun:
    """A nested run of one search job (``role=search``), tagged with its stage and ``status`` (which the
    search sets when it knows the trial's fate: completed, stopped_early, dropped_by_race, finalist)."""
    client = study.client()
    run_tags = {
        MLFLOW_PARENT_RUN_ID: study.run_id,
        MLFLOW_RUN_NAME: name,
        "role": "search",
        "job": name,
        "study_run": study.run_id,
        "config_hash": study.config_hash,
        "save_version": study.save_version,
        **source_tags(study.git_commit),
        **_process_tags(),
        **tags,
    }
    run = NestedRun(study, client.create_run(study.experiment_id, run_name=name, tags=run_tags).info.run_id)
    _log_batch(client, run.run_id, params=_params(flatten(params)))  # a new run: no param to keep
    return run


@contextmanager
def live_run(run: NestedRun, label: str) -> Iterator[NestedRun]:
    """``run`` receives the epochs the training loop publishes under ``label`` (``common.epochs``) while
    the block runs; it is closed FINISHED after the block, FAILED (its epochs written) when the block raises."""
    with epochs.subscribed(label, run.log_epoch):
        try:
            yield run
        except BaseException as error:
            run.fail(error)
            raise
    run.finish()


@dataclass(frozen=True)
class SearchTracking:
    """What the search's nodes receive as ``search_tracking`` when tracking is on (the hooks inject it): they
    train many models each, so they open their nested runs through it. Picklable: a Dask worker gets it."""

    study: StudyRun

    def job(self, name: str, label: str, params: dict[str, Any], tags: dict[str, str]) -> ContextManager[NestedRun]:
        """One search job's live run (``role=search``), receiving the epochs published under ``label``."""
        return live_run(open_search_job(self.study, name, params, tags), label)

    def arm(self, key: str, seed: int | None, params: dict[str, Any]) -> ContextManager[NestedRun]:
        """One confirmation arm's live run (``role=arm``, named ``key``), read by the comparison like any arm's."""
        return live_run(NestedRun.open(self.study, key, seed, params), key)

    def tag_jobs(self, statuses: dict[str, str]) -> None:
        tag_search_jobs(self.study, statuses)


def search_job_runs(study: StudyRun) -> dict[str, str]:
    """{job name: run id} of a study's FINISHED search-job runs (its own only), newest first per job."""
    query = f"tags.study_run = '{study.run_id}' and tags.role = 'search' and attributes.status = 'FINISHED'"
    return newest_per_tag(study.client(), study.experiment_id, query, "job")


def tag_search_jobs(study: StudyRun, statuses: dict[str, str]) -> None:
    """Set each job run's ``status`` tag: {job name: status}. A job the search replayed from its storage
    (trained by an earlier run of this config, before a Ctrl-C or a crash) keeps that earlier run, which is
    tagged ``resumed_by`` this study run as resumed arms are; a job with no run at all is skipped."""
    client, runs = study.client(), search_job_runs(study)
    earlier = earlier_runs(client, study, role="search", tag="job") if set(statuses) - set(runs) else {}
    for name, status in statuses.items():
        if name in runs:
            set_tags(client, runs[name], {"status": status})
        elif name in earlier:
            set_tags(client, earlier[name], {"status": status, "resumed_by": study.run_id})
