"""A run loads only its own outputs or versions of its own config; one run per environment at a time."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time

import pytest
from kedro.io import DataCatalog
from kedro.io.core import Version
from kedro.pipeline import Pipeline, node

from distillation_studies.datasets import JSONDataset
from distillation_studies.guards.run_guard import EnvironmentLock, differing_keys, manifests, pin_versions, write_manifest


def identity(value):
    return value


def study(tmp_path, save_version: str) -> tuple[Pipeline, DataCatalog]:
    """prepare -> a -> train -> b, both versioned JSON files, as a session's catalog builds them."""
    pipeline = Pipeline([node(lambda: {"from": save_version}, None, "a", name="prepare"), node(identity, "a", "b", name="train")])
    catalog = DataCatalog(
        datasets={name: JSONDataset(filepath=str(tmp_path / f"{name}.json"), version=Version(None, save_version)) for name in "ab"}
    )
    return pipeline, catalog


def saved(tmp_path, name: str, version: str, value) -> None:
    JSONDataset(filepath=str(tmp_path / f"{name}.json"), version=Version(None, version)).save(value)


def test_a_run_loads_what_it_saved_even_when_another_run_saves_later(tmp_path):
    pipeline, catalog = study(tmp_path, "2026-01-01T00.00.01.000Z")
    pinned = pin_versions(pipeline, catalog, "2026-01-01T00.00.01.000Z", set(), resuming=False, explicit=set())
    assert pinned.computed == ["a", "b"] and pinned.reused == {}
    catalog.save("a", {"from": "this run"})
    saved(tmp_path, "a", "2026-01-01T00.00.02.000Z", {"from": "a concurrent run"})  # newer: Kedro's "latest"
    assert catalog.load("a") == {"from": "this run"}
    # a copy of the dataset (pickled, as the Dask runner ships it to each task) loads the same version
    assert pickle.loads(pickle.dumps(catalog.get("a"))).load() == {"from": "this run"}


def test_without_pins_kedro_loads_the_other_runs_newer_version(tmp_path):
    """The defect the pins remove: Kedro resolves "latest" at load time."""
    _, catalog = study(tmp_path, "2026-01-01T00.00.01.000Z")
    catalog.save("a", {"from": "this run"})
    saved(tmp_path, "a", "2026-01-01T00.00.02.000Z", {"from": "a concurrent run"})
    fresh = JSONDataset(filepath=str(tmp_path / "a.json"), version=Version(None, "2026-01-01T00.00.01.000Z"))
    assert fresh.load() == {"from": "a concurrent run"}


def test_resuming_reuses_only_versions_of_its_config_and_reruns_the_rest(tmp_path):
    saved(tmp_path, "a", "2026-01-01T00.00.01.000Z", {"config": "B"})  # B, interrupted after a
    saved(tmp_path, "a", "2026-01-01T00.00.02.000Z", {"config": "A"})  # A, complete: the newest of both
    saved(tmp_path, "b", "2026-01-01T00.00.02.000Z", {"config": "A"})
    pipeline, catalog = study(tmp_path, "2026-01-01T00.00.03.000Z")
    pinned = pin_versions(pipeline, catalog, "2026-01-01T00.00.03.000Z", {"2026-01-01T00.00.01.000Z"}, resuming=True, explicit=set())
    assert pinned.reused == {"a": "2026-01-01T00.00.01.000Z"} and pinned.computed == ["b"]
    assert catalog.load("a") == {"config": "B"}
    assert catalog.exists("a") and not catalog.exists("b")  # Kedro's --only-missing-outputs runs train only


def test_resuming_after_a_config_change_computes_everything(tmp_path):
    for name in "ab":
        saved(tmp_path, name, "2026-01-01T00.00.01.000Z", {"config": "A"})
    pipeline, catalog = study(tmp_path, "2026-01-01T00.00.02.000Z")
    pinned = pin_versions(pipeline, catalog, "2026-01-01T00.00.02.000Z", set(), resuming=True, explicit=set())
    assert pinned.reused == {} and pinned.computed == ["a", "b"]
    assert not catalog.exists("a") and not catalog.exists("b")


def test_an_input_the_run_does_not_produce_comes_from_its_own_config(tmp_path):
    saved(tmp_path, "a", "2026-01-01T00.00.01.000Z", {"config": "B"})
    saved(tmp_path, "a", "2026-01-01T00.00.02.000Z", {"config": "A"})
    pipeline, catalog = study(tmp_path, "2026-01-01T00.00.03.000Z")
    train_only = pipeline.only_nodes("train")
    pinned = pin_versions(train_only, catalog, "2026-01-01T00.00.03.000Z", {"2026-01-01T00.00.01.000Z"}, resuming=False, explicit=set())
    assert catalog.load("a") == {"config": "B"} and pinned.foreign == {}
    other = pin_versions(train_only, study(tmp_path, "2026-01-01T00.00.04.000Z")[1], "2026-01-01T00.00.04.000Z", set(), False, set())
    assert other.foreign == {"a": "2026-01-01T00.00.02.000Z"}  # warned about, by name


def test_manifests_name_the_config_of_each_save_version(tmp_path):
    write_manifest(tmp_path, "2026-01-01T00.00.01.000Z", {"student": {"training": {"lr": 0.1}}})
    (record,) = manifests(tmp_path).values()
    assert record["parameters"] == {"student": {"training": {"lr": 0.1}}} and record["pid"] == os.getpid()
    assert len(record["config_hash"]) == 16 and not list(tmp_path.glob(".*"))


def test_differing_keys_say_what_changed():
    assert differing_keys({"s": {"lr": 0.05}, "seeds": [0, 1]}, {"s": {"lr": 0.1}, "seeds": [0, 1]}) == "s.lr: 0.1 -> 0.05"


WAITER = """
import logging, sys
from pathlib import Path
from distillation_studies.guards.run_guard import EnvironmentLock
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s", force=True)
lock = EnvironmentLock(Path(sys.argv[1]))
lock.acquire("tiny")
print("acquired", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_second_run_waits_for_the_lock_naming_the_first(tmp_path):
    lock = EnvironmentLock(tmp_path / "tiny")
    lock.acquire("tiny")
    holder = json.loads(lock.path.read_text())
    assert holder["pid"] == os.getpid()
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, str(tmp_path / "tiny")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines = iter(waiter.stdout.readline, "")
        line = " ".join(next(line for line in lines if "Another run" in line or "acquired" in line).split())
        assert f"Another run of study 'tiny' holds {lock.path} (pid {os.getpid()} on" in line
        time.sleep(0.5)
        assert waiter.poll() is None  # still waiting
    finally:
        lock.release()
    out, _ = waiter.communicate(timeout=60)
    assert "acquired" in out


def test_the_hook_locks_records_and_pins_and_a_second_run_in_one_process_does_not_wait(tmp_path):
    from types import SimpleNamespace

    from distillation_studies.guards.run_guard import RunGuardHooks

    hooks = RunGuardHooks()
    hooks.after_context_created(SimpleNamespace(config_loader={"parameters": {"seeds": [0]}}, project_path=tmp_path, env="tiny"))
    for save_version in ("2026-01-01T00.00.01.000Z", "2026-01-01T00.00.02.000Z"):  # the first run never released
        pipeline, catalog = study(tmp_path / "data", save_version)
        hooks.before_pipeline_run({"run_id": save_version, "only_missing_outputs": False}, pipeline, catalog)
        assert catalog.get("b")._version == Version(save_version, save_version)
    assert sorted(manifests(tmp_path / "data" / ".runs" / "tiny")) == ["2026-01-01T00.00.01.000Z", "2026-01-01T00.00.02.000Z"]
    assert json.loads((tmp_path / "data" / ".runs" / "tiny.lock").read_text())["pid"] == os.getpid()
    hooks.after_pipeline_run()
    assert (tmp_path / "data" / ".runs" / "tiny.lock").read_text() == ""


def test_resuming_after_a_config_change_says_which_keys_differ(tmp_path, caplog):
    from types import SimpleNamespace

    from distillation_studies.guards.run_guard import RunGuardHooks

    write_manifest(tmp_path / "data" / ".runs" / "tiny", "2026-01-01T00.00.01.000Z", {"student": {"training": {"lr": 0.01}}})
    hooks = RunGuardHooks()
    params = {"student": {"training": {"lr": 0.02}}}
    hooks.after_context_created(SimpleNamespace(config_loader={"parameters": params}, project_path=tmp_path, env="tiny"))
    pipeline, catalog = study(tmp_path / "data", "2026-01-01T00.00.02.000Z")
    with caplog.at_level("INFO", logger="distillation_studies.guards.run_guard"):
        hooks.before_pipeline_run({"run_id": "2026-01-01T00.00.02.000Z", "only_missing_outputs": True}, pipeline, catalog)
    hooks.after_pipeline_run()
    assert "Resuming: 0 outputs of earlier runs of this config are reused; 2 are computed by this run" in caplog.text
    assert "(student.training.lr: 0.01 -> 0.02)" in caplog.text
