"""A search job whose Dask task is cancelled while it trains (the worker of the search node that submitted it
died) does not count as finished: the node's rerun trains it again, and two FINISHED runs of one job would
be a wrong record. Checked on a real in-process Dask cluster."""

from __future__ import annotations

import threading
import time

import pytest

from distillation_studies.common.errors import Superseded
from distillation_studies.pipelines.search.jobs import stop_if_orphaned

distributed = pytest.importorskip("distributed")


def _until(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# The in-process cluster still pickles a task: it reaches the test's events through this module, by name.
EVENTS: dict[str, tuple[threading.Event, threading.Event, list[str]]] = {}


def _job(name: str) -> None:
    started, release, seen = EVENTS[name]
    started.set()
    release.wait(20)  # training
    try:
        stop_if_orphaned("kd__t0__e10__s0")
    except Superseded as error:
        seen.append(f"superseded: {error}")
        raise
    seen.append("finished")


@pytest.mark.parametrize("cancelled", [True, False])
def test_a_job_cancelled_while_it_trains_is_superseded_and_one_still_wanted_finishes(cancelled):
    name = f"job-{cancelled}"
    started, release, seen = EVENTS[name] = threading.Event(), threading.Event(), []
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            future = client.submit(_job, name, pure=False)
            assert started.wait(20)
            if cancelled:
                future.cancel()
                (worker,) = cluster.workers.values()
                _until(lambda: getattr(worker.state.tasks.get(future.key), "state", "cancelled") == "cancelled")
            release.set()
            _until(lambda: seen)
            if not cancelled:
                future.result(timeout=20)
    expected = "superseded: kd__t0__e10__s0: Dask cancelled it while it trained" if cancelled else "finished"
    assert seen[0].startswith(expected)


def test_outside_a_dask_task_nothing_is_checked():
    stop_if_orphaned("kd__t0__e10__s0")  # the sequential runner: no task, nothing to cancel
