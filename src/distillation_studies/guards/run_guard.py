"""A run's results are its own config's: one run per study environment at a time, and pinned loads.

Every run of one environment saves into the same versioned folders, and Kedro resolves a dataset's
"latest" version when it loads (the Dask runner's copy of a dataset resolves it again in every task).
Two runs at once read each other's outputs, and ``--only-missing-outputs`` after a config change
reused outputs of the old config. So, before any work, a run:

- takes an exclusive lock of its environment (``data/.runs/<study>.lock``); a second run waits for
  it, saying which process holds it (pid, command) and how to stop waiting. The operating system
  releases the lock when the holder exits, even after ``kill -9``;
- writes the manifest of its save version (``data/.runs/<study>/<save version>.json``: config hash and
  parameters), so every version folder names the config that wrote it;
- pins the version every versioned dataset loads: what the run produces to its own save version;
  what ``--only-missing-outputs`` reuses, and inputs it does not produce, to the newest version saved
  by a run of the same config. A version saved by another config is never reused: its node runs again.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, IO

from kedro.framework.hooks import hook_impl
from kedro.io.core import AbstractVersionedDataset, Version
from kedro.runner.runner import _build_node_children_map, _determine_nodes_to_run

from distillation_studies.config_loader import DEFAULT_STUDY, LOCAL_ENVS
from distillation_studies.datasets import name_datasets
from distillation_studies.guards.preflight import check_runner
from distillation_studies.provenance import config_hash, flatten

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs there are not guarded
    fcntl = None

log = logging.getLogger(__name__)

RUNS_FOLDER = Path("data") / ".runs"


def runs_folder(project_path: Path, study: str) -> Path:
    """Where the lock and the manifests of one study environment live."""
    return project_path / RUNS_FOLDER / study


def study_of(env: str | None) -> str:
    """The results folder name of a Kedro environment (``config_loader.StudyConfigLoader.study_name``)."""
    return DEFAULT_STUDY if env in LOCAL_ENVS else str(env)


# ---- the lock ------------------------------------------------------------------------------------------


class EnvironmentLock:
    """An exclusive ``flock`` on ``data/.runs/<study>.lock`` holding the holder's pid and command."""

    def __init__(self, folder: Path) -> None:
        self.path = folder.with_name(folder.name + ".lock")
        self._handle: IO[str] | None = None

    def acquire(self, study: str) -> None:
        """Take the lock, waiting (and saying for whom) while another run holds it."""
        if fcntl is None:
            log.warning("No file locks on this system: do not run two studies of %s at once", study)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            log.warning(
                "Another run of study %r holds %s (%s). This run waits until it ends, so that neither reads "
                "the other's outputs; stop waiting with Ctrl-C, or run in another --env.",
                study, self.path, holder_text(handle.read()),
            )
            started = time.monotonic()
            fcntl.flock(handle, fcntl.LOCK_EX)
            log.info("Lock of study %r taken after %.0f s of waiting", study, time.monotonic() - started)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def holder() -> dict[str, Any]:
    """This process, as the lock file and a run's manifest name it."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def holder_text(content: str) -> str:
    try:
        info = json.loads(content)
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (ValueError, KeyError, TypeError):
        return "a run that has not written its pid yet"


# ---- manifests and pinned versions -----------------------------------------------------------------------


def write_manifest(folder: Path, save_version: str, params: dict[str, Any]) -> None:
    """``<save version>.json``: the config (hash and parameters) every dataset saved under that version comes from."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"save_version": save_version, "config_hash": config_hash(params), "parameters": params, **holder()}
    staging = folder / f".{save_version}.json.partial"
    staging.write_text(json.dumps(record, indent=1, default=str))
    staging.replace(folder / f"{save_version}.json")


def manifests(folder: Path) -> dict[str, dict[str, Any]]:
    """{save version: manifest} of every run recorded in ``folder`` (unreadable ones are skipped)."""
    found = {}
    for path in folder.glob("*.json") if folder.is_dir() else ():
        try:
            found[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("%s: unreadable run manifest; the versions it names are not reused", path)
    return found


@dataclass
class Pinned:
    """What a run loads: reused versions of its config, and outputs it (re)computes."""

    reused: dict[str, str]  # dataset -> version of an earlier run of this config
    computed: list[str]  # datasets this run saves (and then loads) under its own version
    foreign: dict[str, str]  # inputs it does not produce with no version of this config: dataset -> version of another


def _versioned(catalog, name: str) -> AbstractVersionedDataset | None:
    dataset = catalog.get(name, fallback_to_runtime_pattern=True)
    return dataset if isinstance(dataset, AbstractVersionedDataset) and dataset._version is not None else None


def _pin(dataset: AbstractVersionedDataset, load: str | None, save: str) -> None:
    dataset._version = Version(load, save)
    dataset._clear_version_cache()


def _newest_of(dataset: AbstractVersionedDataset, own: set[str]) -> tuple[str | None, str | None]:
    """(newest version saved by a run of this config, newest version of all)."""
    versions = dataset.list_versions(full_path=False)
    return next((v for v in versions if v in own), None), next(iter(versions), None)


def pin_versions(pipeline, catalog, save_version: str, own: set[str], resuming: bool, explicit: set[str]) -> Pinned:
    """Pin every versioned dataset of ``pipeline`` (see the module's docstring); ``explicit`` ones
    (``--load-versions``) keep the version asked for."""
    produced = pipeline.all_outputs()
    pinned = Pinned({}, [], {})
    for name in sorted(pipeline.datasets() - explicit):
        dataset = _versioned(catalog, name)
        if dataset is None:
            continue
        mine, newest = _newest_of(dataset, own) if resuming or name not in produced else (None, None)
        if name in produced:
            _pin(dataset, mine or save_version, save_version)  # missing (save_version) when none is reusable
        elif mine is not None:
            _pin(dataset, mine, save_version)
        elif newest is not None:
            pinned.foreign[name] = newest
    if resuming:  # what Kedro's --only-missing-outputs will run: its outputs load what this run saves
        nodes = list(reversed(pipeline.nodes))
        for node in _determine_nodes_to_run(nodes, catalog, _build_node_children_map(pipeline), log):
            for name in node.outputs:
                dataset = _versioned(catalog, name)
                if dataset is not None:
                    _pin(dataset, save_version, save_version)
    for name in sorted(produced - explicit):
        dataset = _versioned(catalog, name)
        if dataset is None:
            continue
        load = dataset._version.load
        if load == save_version:
            pinned.computed.append(name)
        else:
            pinned.reused[name] = load
    return pinned


def differing_keys(params: dict[str, Any], other: dict[str, Any], limit: int = 5) -> str:
    """``student.training.lr: 0.1 -> 0.05, ...``: how another run's config differs from this one."""
    mine, theirs = flatten(params), flatten(other)
    keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    shown = [f"{k}: {theirs.get(k, '(unset)')} -> {mine.get(k, '(unset)')}" for k in keys[:limit]]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


class RunGuardHooks:
    """Registered last, so that pluggy calls it first: the lock is taken before any other hook works."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.project_path = Path.cwd()
        self.study = DEFAULT_STUDY
        self._lock: EnvironmentLock | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self.params = context.config_loader["parameters"]
        self.project_path = Path(context.project_path)
        self.study = study_of(context.env)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        check_runner(run_params)
        folder = runs_folder(self.project_path, self.study)
        self._release()  # a run of this process that failed in another before_pipeline_run hook kept it
        self._lock = EnvironmentLock(folder)
        self._lock.acquire(self.study)
        save_version = str(run_params.get("run_id") or run_params.get("session_id") or "")
        known = manifests(folder)
        digest = config_hash(self.params)
        own = {version for version, record in known.items() if record.get("config_hash") == digest}
        write_manifest(folder, save_version, self.params)
        resuming = bool(run_params.get("only_missing_outputs"))
        pinned = pin_versions(pipeline, catalog, save_version, own, resuming, set(run_params.get("load_versions") or {}))
        name_datasets(catalog, pipeline.datasets())  # a corrupt version's message then names its dataset
        self._report(pinned, known, resuming)

    def _report(self, pinned: Pinned, known: dict[str, dict[str, Any]], resuming: bool) -> None:
        if resuming:
            log.info(
                "Resuming: %d outputs of earlier runs of this config are reused; %d are computed by this run",
                len(pinned.reused), len(pinned.computed),
            )
            digest = config_hash(self.params)
            others = [known[v] for v in sorted(known, reverse=True) if known[v].get("config_hash") != digest]
            if others:  # why the outputs of the newest earlier run of another config are not reused
                log.info("Not reused: outputs of other configs, e.g. the run of %s (%s)", others[0].get("started"),
                         differing_keys(self.params, others[0].get("parameters") or {}))
        for name, version in pinned.foreign.items():
            record = known.get(version)
            why = f"a run whose config differs ({differing_keys(self.params, record.get('parameters') or {})})" if record else "a run that recorded no config"
            log.warning("%s: no version of this config exists; loading version %s, saved by %s", name, version, why)

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._release()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
