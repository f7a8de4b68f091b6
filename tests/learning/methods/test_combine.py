"""combine: weighted parts summed term by term, the label loss kept once, config errors naming nested keys."""

from __future__ import annotations

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS, build_method, parse_method_config
from distillation_studies.learning.methods.base import Batch, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.combine import Combine
from distillation_studies.learning.methods.dkd import DecoupledKD
from distillation_studies.learning.methods.kd import KnowledgeDistillation
from distillation_studies.learning.methods.rkd import RelationalKD
from distillation_studies.learning.training import TrainConfig, train
from tests.method_checks import assert_gradients_flow, tiny_cnn

RKD_LAYERS = {"student_layer": "embed.0", "teacher_layer": "embed.0"}


def _parse(parts, key="c"):
    return parse_method_config("combine", {"parts": parts}, f"methods.{key}")


def _hand_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    student = ModelOutputs(torch.randn(5, 4, generator=g, dtype=torch.float64), {"embed.0": torch.randn(5, 3, generator=g, dtype=torch.float64)})
    teacher = ModelOutputs(torch.randn(5, 4, generator=g, dtype=torch.float64), {"embed.0": torch.randn(5, 6, generator=g, dtype=torch.float64)})
    batch = Batch(torch.zeros(5, 1), torch.tensor([0, 1, 2, 3, 1]), torch.arange(5))
    return student, teacher, batch


SETUP = MethodSetup({"embed.0": (3,)}, {"embed.0": (6,)}, num_classes=4, num_train=5)


def test_registered_and_parts_parsed_into_frozen_configs():
    assert METHODS["combine"] is Combine
    config = _parse({"kd": {"method": "kd", "temperature": 2}, "rkd": {"method": "rkd", "weight": 2, **RKD_LAYERS}})
    (p1, m1, w1, c1), (p2, m2, w2, c2) = config.parts
    assert (p1, m1, w1, c1.temperature, c1.weights()) == ("kd", "kd", 1.0, 2.0, (0.1, 0.9))
    assert (p2, m2, w2, c2.student_layer) == ("rkd", "rkd", 2.0, "embed.0")
    assert Combine.layers(config) == (["embed.0"], ["embed.0"])


def test_terms_are_parts_terms_weighted_and_ce_kept_once():
    config = _parse({"kd": {"method": "kd"}, "rel": {"method": "rkd", "weight": 2.0, **RKD_LAYERS}})
    student, teacher, batch = _hand_inputs()
    terms = Combine(config, SETUP)(student, teacher, batch)
    kd = KnowledgeDistillation(parse_method_config("kd", {}, "kd"), SETUP)(student, teacher, batch)
    rkd = RelationalKD(parse_method_config("rkd", RKD_LAYERS, "rkd"), SETUP)(student, teacher, batch)
    assert set(terms) == {"ce", "kd.kd", "rel.rkd_distance", "rel.rkd_angle"}
    assert torch.equal(terms["ce"], kd["ce"])  # the first part owns the label loss: (1 - alpha) CE, unweighted
    assert torch.equal(terms["kd.kd"], kd["kd"])
    assert torch.allclose(terms["rel.rkd_distance"], 2.0 * rkd["rkd_distance"])
    assert torch.allclose(terms["rel.rkd_angle"], 2.0 * rkd["rkd_angle"])
    total = sum(terms.values())
    assert torch.allclose(total, kd["ce"] + kd["kd"] + 2.0 * (rkd["rkd_distance"] + rkd["rkd_angle"]))


def test_label_loss_comes_from_the_first_part_in_order():
    config = _parse({"rel": {"method": "rkd", "weight": 3.0, **RKD_LAYERS}, "kd": {"method": "kd", "weight": 5.0}})
    student, teacher, batch = _hand_inputs()
    terms = Combine(config, SETUP)(student, teacher, batch)
    plain_ce = torch.nn.functional.cross_entropy(student.logits, batch.labels)
    assert torch.allclose(terms["ce"], plain_ce)  # rkd's plain CE, not weighted by 3
    kd = KnowledgeDistillation(parse_method_config("kd", {}, "kd"), SETUP)(student, teacher, batch)
    assert torch.allclose(terms["kd.kd"], 5.0 * kd["kd"])


def test_method_with_its_own_weight_keeps_it():
    config = _parse({"kd": {"method": "kd"}, "hint": {"method": "fitnet", "weight": 2.0, **RKD_LAYERS}})
    (_, _, w, fit_config) = config.parts[1]
    assert (w, fit_config.weight) == (1.0, 2.0)  # the same meaning as fitnet's weight alone


def test_start_epoch_is_forwarded_to_parts():
    config = _parse({"kd": {"method": "kd"}, "dkd": {"method": "dkd", "warmup": 20}})
    student, teacher, batch = _hand_inputs()
    method = Combine(config, SETUP)
    method.start_epoch(5, 240)
    terms = method(student, teacher, batch)
    dkd = DecoupledKD(parse_method_config("dkd", {"warmup": 0}, "dkd"), SETUP)(student, teacher, batch)
    assert torch.allclose(terms["dkd.tckd"], 0.25 * dkd["tckd"])
    assert torch.allclose(terms["dkd.nckd"], 0.25 * dkd["nckd"])


@pytest.mark.parametrize(
    "parts, key",
    [
        (None, "methods.c.parts"),
        ({}, "methods.c.parts"),
        ({"a": {"method": "nope"}}, "methods.c.parts.a.method"),
        ({"a": {"temperature": 4}}, "methods.c.parts.a.method"),
        ({"a": {"method": "kd", "temprature": 4}}, "methods.c.parts.a.temprature"),
        ({"a": {"method": "kd", "alpha": 2.0}}, "methods.c.parts.a.alpha"),
        ({"a": {"method": "kd", "weight": -1}}, "methods.c.parts.a.weight"),
        ({"a": {"method": "combine", "parts": {"b": {"method": "kd"}}}}, "methods.c.parts.a.method"),
        ({"a b": {"method": "kd"}}, "methods.c.parts.a b"),
        ({"a": "kd"}, "methods.c.parts.a"),
    ],
)
def test_config_errors_name_the_nested_key(parts, key):
    raw = {} if parts is None else {"parts": parts}
    with pytest.raises(ConfigError, match=rf"^{key}[:.]"):
        parse_method_config("combine", raw, "methods.c")


def test_build_errors_name_the_part():
    config = _parse({"hint": {"method": "fitnet", "student_layer": "features.0", "teacher_layer": "features.1", "regressor": "conv"}})
    with pytest.raises(ConfigError, match=r"^methods\.c: parts\.hint: .*spatial"):
        build_method("combine", config, tiny_cnn(), tiny_cnn(channels=(8, 16)), 8, "methods.c")


def test_needs_teacher_per_instance():
    config = _parse({"a": {"method": "ce"}, "b": {"method": "ce", "label_smoothing": 0.1}})
    assert Combine(config, SETUP).needs_teacher is False
    assert Combine(_parse({"a": {"method": "ce"}, "b": {"method": "kd"}}), SETUP).needs_teacher is True
    assert Combine.needs_teacher is True  # the registry's class-level check, before a config is known


def test_gradients_flow_to_student_and_every_part_adapter():
    parts = {
        "kd": {"method": "kd"},
        "hint": {"method": "fitnet", "student_layer": "embed.0", "teacher_layer": "embed.0"},
        "crd": {"method": "crd", "student_layer": "embed.0", "teacher_layer": "embed.0", "feat_dim": 8, "negatives": 4},
    }
    assert_gradients_flow("combine", {"parts": parts}, tiny_cnn(), tiny_cnn(channels=(8, 16), embed=32))


def test_adapters_are_counted_as_method_parameters():
    config = _parse({"kd": {"method": "kd"}, "hint": {"method": "fitnet", **RKD_LAYERS}})
    method = build_method("combine", config, tiny_cnn(embed=16), tiny_cnn(embed=32), 8, "methods.c")
    # fitnet's published regressor: 1x1 conv (weight 16 x 32, bias 32) + BatchNorm (weight and bias 32 each)
    assert sum(p.numel() for p in method.parameters()) == 16 * 32 + 32 + 2 * 32


def test_two_epochs_through_the_unchanged_loop():
    torch.manual_seed(0)
    data = {"x": torch.randn(24, 1, 8, 8), "y": torch.randint(0, 10, (24,))}
    student, teacher = tiny_cnn(), tiny_cnn(channels=(8, 16), embed=32)
    config = _parse({"kd": {"method": "kd"}, "rel": {"method": "rkd", "weight": 2.0, **RKD_LAYERS}})
    method = build_method("combine", config, student, teacher, 24, "methods.c")
    result = train(student, method, data, data, TrainConfig(epochs=2, batch_size=8), seed=0, teacher=teacher)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert {"loss_ce", "loss_kd.kd", "loss_rel.rkd_distance", "loss_rel.rkd_angle"} <= set(result.history[-1])
