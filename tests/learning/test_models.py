"""Model registry: specs build models, round-trip, and name their feature layers."""

from __future__ import annotations

import json

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.models import build_model, feature_shapes, make_spec, module_paths

IN_SHAPE = (1, 8, 8)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mlp_from_spec():
    spec = make_spec({"name": "mlp", "hidden": [16, 12]}, IN_SHAPE, 10)
    assert spec == {"name": "mlp", "in_shape": [1, 8, 8], "num_classes": 10, "hidden": [16, 12]}
    model = build_model(spec)
    assert model(torch.zeros(3, *IN_SHAPE)).shape == (3, 10)
    # 64*16 + 16 + 16*12 + 12 + 12*10 + 10
    assert _count(model) == 1040 + 204 + 130
    assert model.spec == spec


def test_cnn_from_spec():
    spec = make_spec({"name": "cnn", "channels": [8, 16], "embed": 32}, IN_SHAPE, 10)
    model = build_model(spec)
    assert model(torch.zeros(2, *IN_SHAPE)).shape == (2, 10)
    # convs (no bias) 1*8*9 + 8*16*9, BN 2*8 + 2*16, embed 16*2*2*32 + 32, head 32*10 + 10
    assert _count(model) == 72 + 1152 + 16 + 32 + 2048 + 32 + 330


def test_default_architecture_fills_spec():
    spec = make_spec({"name": "cnn"}, (1, 28, 28), 10)
    assert spec["channels"] == [32, 64] and spec["embed"] == 128


@pytest.mark.parametrize(
    "raw", [{"name": "mlp", "hidden": [16]}, {"name": "cnn", "channels": [4, 8], "embed": 16}]
)
def test_spec_round_trip(raw):
    torch.manual_seed(0)
    model = build_model(make_spec(raw, IN_SHAPE, 10))
    spec = json.loads(json.dumps(model.spec))  # specs survive JSON
    rebuilt = build_model(spec)
    assert _count(rebuilt) == _count(model)
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    assert all(rebuilt.state_dict()[k].shape == v.shape for k, v in model.state_dict().items())
    rebuilt.load_state_dict(model.state_dict())


def test_feature_shapes_cnn():
    model = build_model(make_spec({"name": "cnn", "channels": [8, 16], "embed": 32}, IN_SHAPE, 10))
    model.train()
    shapes = feature_shapes(model, ["features.0", "features.1", "embed", "embed.0", "head"])
    assert shapes == {
        "features.0": (8, 4, 4),
        "features.1": (16, 2, 2),
        "embed": (32,),
        "embed.0": (32,),
        "head": (10,),
    }
    assert model.training  # mode restored


def test_feature_shapes_mlp():
    model = build_model(make_spec({"name": "mlp", "hidden": [16, 12]}, IN_SHAPE, 10)).eval()
    assert feature_shapes(model, ["flatten", "hidden.0", "hidden.1"]) == {
        "flatten": (64,),
        "hidden.0": (16,),
        "hidden.1": (12,),
    }
    assert not model.training


def test_cnn_on_tiny_images_skips_pooling():
    model = build_model(make_spec({"name": "cnn", "channels": [2, 2, 2, 2], "embed": 4}, (1, 4, 4), 3))
    assert feature_shapes(model, ["features.3"]) == {"features.3": (2, 1, 1)}


def test_module_paths_list_layers():
    paths = module_paths(build_model(make_spec({"name": "mlp", "hidden": [16]}, IN_SHAPE, 10)))
    assert {"flatten", "hidden", "hidden.0", "hidden.0.0", "head"} <= set(paths)
    assert "" not in paths


def test_unknown_model_names_allowed_models():
    with pytest.raises(ConfigError, match=r"student\.model\.name: unknown model 'resnet'.*'cnn'.*'mlp'"):
        make_spec({"name": "resnet"}, IN_SHAPE, 10, where="student.model")


def test_missing_model_name():
    with pytest.raises(ConfigError, match=r"model\.name: missing"):
        make_spec({"hidden": [16]}, IN_SHAPE, 10)


def test_unknown_model_key_names_key_and_allowed():
    with pytest.raises(ConfigError, match=r"model\.depth: unknown key for model 'mlp'; allowed keys: \[.*'hidden'"):
        build_model({"name": "mlp", "in_shape": [1, 8, 8], "num_classes": 10, "depth": 3})


def test_key_of_other_model_is_unknown():
    with pytest.raises(ConfigError, match=r"model\.channels: unknown key for model 'mlp'"):
        make_spec({"name": "mlp", "channels": [4]}, IN_SHAPE, 10)


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"name": "mlp", "hidden": []}, "hidden"),
        ({"name": "mlp", "hidden": [16, 0]}, "hidden"),
        ({"name": "cnn", "channels": [-1]}, "channels"),
        ({"name": "cnn", "embed": 0}, "embed"),
    ],
)
def test_bad_widths(raw, key):
    with pytest.raises(ConfigError, match=rf"model\.{key}:"):
        make_spec(raw, IN_SHAPE, 10)
