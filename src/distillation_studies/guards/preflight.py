"""Checks before a pipeline runs: a runner this project can run on, and every folder the run will write
to writable with room.

A read-only or full ``data/`` used to surface only when the first model was saved, after its training.
This hook runs before the tracking hook (it is registered after it: pluggy calls the last one first),
so a refused run starts no MLflow run either. The free-space floor is documented in docs/reliability.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from distillation_studies.common.errors import ConfigError, DataError

MIN_FREE_MB = 100  # below this a study's models and reports may not fit; checked per output file system
PROJECT_RUNNER = "distillation_studies.runner.DaskRunner"


def check_runner(run_params: dict[str, Any]) -> None:
    """Refuse Kedro's ParallelRunner before anything starts (the run guard calls this before taking its lock)."""
    if "ParallelRunner" in str(run_params.get("runner")):
        raise ConfigError(
            "--runner=ParallelRunner cannot run this project: it forks worker processes after torch has "
            "started its thread pool (the forked workers hang in their first torch operation) and it would "
            f"lose the study's MLflow tracking. Run the arms in parallel with --runner={PROJECT_RUNNER} "
            "(settings in conf/base/runner.yml)."
        )


def output_folders(pipeline: Any, catalog: Any) -> set[Path]:
    """The nearest existing folder of every file the pipeline will save."""
    folders = set()
    for name in pipeline.all_outputs():
        dataset = catalog.get(name)
        filepath = getattr(dataset, "_filepath", None)
        if filepath is None or getattr(dataset, "_protocol", "file") not in ("file", None):
            continue
        folders.add(nearest_folder(Path(str(filepath))))
    return folders


def nearest_folder(path: Path) -> Path:
    """The nearest existing folder at or above ``path``: where its files will be created."""
    folder = path.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder if folder.is_dir() else folder.parent


def check_writable(folders: set[Path], min_free_mb: float = MIN_FREE_MB) -> None:
    """Raise DataError naming the first folder that cannot take a new file or lacks free space."""
    for folder in sorted(folders):
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_check_"):
                pass
        except OSError as error:
            raise DataError(
                f"{folder}: cannot write there ({error.strerror or error}); the run would fail when saving its "
                "first output. Make the folder writable (or point the catalog elsewhere) and rerun."
            ) from None
        free = shutil.disk_usage(folder).free / 2**20
        if free < min_free_mb:
            raise DataError(
                f"{folder}: only {free:.1f} MiB free, below the {min_free_mb} MiB a run needs "
                "(docs/reliability.md); free some space and rerun."
            )


class DataFolderHooks:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        check_writable(output_folders(pipeline, catalog))
