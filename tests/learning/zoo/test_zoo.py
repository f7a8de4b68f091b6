"""The CIFAR distillation zoo and torchvision wrapper: shapes, published sizes, feature paths, specs."""

from __future__ import annotations

import functools
import socket
import subprocess
import sys

import pytest
import torch
from torch import nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.features import capture_features
from distillation_studies.learning.models import MODELS, build_model, feature_shapes, make_spec
from distillation_studies.learning.zoo import ZOO_MODELS

# Parameter counts (in millions, CIFAR-100 heads) as reported with the CRD / RepDistiller and mdistiller
# CIFAR-100 tables; they are rounded to two decimals, hence the tolerance below.
PUBLISHED_M = {
    "resnet8": 0.08,
    "resnet20": 0.28,
    "resnet32": 0.47,
    "resnet56": 0.86,
    "resnet110": 1.74,
    "resnet8x4": 1.23,
    "resnet32x4": 7.43,
    "wrn_16_2": 0.70,
    "wrn_40_1": 0.57,
    "wrn_40_2": 2.26,
    "vgg8": 3.96,
    "vgg13": 9.46,
    "mobilenetv2": 0.81,
    "shufflenetv1": 0.95,
    "shufflenetv2": 1.36,
}

# Exact counts with 100 classes: layer-for-layer the RepDistiller definitions (vgg8 checked by hand:
# convs 1,792 + 73,856 + 295,168 + 1,180,160 + 2,359,808, BN 2,944, fc 51,300).
EXACT = {
    "resnet8": 83_892,
    "resnet14": 181_108,
    "resnet20": 278_324,
    "resnet32": 472_756,
    "resnet44": 667_188,
    "resnet56": 861_620,
    "resnet110": 1_736_564,
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "wrn_16_1": 180_916,
    "wrn_16_2": 703_284,
    "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028,
    "vgg11": 9_277_284,
    "vgg13": 9_462_180,
    "mobilenetv2": 812_836,
    "shufflenetv1": 949_258,
    "shufflenetv2": 1_355_528,
}
CIFAR = sorted(EXACT)


@functools.cache
def _cifar_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model({"name": name, "in_shape": [3, 32, 32], "num_classes": 100}).eval()


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _state_shapes(model: nn.Module) -> dict[str, torch.Size]:
    return {key: value.shape for key, value in model.state_dict().items()}


def test_every_zoo_name_is_registered_and_tested():
    assert set(ZOO_MODELS) == set(CIFAR) | {"torchvision"}
    assert set(ZOO_MODELS) <= set(MODELS)
    assert {"mlp", "cnn"} <= set(MODELS)


@pytest.mark.parametrize("name", CIFAR)
def test_forward_and_parameter_count(name):
    model = _cifar_model(name)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 100)
    assert torch.isfinite(logits).all()
    count = _params(model)
    assert count == EXACT[name]
    if name in PUBLISHED_M:
        published = PUBLISHED_M[name]
        assert abs(count / 1e6 - published) <= max(0.02 * published, 0.005), (name, count, published)


@pytest.mark.parametrize("name", CIFAR)
def test_feature_layers_resolve_in_order_and_spec_round_trips(name):
    model = _cifar_model(name)
    layers = list(type(model).feature_layers)
    assert layers == list(model.feature_layers) and len(layers) >= 4
    for path in layers:
        model.get_submodule(path)
    shapes = feature_shapes(model, layers)
    assert list(shapes) == layers
    # shallow to deep: spatial size never grows, and the last one is the flat pooled embedding
    spatial = [s[1] * s[2] for s in shapes.values() if len(s) == 3]
    assert spatial == sorted(spatial, reverse=True) and len(spatial) == len(layers) - 1
    assert len(shapes[layers[-1]]) == 1 and shapes[layers[-1]][0] == model.fc.in_features

    assert model.spec == {"name": name, "in_shape": [3, 32, 32], "num_classes": 100}
    rebuilt = build_model(model.spec)
    assert _state_shapes(rebuilt) == _state_shapes(model)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model(x))


def test_preact_paths_are_the_stage_outputs_before_their_relu():
    model = _cifar_model("resnet8")
    with torch.no_grad(), capture_features(model, ["layer3", "layer3.0.preact", "layer3.0.bn2"]) as feats:
        model(torch.randn(2, 3, 32, 32))
    assert feats["layer3.0.preact"].min() < 0
    torch.testing.assert_close(torch.relu(feats["layer3.0.preact"]), feats["layer3"])

    vgg = _cifar_model("vgg13")
    with torch.no_grad(), capture_features(vgg, ["block1", "block1.4"]) as feats:
        vgg(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(torch.relu(feats["block1.4"]), feats["block1"])


def test_shufflenetv2_split_units_only_see_non_negative_inputs():
    # SplitUnitV2 ReLUs the whole concatenation; that equals ReLU-ing the branch only for inputs >= 0.
    model = _cifar_model("shufflenetv2")
    units = [f"layer{i}.{j}" for i in (1, 2, 3) for j in range(len(model.get_submodule(f"layer{i}")))]
    with torch.no_grad(), capture_features(model, ["stem", *units]) as feats:
        model(torch.randn(2, 3, 32, 32))
    assert all(feats[path].min() >= 0 for path in ["stem", *units])


def test_other_input_channels_and_sizes():
    model = build_model({"name": "resnet8", "in_shape": [1, 28, 28], "num_classes": 10}).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # the pool between VGG's last two stages is only used from 64 pixels on, as in RepDistiller
    small = build_model({"name": "vgg8", "in_shape": [3, 32, 32], "num_classes": 10})
    large = build_model({"name": "vgg8", "in_shape": [3, 64, 64], "num_classes": 10})
    assert isinstance(small.pool3, nn.Identity) and isinstance(large.pool3, nn.MaxPool2d)
    assert feature_shapes(large, ["block3", "block4"]) == {"block3": (512, 8, 8), "block4": (512, 4, 4)}


def test_zoo_models_take_no_architecture_keys():
    spec = make_spec({"name": "wrn_40_2"}, (3, 32, 32), 100)
    assert spec == {"name": "wrn_40_2", "in_shape": [3, 32, 32], "num_classes": 100}
    with pytest.raises(ConfigError, match=r"model\.depth: unknown key"):
        make_spec({"name": "resnet8", "depth": 20}, (3, 32, 32), 100)
    with pytest.raises(ConfigError, match=r"model\.in_shape"):
        build_model({"name": "resnet8", "in_shape": [784], "num_classes": 10})


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def test_torchvision_resnet18_builds_offline(no_network):
    spec = make_spec({"name": "torchvision", "arch": "resnet18"}, (3, 32, 32), 10)
    assert spec == {"name": "torchvision", "in_shape": [3, 32, 32], "num_classes": 10, "arch": "resnet18"}
    model = build_model(spec).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert _params(model) == 11_181_642  # torchvision's resnet18 with a 10-class fc
    assert model.feature_layers == ("layer1", "layer2", "layer3", "layer4", "avgpool")
    assert feature_shapes(model, list(model.feature_layers))["layer4"] == (512, 1, 1)
    rebuilt = build_model(model.spec)
    rebuilt.load_state_dict(model.state_dict())


def test_torchvision_feature_layers_and_input_channels(no_network):
    spec = {"name": "torchvision", "arch": "mobilenet_v2", "in_shape": [1, 32, 32], "num_classes": 10}
    model = build_model(spec)
    assert model.feature_layers == ("features.1", "features.3", "features.6", "features.13", "features.18")
    assert model.features[0][0].in_channels == 1
    shapes = feature_shapes(model, list(model.feature_layers))
    assert [s[1] for s in shapes.values()] == [16, 8, 4, 2, 1]
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_torchvision_rejects_unknown_or_non_classification_arch():
    with pytest.raises(ConfigError, match=r"model\.arch: unknown torchvision classification model ''"):
        make_spec({"name": "torchvision"}, (3, 32, 32), 10)
    with pytest.raises(ConfigError, match="fasterrcnn_resnet50_fpn"):
        make_spec({"name": "torchvision", "arch": "fasterrcnn_resnet50_fpn"}, (3, 32, 32), 10)


def test_zoo_can_be_imported_before_the_registry():
    code = "import distillation_studies.learning.zoo, distillation_studies.learning.models as m; assert 'resnet8' in m.MODELS"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
