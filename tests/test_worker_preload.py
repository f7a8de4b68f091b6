"""A local cluster's workers: what they import, and how their processes end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distillation_studies.fast_exit import FULL_EXIT_ENV

# What only the driver needs (data splitting, the comparison, the report, the search): a worker that imported
# them would spend about 1.5 s more of the cores the driver's teacher training needs.
DRIVER_ONLY = ("sklearn", "matplotlib", "scipy.stats", "optuna", "distillation_studies.report.html")

IMPORTS = f"""
import sys
from distillation_studies.worker_preload import _import_project
_import_project()
import distillation_studies.datasets as datasets
print(sorted(name for name in {DRIVER_ONLY!r} if name in sys.modules))
print(datasets.MatplotlibDataset.__name__, datasets.PlotFolderDataset.__name__)  # the catalog still finds them
print(sorted(name for name in {DRIVER_ONLY!r} if name in sys.modules))
"""


def test_a_worker_imports_what_its_tasks_run_and_not_the_drivers_modules():
    done = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    before, found, after = done.stdout.splitlines()
    assert before == "[]"
    assert found == "MatplotlibDataset PlotFolderDataset"
    assert after == "['distillation_studies.report.html', 'matplotlib']"  # loaded when first named


def _probe_worker(folder: Path) -> None:
    """Run on a worker: marks written by its exit callbacks and by the interpreter's teardown."""
    import atexit

    class FreedAtTeardown:
        def __del__(self) -> None:
            (folder / "teardown").write_text("ran")

    sys.modules["__main__"].__dict__["_kept_until_teardown"] = FreedAtTeardown()
    atexit.register(lambda: (folder / "atexit").write_text("ran"))


@pytest.mark.parametrize("full_exit", [False, True])
def test_a_closed_workers_process_runs_its_exit_callbacks_and_skips_the_teardown(tmp_path, monkeypatch, full_exit):
    from distributed import Client, LocalCluster

    if full_exit:
        monkeypatch.setenv(FULL_EXIT_ENV, "1")  # the workers inherit it
    else:
        monkeypatch.delenv(FULL_EXIT_ENV, raising=False)
    options = dict(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1")
    with LocalCluster(preload=["distillation_studies.worker_preload"], **options) as cluster, Client(cluster) as client:
        client.run(_probe_worker, tmp_path)
        process = next(iter(cluster.workers.values())).process.process
    assert process.exitcode == 0
    assert (tmp_path / "atexit").read_text() == "ran"  # registered before the worker closed: still run
    assert (tmp_path / "teardown").exists() == full_exit  # DISTILLATION_STUDIES_FULL_EXIT=1 keeps Python's exit


FORKSERVER_PROBE = """
import atexit, sys
from pathlib import Path

folder = Path(sys.argv[1])

class FreedAtTeardown:
    def __del__(self):
        (folder / "teardown").write_text("ran")

kept = FreedAtTeardown()
atexit.register(lambda: (folder / "atexit").write_text("ran"))
import distillation_studies.worker_forkserver  # what the workers' forkserver imports last
raise SystemExit  # how the forkserver ends once the driver has gone
"""


@pytest.mark.parametrize("full_exit", [False, True])
def test_the_workers_forkserver_ends_without_the_teardown(tmp_path, monkeypatch, full_exit):
    if full_exit:
        monkeypatch.setenv(FULL_EXIT_ENV, "1")
    else:
        monkeypatch.delenv(FULL_EXIT_ENV, raising=False)
    done = subprocess.run([sys.executable, "-c", FORKSERVER_PROBE, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "teardown").exists() == full_exit
