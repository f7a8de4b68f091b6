"""Project datasets: models and tensors saved with ``torch.save`` and loaded with ``weights_only=True``,
and the kedro-datasets types the catalog uses, made to save atomically.

Every dataset here writes under a temporary name in the destination folder and renames it into place,
so a save that fails half-way (a full disk, a value that cannot be serialised) never leaves a file
under its real name, where Kedro's "latest version" would find it.

A model file holds ``{"spec": ..., "state_dict": ...}``: the spec alone rebuilds the architecture
(``core.models.build_model``), so a checkpoint never depends on the config that produced it, and
loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from kedro.io.core import AbstractDataset, AbstractVersionedDataset, DatasetError, Version, get_filepath_str
from kedro_datasets import json as kedro_json, pandas as kedro_pandas, text as kedro_text
from torch import nn

from distillation_studies.learning.checkpoints import load_failure
from distillation_studies.learning.models import build_model
from distillation_studies.learning.streaming import StreamedSplit, is_recipe

log = logging.getLogger(__name__)

# The files read last in this process, by (path, inode, size, mtime): every arm of a study reads the same teacher
# and splits, so a process (the driver, or a Dask worker) reads each once per study. Callers get copies.
PAYLOADS_MAX_BYTES = 2**30  # files kept, least recently read dropped first; a larger file is read each time
_payloads: OrderedDict[tuple[str, int, int, int], Any] = OrderedDict()
_payloads_lock = threading.Lock()


def model_payload(model: nn.Module) -> dict[str, Any]:
    """The saved form of a model: its spec plus a plain CPU state dict."""
    if not hasattr(model, "spec"):
        raise DatasetError("only models built by core.models.build_model (with a .spec) can be saved")
    return {"spec": model.spec, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


class _TorchFileDataset(AbstractVersionedDataset):
    """A versioned local file written by ``torch.save`` and read back with ``weights_only=True``."""

    def __init__(self, filepath: str, version: Version | None = None, metadata: dict[str, Any] | None = None):
        super().__init__(PurePosixPath(filepath), version)
        self.metadata = metadata
        self.catalog_name: str | None = None  # set by name_datasets: Kedro builds a dataset without its name

    def _read(self) -> Any:
        """The file's payload, read from disk once per process while it stays the same file (inode, size and
        modification time: a save renames a new file into place); each caller gets its own copy, so no
        node's change reaches another's."""
        path = Path(self._get_load_path())
        try:
            stat = path.stat()
            key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
            with _payloads_lock:
                kept = _payloads.get(key)
                if kept is not None:
                    _payloads.move_to_end(key)
            if kept is not None:
                return copy.deepcopy(kept)
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if stat.st_size <= PAYLOADS_MAX_BYTES:
                with _payloads_lock:
                    _payloads[key] = copy.deepcopy(payload)
                    while sum(size for _, _, size, _ in _payloads) > PAYLOADS_MAX_BYTES:
                        _payloads.popitem(last=False)
            return payload
        except FileNotFoundError:
            raise
        except Exception as error:  # corrupt or foreign file: name it, and how to resume without it
            raise DatasetError(corrupt_version_message(path, error, self.catalog_name)) from error

    def _write(self, payload: Any) -> None:
        path = Path(self._get_save_path())
        partial = path.with_suffix(path.suffix + ".partial")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(payload, partial)
            partial.replace(path)  # never leave a half-written file under the real name
        except Exception as error:  # disk full, read-only folder: leave no trace a later load could pick
            partial.unlink(missing_ok=True)
            if path.parent.is_dir() and not any(path.parent.iterdir()):
                path.parent.rmdir()
            raise DatasetError(
                f"cannot write {path} ({type(error).__name__}: {error}); is the disk full or the folder "
                "read-only? Earlier versions are untouched."
            ) from error

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path()).exists()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}


def name_datasets(catalog: Any, names: set[str]) -> None:
    """Tell each torch file dataset among ``names`` its catalog name, so that an unreadable version's
    message gives the exact ``--load-versions=<name>:<version>`` to resume with."""
    for name in names:
        dataset = catalog.get(name, fallback_to_runtime_pattern=True)
        if isinstance(dataset, _TorchFileDataset):
            dataset.catalog_name = name


def corrupt_version_message(path: Path, error: Exception, name: str | None = None) -> str:
    """What a resumed run says about an unreadable saved version: the file, its version, and how to
    resume from the version before it (``--load-versions`` or moving the broken version aside).
    ``name`` is the dataset's catalog name, unknown (a placeholder) when loaded outside a run."""
    version_dir = path.parent
    older = sorted(
        d.name for d in version_dir.parent.iterdir() if d.name < version_dir.name and (d / path.name).is_file()
    ) if version_dir.parent.is_dir() else []
    message = f"cannot read {path} (version {version_dir.name}): {load_failure(error)}."
    if not older:
        return message + " No earlier version exists: rerun the node that produces it."
    # Out of the versions folder: Kedro takes the latest name there that holds the file.
    aside = version_dir.parent.with_name(f"{version_dir.parent.name}.corrupt-{version_dir.name}")
    return (
        f"{message} To resume from the previous version {older[-1]}, rerun with "
        f"--load-versions={name or '<this dataset>'}:{older[-1]}, or move the broken version out of the way "
        f"(mv '{version_dir}' '{aside}') so that Kedro's latest is {older[-1]}."
    )


class TorchModelDataset(_TorchFileDataset):
    """An ``nn.Module`` from the project's model registry, saved as spec + state dict."""

    def load(self) -> nn.Module:
        payload = self._read()
        model = build_model(payload["spec"])
        model.load_state_dict(payload["state_dict"])
        return model.eval()

    def save(self, data: nn.Module) -> None:
        self._write(model_payload(data))


class TensorDictDataset(_TorchFileDataset):
    """A (nested) dict of tensors, e.g. the train/val/test splits.

    A :class:`StreamedSplit` value (data read from disk on access) is stored as its recipe (indices,
    labels, statistics, where the files are) and rebuilt on load, so the file stays small and plain.
    """

    def load(self) -> dict[str, Any]:
        return _rebuild_streamed(self._read())

    def save(self, data: dict[str, Any]) -> None:
        self._write(_streamed_as_recipes(data))


def _streamed_as_recipes(value: Any) -> Any:
    if isinstance(value, StreamedSplit):
        return value.recipe()
    if isinstance(value, dict):
        return {key: _streamed_as_recipes(item) for key, item in value.items()}
    return value


def _rebuild_streamed(value: Any) -> Any:
    if is_recipe(value):
        return StreamedSplit.from_recipe(value)
    if isinstance(value, dict):
        return {key: _rebuild_streamed(item) for key, item in value.items()}
    return value


def staging_path(path: PurePosixPath) -> PurePosixPath:
    """The temporary name a file is written under, in its own folder: hidden, and never a version's file name."""
    return path.parent / f".{path.name}.partial"


class AtomicSave:
    """Mixin for a kedro-datasets type: its ``save`` writes to :func:`staging_path`, then renames.

    The type's own ``save`` does the writing, through ``_get_save_path`` (which returns the staging
    name here); Kedro's checks (a version is never overwritten) still apply to the real name."""

    _fs: Any
    _protocol: str

    def _get_save_path(self) -> PurePosixPath:
        return staging_path(PurePosixPath(super()._get_save_path()))

    def save(self, data: Any) -> None:
        parent = super().save
        write = getattr(parent, "__wrapped__", None)  # the type's save without Kedro's logging wrapper
        real = PurePosixPath(super()._get_save_path())  # raises if that version exists already
        staging, final = (get_filepath_str(path, self._protocol) for path in (staging_path(real), real))
        try:
            write(self, data) if write is not None else parent(data)
            self._fs.mv(staging, final, recursive=True)
        except BaseException:
            self._discard(staging)
            raise

    def _discard(self, staging: str) -> None:
        """Remove what a failed save wrote, and its version folder if that is left empty."""
        try:
            if self._fs.exists(staging):
                self._fs.rm(staging, recursive=True)
            folder = str(PurePosixPath(staging).parent)
            if self._fs.isdir(folder) and not self._fs.ls(folder):
                self._fs.rmdir(folder)
        except OSError as error:  # the save's own error is the one to report
            log.warning("could not remove %s after a failed save: %s", staging, error)


class JSONDataset(AtomicSave, kedro_json.JSONDataset):
    """``json.JSONDataset``, saved atomically."""


class CSVDataset(AtomicSave, kedro_pandas.CSVDataset):
    """``pandas.CSVDataset``, saved atomically."""


class ParquetDataset(AtomicSave, kedro_pandas.ParquetDataset):
    """``pandas.ParquetDataset``, saved atomically."""


class TextDataset(AtomicSave, kedro_text.TextDataset):
    """``text.TextDataset``, saved atomically."""


class SQLiteStorageDataset(AbstractDataset):
    """The URL of a SQLite database the search keeps across runs (Optuna's storage): loading gives
    ``sqlite:///<absolute path>`` and creates the folder. Never versioned: a rerun of the same study reads
    the trials and finished jobs of the run it resumes. Made absolute when the catalog is built, so a
    node run by a Dask worker in another working directory opens the same file."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath).resolve()
        self.metadata = metadata

    def _load(self) -> str:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self._filepath}"

    def _save(self, data: Any) -> None:
        raise DatasetError(f"{self._filepath}: the search's storage is written by the search itself, never saved as a node output")

    def _exists(self) -> bool:
        return True  # a missing file is a new, empty storage

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
