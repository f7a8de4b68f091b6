"""Factor Transfer (Kim et al. 2018): beta * mean |F_S/||F_S|| - F_T/||F_T|||, paraphraser fitted first."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.ft import FactorTransfer, factor_distance
from distillation_studies.learning.training import predict
from tests.method_checks import assert_gradients_flow, one_step, tiny_batch, tiny_cnn

LAYERS = {"student_layer": "features.1", "teacher_layer": "features.1"}


def _config(**overrides):
    return parse_method_config("ft", {"student_layer": "s", "teacher_layer": "t", **overrides}, "methods.ft")


def _ft(student_shape, teacher_shape, **overrides) -> FactorTransfer:
    setup = MethodSetup({"s": student_shape}, {"t": teacher_shape}, num_classes=2, num_train=2)
    return FactorTransfer(_config(**overrides), setup)


def _teacher_run(n: int = 32, seed: int = 0):
    """A student, a teacher, n random inputs and the teacher's features.1 outputs keyed as layer "t"."""
    torch.manual_seed(seed)
    student, teacher = tiny_cnn(), tiny_cnn((8, 16), 32)
    batch = tiny_batch(n, seed)
    teacher.eval().requires_grad_(False)
    outputs = predict(teacher, batch.inputs, ["features.1"])
    return student, teacher, batch, ModelOutputs(outputs.logits, {"t": outputs.features["features.1"]})


def test_factor_distance_hand_value():
    # Per-sample L2 normalisation of the flattened factors, then mean absolute difference.
    student = torch.tensor([[[[3.0, 4.0]]], [[[1.0, 0.0]]]])  # -> [0.6, 0.8], [1, 0]
    teacher = torch.tensor([[[[4.0, 3.0]]], [[[0.0, 2.0]]]])  # -> [0.8, 0.6], [0, 1]
    # |diff|: 0.2, 0.2, 1, 1 -> mean (0.4 + 2) / 4 = 0.6
    assert factor_distance(student, teacher).item() == pytest.approx(0.6, rel=1e-6)


def test_factor_distance_pools_larger_map_to_smaller():
    student = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]], [[0.0, 0.0], [6.0, 6.0]]]])  # avg-pooled: [4, 3]
    teacher = torch.tensor([[[[3.0]], [[4.0]]]])
    # [0.8, 0.6] vs [0.6, 0.8] -> mean |diff| = 0.2
    assert factor_distance(student, teacher).item() == pytest.approx(0.2, rel=1e-6)


def test_forward_is_beta_times_factor_distance_and_plain_ce():
    method = _ft((1, 1, 2), (2, 1, 2), beta=200.0, paraphraser_epochs=0)
    teacher_train = ModelOutputs(torch.zeros(2, 2), {"t": torch.randn(4, 2, 1, 2)})
    method.prepare(teacher_train, {})
    method.translator, method.paraphraser = nn.Identity(), nn.Identity()  # factors = raw hand tensors
    logits, labels = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
    student = torch.tensor([[[[3.0, 4.0]]], [[[1.0, 0.0]]]])
    teacher = torch.tensor([[[[4.0, 3.0]]], [[[0.0, 2.0]]]])
    batch = Batch(logits, labels, torch.arange(2))
    terms = method(ModelOutputs(logits, {"s": student}), ModelOutputs(logits, {"t": teacher}), batch)
    assert set(terms) == {"ce", "ft"}
    assert terms["ft"].item() == pytest.approx(200.0 * 0.6, rel=1e-6)
    # -log softmax([1, 0])[0] = log(1 + e^-1); -log softmax([0, 2])[0] = log(1 + e^2)
    assert terms["ce"].item() == pytest.approx((0.3132617 + 2.1269280) / 2, rel=1e-6)


def test_module_sizes_follow_rate():
    method = _ft((4, 3, 3), (8, 3, 3), rate=0.5)
    assert method.paraphraser[0].in_channels == 8 and method.paraphraser[-3].out_channels == 4
    assert method.translator[0].in_channels == 4 and method.translator[-3].out_channels == 4
    assert isinstance(method.translator[1], nn.BatchNorm2d) and isinstance(method.paraphraser[1], nn.Identity)


def test_prepare_reduces_reconstruction_error():
    _, _, _, teacher_out = _teacher_run()
    features = teacher_out.features["t"]
    torch.manual_seed(0)
    shape = tuple(features.shape[1:])
    method = _ft((8, 2, 2), shape, paraphraser_epochs=15, paraphraser_batch_size=16, paraphraser_lr=1e-2)
    encoder, decoder = method.paraphraser, method.decoder
    with torch.no_grad():
        before = F.mse_loss(decoder(encoder(features)), features).item()
    method.prepare(teacher_out, {})
    with torch.no_grad():  # the same module objects were trained in place; the method drops the decoder
        after = F.mse_loss(decoder(encoder(features)), features).item()
    assert method.decoder is None
    assert method.paraphraser_mse["before"] == pytest.approx(before, rel=1e-5)
    assert method.paraphraser_mse["after"] == pytest.approx(after, rel=1e-5)
    assert after < 0.5 * before


def test_paraphraser_is_deterministic_given_global_and_paraphraser_seed():
    _, _, _, teacher_out = _teacher_run()
    shape = tuple(teacher_out.features["t"].shape[1:])

    def fitted(seed: int):
        torch.manual_seed(0)
        method = _ft((8, 2, 2), shape, paraphraser_epochs=2, paraphraser_batch_size=8, paraphraser_seed=seed)
        method.prepare(teacher_out, {})
        return method.paraphraser.state_dict()

    first, second, other = fitted(3), fitted(3), fitted(4)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_frozen_paraphraser_gets_no_gradient_translator_does():
    student, teacher, batch, _ = _teacher_run(8)
    terms, method = one_step("ft", {**LAYERS, "paraphraser_epochs": 2}, student, teacher, batch)
    assert list(method.paraphraser.parameters()) == []  # weights became buffers: not trained, not counted
    frozen = {name: buf.clone() for name, buf in method.paraphraser.named_buffers()}
    assert frozen and all(not b.requires_grad and b.grad is None for b in method.paraphraser.buffers())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.translator.parameters())
    assert sum(p.numel() for p in method.parameters()) == sum(p.numel() for p in method.translator.parameters())
    assert method.paraphraser_size == sum(b.numel() for b in frozen.values())
    torch.optim.SGD(method.parameters(), lr=1.0).step()
    assert all(torch.equal(buf, frozen[name]) for name, buf in method.paraphraser.named_buffers())
    assert any(key.startswith("paraphraser.") for key in method.state_dict())
    assert terms["ft"].item() > 0


def test_gradients_flow():
    torch.manual_seed(0)
    assert_gradients_flow("ft", {**LAYERS, "paraphraser_epochs": 2}, tiny_cnn(), tiny_cnn((8, 16), 32))


def test_forward_before_prepare_is_an_error():
    method = _ft((1, 1, 2), (2, 1, 2))
    feature = torch.zeros(2, 1, 1, 2)
    logits = torch.zeros(2, 2)
    batch = Batch(logits, torch.zeros(2, dtype=torch.long), torch.arange(2))
    with pytest.raises(RuntimeError, match="prepare"):
        method(ModelOutputs(logits, {"s": feature}), ModelOutputs(logits, {"t": feature}), batch)


def test_defaults_follow_repdistiller():
    config = _config()
    assert (config.beta, config.rate, config.paraphraser_epochs) == (200.0, 0.5, 30)


@pytest.mark.parametrize("missing", ["student_layer", "teacher_layer"])
def test_layers_are_required(missing):
    raw = {"student_layer": "a", "teacher_layer": "b"}
    del raw[missing]
    with pytest.raises(ConfigError, match=rf"methods\.ft\.{missing}: required"):
        parse_method_config("ft", raw, "methods.ft")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("beta", 0, "must be > 0"),
        ("paraphraser_lr", -1.0, "must be > 0"),
        ("paraphraser_batch_size", 0, "must be > 0"),
        ("rate", 0.0, r"must be in \(0, 1\]"),
        ("rate", 1.5, r"must be in \(0, 1\]"),
        ("paraphraser_epochs", -1, "must be >= 0"),
        ("paraphraser_seed", "a", "expected int"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"methods\.ft\.{key}: {message}"):
        _config(**{key: value})


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"methods\.ft\.k: unknown key"):
        _config(k=0.5)


def test_flat_layer_is_a_config_error():
    with pytest.raises(ConfigError, match=r"ft\.student_layer: .*conv feature map"):
        _ft((16,), (8, 2, 2))


def test_rate_leaving_no_channel_is_a_config_error():
    with pytest.raises(ConfigError, match=r"ft\.rate"):
        _ft((4, 2, 2), (1, 2, 2), rate=0.5)


def test_build_method_from_real_models():
    torch.manual_seed(0)
    config = parse_method_config("ft", LAYERS, "methods.ft")
    method = build_method("ft", config, tiny_cnn(), tiny_cnn((8, 16), 32), num_train=8)
    assert method.translator[0].in_channels == 8 and method.paraphraser[0].in_channels == 16
    assert method.translator[-3].out_channels == method.paraphraser[-3].out_channels == 8
