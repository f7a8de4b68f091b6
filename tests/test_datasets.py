"""The project's torch datasets: round trips, versioning, safe loading and clear errors."""

import os

import pytest
import torch
from kedro.io.core import DatasetError, Version

from distillation_studies.datasets import TensorDictDataset, TorchModelDataset, files
from tests.method_checks import tiny_cnn


def test_model_round_trip_rebuilds_from_the_spec_alone(tmp_path):
    model = tiny_cnn()
    dataset = TorchModelDataset(str(tmp_path / "model.pt"))
    dataset.save(model)
    loaded = TorchModelDataset(str(tmp_path / "model.pt")).load()
    assert loaded.spec == model.spec
    x = torch.randn(3, 1, 8, 8)
    model.eval()
    assert torch.equal(loaded(x), model(x))


def test_model_file_holds_only_tensors_and_plain_data(tmp_path):
    TorchModelDataset(str(tmp_path / "model.pt")).save(tiny_cnn())
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(payload) == {"spec", "state_dict"}


def test_versions_accumulate_and_latest_loads(tmp_path):
    path = str(tmp_path / "splits.pt")
    TensorDictDataset(path, version=Version(None, "2026-01-01T00.00.00.000Z")).save({"x": torch.zeros(2)})
    TensorDictDataset(path, version=Version(None, "2026-01-02T00.00.00.000Z")).save({"x": torch.ones(2)})
    assert len(list((tmp_path / "splits.pt").iterdir())) == 2
    assert torch.equal(TensorDictDataset(path, version=Version(None, None)).load()["x"], torch.ones(2))


def _counting_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    real = torch.load
    monkeypatch.setattr(files.torch, "load", lambda path, *a, **k: reads.append(str(path)) or real(path, *a, **k))
    monkeypatch.setattr(files, "_payloads", type(files._payloads)())  # this test's reads only
    return reads


def test_a_process_reads_a_file_once_and_each_load_gets_its_own_copy(tmp_path, monkeypatch):
    reads = _counting_reads(monkeypatch)
    splits, teacher = TensorDictDataset(str(tmp_path / "splits.pt")), TorchModelDataset(str(tmp_path / "teacher.pt"))
    splits.save({"train": {"x": torch.zeros(3)}})
    teacher.save(tiny_cnn())
    first = splits.load()
    first["train"]["x"].add_(1.0)  # a node changing its input in place
    first["train"]["extra"] = torch.ones(1)
    again = TensorDictDataset(str(tmp_path / "splits.pt")).load()  # another arm's dataset object, same file
    assert torch.equal(again["train"]["x"], torch.zeros(3)) and set(again["train"]) == {"x"}
    again["train"]["x"].add_(1.0)  # a load served from memory, changed in its turn
    assert torch.equal(splits.load()["train"]["x"], torch.zeros(3))
    models = [teacher.load(), TorchModelDataset(str(tmp_path / "teacher.pt")).load()]
    with torch.no_grad():
        next(models[0].parameters()).zero_()
    third = teacher.load()
    assert all(torch.equal(a, b) for a, b in zip(third.state_dict().values(), models[1].state_dict().values()))
    assert not torch.equal(next(models[0].parameters()), next(third.parameters()))
    assert sorted(reads) == sorted([str(tmp_path / "splits.pt"), str(tmp_path / "teacher.pt")])


def test_a_rewritten_file_is_read_again(tmp_path, monkeypatch):
    reads = _counting_reads(monkeypatch)
    path = tmp_path / "splits.pt"
    TensorDictDataset(str(path)).save({"x": torch.zeros(2)})
    assert torch.equal(TensorDictDataset(str(path)).load()["x"], torch.zeros(2))
    torch.save({"x": torch.ones(2)}, path)  # the same name written again (not a versioned dataset)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert torch.equal(TensorDictDataset(str(path)).load()["x"], torch.ones(2))
    assert len(reads) == 2


def test_files_kept_stay_within_the_byte_budget_and_a_larger_file_is_never_kept(tmp_path, monkeypatch):
    reads = _counting_reads(monkeypatch)
    paths = [tmp_path / f"{name}.pt" for name in ("a", "b")]
    for path in paths:
        TensorDictDataset(str(path)).save({"x": torch.zeros(1000)})
    monkeypatch.setattr(files, "PAYLOADS_MAX_BYTES", paths[0].stat().st_size + paths[1].stat().st_size - 1)
    for path in [*paths, paths[1], paths[0]]:  # b is kept after a is dropped; a is read again
        TensorDictDataset(str(path)).load()
    assert reads == [str(paths[0]), str(paths[1]), str(paths[0])]
    monkeypatch.setattr(files, "PAYLOADS_MAX_BYTES", 10)
    big = TensorDictDataset(str(paths[1]))
    big.load(), big.load()
    assert reads[3:] == [str(paths[1])] * 2 and len(files._payloads) <= 1


def test_only_registry_models_can_be_saved(tmp_path):
    with pytest.raises(DatasetError, match="spec"):
        TorchModelDataset(str(tmp_path / "model.pt")).save(torch.nn.Linear(2, 2))


def test_corrupt_file_error_names_the_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(DatasetError, match="model.pt"):
        TorchModelDataset(str(path)).load()


def test_streamed_splits_are_saved_as_plain_recipes_and_rebuilt(tmp_path):
    from distillation_studies.learning.streaming import StreamedSplit
    from distillation_studies.learning.vision_data import VisionDataConfig

    split = StreamedSplit(
        VisionDataConfig("cifar10", str(tmp_path)), "train", torch.tensor([4, 1, 7]), torch.tensor([0, 2, 1]),
        {"mean": [0.5] * 3, "std": [0.2] * 3},
    )
    data = {"train": split, "test": {"x": torch.zeros(2, 3, 1, 1), "y": torch.tensor([1, 0])}, "classes": ["a", "b", "c"]}
    TensorDictDataset(str(tmp_path / "splits.pt")).save(data)
    assert torch.load(tmp_path / "splits.pt", weights_only=True)["train"]["streamed_split"]["split"] == "train"
    loaded = TensorDictDataset(str(tmp_path / "splits.pt")).load()
    rebuilt = loaded["train"]
    assert isinstance(rebuilt, StreamedSplit) and rebuilt.source == split.source and rebuilt.stats == split.stats
    assert torch.equal(rebuilt.indices, split.indices) and torch.equal(rebuilt.labels, split.labels)
    assert torch.equal(loaded["test"]["y"], data["test"]["y"]) and loaded["classes"] == ["a", "b", "c"]


# ---- atomic saves: a save that fails half-way leaves no file under the real name ------------------------

VERSION = Version(None, "2026-01-01T00.00.00.000Z")


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_json_save_failing_half_way_leaves_no_file_and_no_version(tmp_path):
    from distillation_studies.datasets import JSONDataset

    dataset = JSONDataset(filepath=str(tmp_path / "metrics.json"), version=VERSION)
    with pytest.raises(DatasetError):
        dataset.save({"written": 1, "unserialisable": object()})  # json.dump has written '{"written": 1, ' by then
    assert _files(tmp_path) == []
    assert not dataset.exists()


def test_a_failed_save_keeps_the_earlier_version_latest(tmp_path):
    from distillation_studies.datasets import JSONDataset

    path = str(tmp_path / "metrics.json")
    JSONDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save({"run": 1})
    with pytest.raises(DatasetError):
        JSONDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z")).save({"run": 2, "bad": object()})
    assert JSONDataset(filepath=path, version=Version(None, None)).load() == {"run": 1}


def test_a_plot_folder_failing_on_its_second_figure_leaves_nothing(tmp_path):
    import matplotlib.pyplot as plt

    from distillation_studies.datasets import MatplotlibDataset

    class Broken:
        def savefig(self, *args, **kwargs):
            raise OSError("No space left on device")

    dataset = MatplotlibDataset(filepath=str(tmp_path / "plots"), version=VERSION)
    with pytest.raises(DatasetError, match="No space left"):
        dataset.save({"a.png": plt.figure(), "b.png": Broken()})
    assert _files(tmp_path) == []


def test_atomic_saves_write_the_same_files_as_kedro_datasets(tmp_path):
    import pandas as pd
    from kedro_datasets.pandas import CSVDataset as PlainCSV

    from distillation_studies.datasets import CSVDataset, TextDataset

    table = pd.DataFrame({"arm": ["kd", "ce"], "acc": [0.5, 0.25]})
    CSVDataset(filepath=str(tmp_path / "atomic.csv"), version=VERSION, save_args={"index": False}).save(table)
    PlainCSV(filepath=str(tmp_path / "plain.csv"), version=VERSION, save_args={"index": False}).save(table)
    atomic = tmp_path / "atomic.csv" / VERSION.save / "atomic.csv"
    assert atomic.read_bytes() == (tmp_path / "plain.csv" / VERSION.save / "plain.csv").read_bytes()
    TextDataset(filepath=str(tmp_path / "r.md"), version=VERSION).save("# report")
    assert _files(tmp_path / "r.md") == [f"{VERSION.save}/r.md"]


def test_every_versioned_catalog_entry_saves_atomically():
    """A new catalog entry of a plain kedro-datasets type would bring back half-written "latest" files."""
    from pathlib import Path

    import yaml

    from distillation_studies.datasets.files import AtomicSave, _TorchFileDataset
    from kedro.io.core import parse_dataset_definition

    conf = Path(__file__).resolve().parents[1] / "conf"
    for catalog in conf.glob("*/catalog*.yml"):
        for name, entry in (yaml.safe_load(catalog.read_text()) or {}).items():
            if isinstance(entry, dict) and entry.get("versioned"):
                dataset_class, _ = parse_dataset_definition(dict(entry))
                assert issubclass(dataset_class, (AtomicSave, _TorchFileDataset)), f"{catalog}: {name} ({entry['type']})"
