"""The Dask preload of a local cluster's workers: the project imported in the background.

Where the workers are forked from a server that imported the project already (:func:`runner.start_forkserver`,
the local cluster without GPUs), the background import below finds everything imported and ends at once.

Preloading ``distillation_studies.runner`` itself imports torch, MLflow and Kedro (about 4 s) before a
worker registers, and the local cluster, and with it the driver, waited for that. This preload returns at
once: the cluster is up in about a second, the driver prepares the data while the workers import, and each
task waits for its worker's import (:func:`wait`) before it runs. The import also covers what the first arm
would import lazily (``torch._dynamo``, ``torch.export``), so a worker idle while the teacher trains is ready.

When the cluster closes, a worker's process ends without the interpreter's teardown of its modules
(:mod:`distillation_studies.fast_exit`): the local cluster's close waited about 2.5 s for it at the end of
every study, with nothing left to write (each task has saved its outputs and closed its MLflow run).
"""

from __future__ import annotations

import atexit
import os
import threading

# What a worker imports before its first task: the nodes of the tasks that train or evaluate models (the others
# run in the driver, and their modules, the report's matplotlib, SciPy and Optuna, would only slow a worker's
# start; a search's nodes are imported by the local forkserver of a run that has them, elsewhere when its first
# task runs on a worker), and what a worker's first arm would import on the way (1.3 s here): torch.optim
# imports torch._dynamo when the first optimiser is built, and the logged model needs torch.export.
WORKER_MODULES = (
    "distillation_studies.runner",
    "distillation_studies.pipelines.teacher.nodes",
    "distillation_studies.pipelines.distillation.nodes",
    "distillation_studies.pipelines.evaluation.nodes",
    "torch._dynamo",
    "torch.export",
)

_importing: threading.Thread | None = None  # this worker's import of the project, while it runs


def dask_setup(worker=None) -> None:
    global _importing
    _importing = threading.Thread(target=_import_project, name="distillation-studies-import", daemon=True)
    _importing.start()


def dask_teardown(worker=None) -> None:
    """Called as the worker closes: its process will end without the interpreter's teardown."""
    end_without_teardown()


def end_without_teardown() -> None:
    """Make this process's exit skip the interpreter's teardown (unless ``DISTILLATION_STUDIES_FULL_EXIT``).
    Registered last, the callback runs first at exit; it runs every other exit callback, then ends the process
    with status 0: call it only once the process has nothing left to do but end well."""
    from distillation_studies.fast_exit import FULL_EXIT_ENV

    if not os.environ.get(FULL_EXIT_ENV):
        atexit.register(_exit_without_teardown)


def _exit_without_teardown() -> None:
    from distillation_studies.fast_exit import exit_now

    atexit.unregister(_exit_without_teardown)
    exit_now(0)  # a closed worker's process ends with 0 (multiprocessing's status after a clean return)


def _import_project() -> None:
    from distillation_studies.runner import dask_setup as import_nodes_and_hooks

    import_nodes_and_hooks()  # WORKER_MODULES, and the project's hooks registered


def wait() -> None:
    """Return once this process's background import of the project is over (at once where none runs)."""
    if _importing is not None:
        _importing.join()
