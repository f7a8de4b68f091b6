"""The project's torch datasets: round trips, versioning, safe loading and clear errors."""

import pytest
import torch
from kedro.io.core import DatasetError, Version

from distillation_studies.datasets import TensorDictDataset, TorchModelDataset
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
