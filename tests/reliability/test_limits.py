"""Huge values are refused at validation, with the data's size and the documented limit in the message."""

from __future__ import annotations

import copy

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS
from distillation_studies.learning.methods.base import MethodSetup
from distillation_studies.learning.models import model_footprint
from distillation_studies.study import limits
from distillation_studies.study.schema import validate_study
from tests.study.test_schema import base_config

DIGITS_TRAIN = 1257  # int(1797 x (1 - 0.1 - 0.2))


def _with(path: str, value) -> dict:
    config = copy.deepcopy(base_config())
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return config


def test_footprint_by_hand():
    # mlp 64 -> 16 -> 10: weights 64*16 + 16 and 16*10 + 10; outputs of flatten (64), linear and relu (16 each), head (10)
    spec = {"name": "mlp", "in_shape": [1, 8, 8], "num_classes": 10, "hidden": [16]}
    assert model_footprint(spec) == (64 * 16 + 16 + 16 * 10 + 10, 64 + 16 + 16 + 10)


def test_a_width_of_a_billion_is_refused_without_allocating_it():
    with pytest.raises(ConfigError, match=r"student\.model: this architecture has 75,000,000,010 parameters .*at most 2,000,000,000"):
        validate_study(_with("student.model.hidden", [10**9]))  # 64e9 + 1e9 + 10e9 + 10 weights


def test_batch_size_above_the_training_split_is_refused():
    with pytest.raises(ConfigError, match=rf"student\.training\.batch_size: {DIGITS_TRAIN + 1} is larger than the training split \({DIGITS_TRAIN} samples\)"):
        validate_study(_with("student.training.batch_size", DIGITS_TRAIN + 1))
    validate_study(_with("student.training.batch_size", DIGITS_TRAIN))  # one batch per epoch is fine


def test_rkd_angle_memory_by_hand():
    setup = MethodSetup({"hidden.0": (16,)}, {"embed.0": (32,)}, 10, 1000)
    config = METHODS["rkd"].Config(student_layer="hidden.0", teacher_layer="embed.0")
    assert METHODS["rkd"].batch_elements(config, setup, 100) == 3 * 100**3 + 4 * 100**2 * 32


def test_crd_memory_is_checked_before_its_banks_are_allocated():
    crd = {"method": "crd", "student_layer": "hidden.0", "teacher_layer": "embed.0", "feat_dim": 10**7}
    # 2 banks of 1257 x 1e7 plus 2 x 64 x 1257 x 1e7 gathered rows: about 6e3 GiB of fp32
    with pytest.raises(ConfigError, match=r"methods\.crd: at student batch 64 this method's own tensors need about .*GiB; at most 64 GiB"):
        validate_study(_with("methods.crd", crd))


def test_activation_memory_of_a_wide_conv_is_refused():
    # 2e6 channels x 8 x 8 outputs per conv, BN and ReLU layer and per sample, x 64 samples: far above 64 GiB
    with pytest.raises(ConfigError, match=r"teacher\.training\.batch_size: one training step at batch 64 needs about .* at most 64 GiB"):
        validate_study(_with("teacher.model.channels", [2 * 10**6]))


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("student.training.epochs", limits.MAX_EPOCHS + 1, r"student\.training\.epochs: 100001; at most 100000"),
        ("teacher.training.workers", 10**6, r"teacher\.training\.workers: 1000000; at most 256"),
        ("seeds", list(range(limits.MAX_SEEDS + 1)), r"seeds: 1001 seeds; at most 1000"),
        ("seeds", list(range(251)), r"seeds: 251 seeds x 4 arm\(s\) = 1004 runs; at most 1000 runs"),
        ("seeds", [2**32], r"seeds: every seed must be an integer in \[0, 4294967295\], got 4294967296"),
        ("evaluation.throughput_batch", 10**9, r"evaluation\.throughput_batch: 1000000000 images through the teacher need about"),
        ("evaluation.latency_repeats", 10**9, r"evaluation\.latency_repeats: 1000000000; at most 100000"),
        ("evaluation.ece_bins", 10**6, r"evaluation\.ece_bins: 1000000; at most 10000"),
    ],
)
def test_documented_limits(path, value, message):
    with pytest.raises(ConfigError, match=message):
        validate_study(_with(path, value))


def test_epochs_times_data_is_bounded():
    train = limits.TrainConfig(epochs=limits.MAX_EPOCHS)
    with pytest.raises(ConfigError, match=r"x 200000 training samples = 2e\+10 sample passes; at most 1e\+10"):
        limits.check_training(train, "student.training", 200_000, (10, 10))


# --- the host's memory: validation builds every model for real -------------------------------------------

STUDENT_PARAMETERS = 64 * 16 + 16 + 16 * 10 + 10  # base_config's student: mlp 64 -> 16 -> 10, by hand


def _teacher_parameters() -> int:
    """Counted on the real model, not by the estimate under test."""
    from distillation_studies.learning.models import build_model, make_spec

    return sum(p.numel() for p in build_model(make_spec(base_config()["teacher"]["model"], (1, 8, 8), 10)).parameters())


def _gib(count: int) -> str:
    return f"{count / 2**30:.3g} GiB"


def test_a_student_beyond_the_hosts_free_memory_is_named_before_it_is_built(monkeypatch):
    teacher = _teacher_parameters()
    available = 4 * (teacher + STUDENT_PARAMETERS) - 1  # fp32: one byte short of teacher and student together
    monkeypatch.setattr(limits, "available_memory", lambda: available)
    with pytest.raises(ConfigError) as caught:
        validate_study(base_config())
    assert str(caught.value) == (
        f"student.model: its {STUDENT_PARAMETERS:,} parameters need about {_gib(4 * STUDENT_PARAMETERS)} of fp32 "
        f"weights (with the teacher's {_gib(4 * teacher)} held too), more than the {_gib(available)} of memory this "
        "host has available; use a smaller model or a host with more memory"
    )
    monkeypatch.setattr(limits, "available_memory", lambda: available + 1)
    validate_study(base_config())  # exactly enough


def test_a_grid_student_and_the_teacher_are_named_by_their_keys(monkeypatch):
    teacher = _teacher_parameters()
    config = _with("grid.students", {"small": {"name": "mlp", "hidden": [16]}, "wide": {"name": "mlp", "hidden": [64]}})
    wide = 64 * 64 + 64 + 64 * 10 + 10
    monkeypatch.setattr(limits, "available_memory", lambda: 4 * (teacher + wide) - 1)
    with pytest.raises(ConfigError, match=rf"^grid\.students\.wide: its {wide:,} parameters need about"):
        validate_study(config)
    monkeypatch.setattr(limits, "available_memory", lambda: 4 * teacher - 1)
    with pytest.raises(ConfigError, match=rf"^teacher\.model: its {teacher:,} parameters need about {_gib(4 * teacher)} of fp32 weights, more than"):
        validate_study(config)


def test_available_memory_is_the_hosts_at_most():
    import psutil

    assert 0 < limits.available_memory() <= psutil.virtual_memory().available


@pytest.mark.parametrize("spec", [
    {"name": "mlp", "in_shape": [1, 8, 8], "num_classes": 10, "hidden": [16]},
    {"name": "cnn", "in_shape": [1, 8, 8], "num_classes": 10, "channels": [8, 16], "embed": 32},
    {"name": "resnet8x4", "in_shape": [3, 32, 32], "num_classes": 100},
    {"name": "wrn_16_1", "in_shape": [3, 32, 32], "num_classes": 10},
])
def test_small_models_measured_on_the_cpu_match_the_meta_device_and_leave_the_rng_alone(spec, monkeypatch):
    """Small models are built for real (the meta device's first forward costs seconds); the figures are the
    meta device's, and drawing their initial weights does not move the global random stream."""
    from distillation_studies.learning import models

    torch.manual_seed(123)
    on_cpu = model_footprint(spec)
    after = torch.rand(3)
    monkeypatch.setattr(models, "SMALL_PROBE_PARAMETERS", 0)
    torch.manual_seed(123)
    assert model_footprint(spec) == on_cpu  # the meta device's
    assert torch.equal(torch.rand(3), after)
