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
