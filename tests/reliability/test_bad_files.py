"""Broken files and folders: each one clear error naming the file, and no saved version lost or
left half-written as the latest."""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from kedro.io import DataCatalog
from kedro.io.core import DatasetError, Version
from kedro.pipeline import Pipeline, node
from PIL import Image

from distillation_studies.common.errors import ConfigError, DataError
from distillation_studies.datasets import TorchModelDataset
from distillation_studies.learning.checkpoints import load_weights
from distillation_studies.learning.vision_data import VisionDataConfig, load_vision_dataset, open_vision_split
from distillation_studies.guards.preflight import check_writable, output_folders
from tests.method_checks import tiny_cnn, tiny_mlp

V1, V2 = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"


# --- teacher.checkpoint -----------------------------------------------------------------------------


def test_random_bytes_checkpoint_is_named(tmp_path):
    path = tmp_path / "teacher.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(DataError, match=rf"teacher\.checkpoint: cannot read {path} as tensors"):
        load_weights(tiny_cnn(), path)


def test_state_dict_of_another_architecture_is_named(tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save(tiny_mlp().state_dict(), path)
    with pytest.raises(DataError, match=rf"teacher\.checkpoint: {path} does not fit model 'cnn': missing \['features"):
        load_weights(tiny_cnn(), path)


class _RunsCode:
    """Unpickling this calls ``Path.touch(marker)``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_never_unpickled(tmp_path, writer):
    marker, path = tmp_path / "pwned", tmp_path / "teacher.pt"
    payload = {"state_dict": tiny_cnn().state_dict(), "extra": _RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError) as caught:
        load_weights(tiny_cnn(), path)
    assert not marker.exists()
    # torch's own text advises retrying with weights_only=False (running the file's code): never passed on.
    # torch.save's pickle is refused at its global, pickle.dump's (protocol 4) at its first opcode
    refusal = r"\((Unsupported global: GLOBAL [\w.]+ was not an allowed global by default|Unsupported operand \d+)\)"
    assert re.fullmatch(
        rf"teacher\.checkpoint: cannot read {re.escape(str(path))} as tensors \(not plain tensors: the safe loader "
        rf"refused it {refusal}\. The file may be unsafe \(unpickling it could run arbitrary code\) or corrupt, and "
        r"is never unpickled here\); give a plain state dict, saved with torch\.save\(model\.state_dict\(\), path\)",
        str(caught.value),
    ), str(caught.value)


def test_a_saved_version_holding_pickled_objects_is_refused_without_torchs_advice(tmp_path):
    path, _, _ = _save_two_versions(tmp_path)
    latest = tmp_path / "model.pt" / V2 / "model.pt"
    torch.save({"spec": {}, "state_dict": {}, "extra": _RunsCode(tmp_path / "pwned")}, latest)
    with pytest.raises(DatasetError) as caught:
        TorchModelDataset(path, version=Version(None, None)).load()
    message = str(caught.value)
    assert re.match(
        rf"cannot read {re.escape(str(latest))} \(version {V2}\): not plain tensors: the safe loader refused it "
        r"\(Unsupported global: GLOBAL [\w.]+ was not an allowed global by default\)\. The file may be unsafe "
        rf"\(unpickling it could run arbitrary code\) or corrupt, and is never unpickled here\. To resume from the "
        rf"previous version {V1}",
        message,
    ), message
    assert "weights_only" not in message and not (tmp_path / "pwned").exists()


# --- saved versions ---------------------------------------------------------------------------------


def _save_two_versions(tmp_path: Path) -> tuple[str, torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    first, second = tiny_cnn(), tiny_cnn()
    path = str(tmp_path / "model.pt")
    TorchModelDataset(path, version=Version(None, V1)).save(first)
    TorchModelDataset(path, version=Version(None, V2)).save(second)
    return path, first, second


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_a_corrupt_latest_version_names_file_version_and_how_to_resume(tmp_path):
    path, first, _ = _save_two_versions(tmp_path)
    latest = tmp_path / "model.pt" / V2 / "model.pt"
    latest.write_bytes(latest.read_bytes()[:200])  # truncated, as by a crash or a full disk elsewhere
    with pytest.raises(DatasetError) as caught:
        TorchModelDataset(path, version=Version(None, None)).load()
    message = str(caught.value)
    assert f"cannot read {latest} (version {V2})" in message
    assert f"--load-versions=<this dataset>:{V1}" in message
    # Following the advice: the broken version is moved aside and the previous one becomes the latest.
    aside = tmp_path / f"model.pt.corrupt-{V2}"
    assert f"mv '{latest.parent}' '{aside}'" in message
    shutil.move(latest.parent, aside)
    assert _same_weights(TorchModelDataset(path, version=Version(None, None)).load(), first)
    assert _same_weights(TorchModelDataset(path, version=Version(V1, None)).load(), first)  # --load-versions


def test_in_a_run_the_corrupt_version_message_names_the_dataset(tmp_path):
    """The run guard tells each torch dataset its catalog name: the advice is a command to paste."""
    from types import SimpleNamespace

    from distillation_studies.guards.run_guard import RunGuardHooks

    path, _, _ = _save_two_versions(tmp_path)
    latest = tmp_path / "model.pt" / V2 / "model.pt"
    latest.write_bytes(latest.read_bytes()[:200])
    catalog = DataCatalog(datasets={"teacher_model": TorchModelDataset(path, version=Version(None, None))})
    pipeline = Pipeline([node(lambda model: None, "teacher_model", None, name="evaluate")])
    hooks = RunGuardHooks()
    hooks.after_context_created(SimpleNamespace(config_loader={"parameters": {}}, project_path=tmp_path, env="tiny"))
    hooks.before_pipeline_run({"run_id": "2026-01-03T00.00.00.000Z", "only_missing_outputs": False}, pipeline, catalog)
    hooks.after_pipeline_run()
    with pytest.raises(DatasetError) as caught:
        catalog.load("teacher_model")
    assert f"rerun with --load-versions=teacher_model:{V1}, or move" in str(caught.value)


def test_a_full_disk_leaves_no_half_written_latest(tmp_path, monkeypatch):
    path, _, second = _save_two_versions(tmp_path)

    def save_then_fail(obj, target):
        Path(target).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(DatasetError, match=r"cannot write .*model\.pt \(OSError: \[Errno 28\] No space left on device\); is the disk full"):
        TorchModelDataset(path, version=Version(None, "2026-01-03T00.00.00.000Z")).save(tiny_cnn())
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "model.pt").iterdir()) == [V1, V2]  # no partial, no new version
    assert _same_weights(TorchModelDataset(path, version=Version(None, None)).load(), second)


def test_outputs_folders_are_checked_before_the_run(tmp_path):
    catalog = DataCatalog.from_config(
        {"out": {"type": "pickle.PickleDataset", "filepath": str(tmp_path / "data" / "08_reporting" / "out.pkl"), "versioned": True}}
    )
    pipeline = Pipeline([node(lambda: 1, None, "out", name="make")])
    assert output_folders(pipeline, catalog) == {tmp_path}  # the nearest folder that exists
    check_writable({tmp_path})  # writable, and the machine has room
    with pytest.raises(ConfigError, match=rf"{tmp_path}: only .* MiB free, below the .* MiB a run needs"):
        check_writable({tmp_path}, min_free_mb=1e15)
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("")
    with pytest.raises(ConfigError, match=rf"{blocked}: cannot write there"):
        check_writable({blocked})


def test_the_mlflow_artifact_folder_is_checked_by_its_path(tmp_path):
    """A full mlruns/ used to fail mid-study without a path; the tracking hook checks it before any work."""
    from distillation_studies.guards.preflight import nearest_folder
    from distillation_studies.tracking.runs import StudyTracker

    folder = StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "e", tmp_path).artifact_folder()
    assert folder == tmp_path / "mlruns" / "e" and nearest_folder(folder) == tmp_path
    folder.mkdir(parents=True)  # after a first run
    with pytest.raises(ConfigError, match=rf"^{folder}: only .* MiB free, below the .* MiB a run needs"):
        check_writable({nearest_folder(folder)}, min_free_mb=1e15)  # as full as a disk can be, for this check


# --- image folders ----------------------------------------------------------------------------------


def _image_folder(root: Path, classes: dict[str, int]) -> None:
    for split in ("train", "test"):
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (4, 4), (i, 0, 0)).save(root / split / name / f"{i}.png")


def test_an_empty_class_folder_is_named(tmp_path):
    _image_folder(tmp_path, {"cat": 2, "dog": 0})
    with pytest.raises(DataError, match=rf"{tmp_path / 'train' / 'dog'} is an empty class folder"):
        load_vision_dataset(VisionDataConfig(name="image_folder", root=str(tmp_path), image_size=4))


def test_a_corrupt_image_read_from_disk_is_named(tmp_path):
    """data.in_memory: false reads images batch by batch: the broken one is named when it is read."""
    _image_folder(tmp_path, {"cat": 1, "dog": 1})
    bad = tmp_path / "train" / "dog" / "0.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    split = open_vision_split(VisionDataConfig(name="image_folder", root=str(tmp_path), image_size=4), "train")
    split[0]  # the good image
    with pytest.raises(DataError, match=rf"{bad} is not a readable image"):
        split[1]
