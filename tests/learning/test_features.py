"""Feature capture by module path with forward hooks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.features import capture_features, resolve_module
from tests.method_checks import tiny_cnn, tiny_mlp


def _hook_count(model) -> int:
    return sum(len(module._forward_hooks) for module in model.modules())


def test_captures_requested_layers():
    torch.manual_seed(0)
    model = tiny_mlp(hidden=(16, 12)).eval()
    x = torch.randn(4, 1, 8, 8)
    with capture_features(model, ["hidden.0", "hidden.1", "head"]) as feats:
        logits = model(x)
    assert set(feats) == {"hidden.0", "hidden.1", "head"}
    linear = model.hidden[0][0]
    assert torch.allclose(feats["hidden.0"], F.relu(linear(x.flatten(1))))
    assert feats["hidden.1"].shape == (4, 12)
    assert torch.equal(feats["head"], logits)


def test_duplicate_layers_captured_once():
    model = tiny_mlp()
    with capture_features(model, ["hidden.0", "hidden.0"]) as feats:
        assert _hook_count(model) == 1
        model(torch.zeros(2, 1, 8, 8))
    assert list(feats) == ["hidden.0"]


def test_no_layers_captures_nothing():
    model = tiny_cnn()
    with capture_features(model, []) as feats:
        model(torch.zeros(1, 1, 8, 8))
    assert feats == {}


def test_unknown_path_lists_available_layers():
    model = tiny_cnn()
    with pytest.raises(ConfigError, match=r"layer 'embed\.5' does not exist.*available layers:.*'features\.0'.*'embed\.0'"):
        with capture_features(model, ["embed.5"]):
            pass
    with pytest.raises(ConfigError, match=r"'nope'"):
        resolve_module(model, "nope")


def test_hooks_removed_afterwards():
    model = tiny_cnn()
    with capture_features(model, ["features.0", "embed"]):
        assert _hook_count(model) == 2
    assert _hook_count(model) == 0


def test_hooks_removed_when_body_raises():
    model = tiny_cnn()
    with pytest.raises(RuntimeError):
        with capture_features(model, ["features.1"]):
            raise RuntimeError("boom")
    assert _hook_count(model) == 0


def test_hooks_removed_when_a_later_layer_is_unknown():
    model = tiny_mlp()
    with pytest.raises(ConfigError):
        with capture_features(model, ["hidden.0", "does.not.exist"]):
            pass
    assert _hook_count(model) == 0
