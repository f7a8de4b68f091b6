"""Importing a teacher's weights from a file: plain and project checkpoints, DDP prefixes, clear errors."""

import pytest
import torch

from distillation_studies.learning.checkpoints import load_weights
from distillation_studies.common.errors import DataError
from distillation_studies.datasets import model_payload
from tests.method_checks import tiny_cnn


@pytest.mark.parametrize("form", ["state_dict", "project", "ddp"])
def test_weights_round_trip_in_each_form(tmp_path, form):
    source = tiny_cnn()
    state = source.state_dict()
    payload = {"state_dict": state, "project": model_payload(source), "ddp": {f"module.{k}": v for k, v in state.items()}}[form]
    torch.save(payload, tmp_path / "teacher.pt")
    loaded = load_weights(tiny_cnn(), tmp_path / "teacher.pt")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"teacher\.checkpoint: .*nothere\.pt not found"):
        load_weights(tiny_cnn(), tmp_path / "nothere.pt")


def test_wrong_architecture_lists_the_mismatch(tmp_path):
    torch.save(tiny_cnn((8, 16), 32).state_dict(), tmp_path / "other.pt")
    with pytest.raises(DataError, match=r"other\.pt does not fit model 'cnn'.*shape mismatches"):
        load_weights(tiny_cnn(), tmp_path / "other.pt")


def test_corrupt_file_is_named(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cannot read .*bad\.pt"):
        load_weights(tiny_cnn(), tmp_path / "bad.pt")
