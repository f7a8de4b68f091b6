"""validate_study: a table of bad configs, each failing with a ConfigError that names the key."""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from distillation_studies.core.errors import ConfigError
from distillation_studies.core.study import StudyConfig, validate_study


def base_config() -> dict[str, Any]:
    return {
        "data": {"dataset": "digits", "val_fraction": 0.1, "test_fraction": 0.2, "split_seed": 0},
        "teacher": {
            "model": {"name": "cnn", "channels": [8, 16], "embed": 32},
            "training": {"epochs": 2, "batch_size": 64, "optimizer": "adam", "lr": 0.001},
        },
        "student": {
            "model": {"name": "mlp", "hidden": [16]},
            "training": {"epochs": 2, "batch_size": 64},
        },
        "methods": {
            "ce": {},
            "kd": {"temperature": 4.0, "alpha": 0.9},
            "fitnet": {"student_layer": "hidden.0", "teacher_layer": "embed.0"},
            "rkd": {"student_layer": "hidden.0", "teacher_layer": "embed.0"},
        },
        "seeds": [0, 1],
        "comparison": {"baselines": ["ce", "kd"]},
        "recommendation": {},
        "grid": {},
        "evaluation": {"ece_bins": 15},
        "tracking": {"enabled": False},
    }


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation setting ``a.b.c`` to ``value`` (creating nothing: the parents must exist)."""

    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


# (id, mutation, regex the ConfigError message must match: the key and, where applicable, allowed values)
BAD_CONFIGS = [
    ("unknown dataset", _set("data.dataset", "cifar10"), r"data\.dataset: unknown dataset 'cifar10'.*digits.*mnist5k"),
    ("bad val fraction", _set("data.val_fraction", 0.0), r"data\.val_fraction: must be in \(0, 1\)"),
    ("unknown data key", _set("data.datset", "digits"), r"data\.datset: unknown key; allowed keys:.*'dataset'"),
    ("unknown teacher model", _set("teacher.model.name", "resnet"), r"teacher\.model\.name: unknown model 'resnet'.*'cnn'.*'mlp'"),
    ("unknown student model", _set("student.model.name", "vit"), r"student\.model\.name: unknown model 'vit'.*'cnn'.*'mlp'"),
    ("unknown model key", _set("student.model.depth", 3), r"student\.model\.depth: unknown key for model 'mlp'; allowed keys: \[.*'hidden'"),
    ("unknown model section key", _set("teacher.optim", {}), r"teacher\.optim: unknown key; allowed keys: \[.*'model'.*'training'"),
    ("empty hidden", _set("student.model.hidden", []), r"student\.model\.hidden: must be a non-empty list"),
    ("unknown method", _set("methods.distill", {}), r"methods\.distill: unknown method 'distill'; allowed methods: \[.*'ce'.*'kd'"),
    ("unknown method via method key", _set("methods.my_kd", {"method": "kdd"}), r"methods\.my_kd\.method: unknown method 'kdd'; allowed methods: \[.*'kd'"),
    ("bad method key", _set("methods.kd-2", {}), r"methods\.kd-2: method keys must be identifiers"),
    ("unknown method hyperparameter", _set("methods.kd.beta", 1.0), r"methods\.kd\.beta: unknown key; allowed keys: \[.*'temperature'.*'alpha'"),
    ("zero temperature", _set("methods.kd.temperature", 0), r"methods\.kd\.temperature: must be > 0"),
    ("negative temperature", _set("methods.kd.temperature", -2.0), r"methods\.kd\.temperature: must be > 0"),
    ("string temperature", _set("methods.kd.temperature", "4"), r"methods\.kd\.temperature: expected float"),
    ("alpha above one", _set("methods.kd.alpha", 1.5), r"methods\.kd\.alpha: must be in \[0\.0, 1\.0\]"),
    ("alpha below zero", _set("methods.kd.alpha", -0.1), r"methods\.kd\.alpha: must be in \[0\.0, 1\.0\]"),
    ("zero teacher epochs", _set("teacher.training.epochs", 0), r"teacher\.training\.epochs: must be > 0"),
    ("negative student epochs", _set("student.training.epochs", -1), r"student\.training\.epochs: must be > 0"),
    ("bad optimizer", _set("student.training.optimizer", "rmsprop"), r"student\.training\.optimizer: unknown value 'rmsprop'; allowed values: \['adam', 'sgd'\]"),
    ("bad schedule", _set("teacher.training.schedule", "step"), r"teacher\.training\.schedule: unknown value 'step'; allowed values: \['cosine', 'constant'\]"),
    ("unknown training key", _set("teacher.training.learning_rate", 0.1), r"teacher\.training\.learning_rate: unknown key"),
    ("empty seeds", _set("seeds", []), r"seeds: must be a non-empty list"),
    ("missing seeds", lambda c: c.pop("seeds"), r"seeds: must be a non-empty list"),
    ("duplicate seeds", _set("seeds", [0, 1, 0]), r"seeds: seeds must be distinct"),
    ("negative seed", _set("seeds", [0, -1]), r"seeds: every seed must be a non-negative integer"),
    ("missing student layer", _set("methods.fitnet.student_layer", "hidden.3"), r"methods\.fitnet\.student_layer: layer 'hidden\.3' does not exist in the student.*available layers:.*'hidden\.0'"),
    ("missing teacher layer", _set("methods.rkd.teacher_layer", "embed.9"), r"methods\.rkd\.teacher_layer: layer 'embed\.9' does not exist in the teacher.*available layers:.*'embed\.0'"),
    ("teacher-only layer on student", _set("methods.fitnet.student_layer", "embed.0"), r"methods\.fitnet\.student_layer: layer 'embed\.0' does not exist in the student.*'hidden\.0'"),
    ("layer not set", _set("methods.rkd", {"teacher_layer": "embed.0"}), r"methods\.rkd\.student_layer: required"),
    ("baseline not in methods", _set("comparison.baselines", ["ce", "dkd"]), r"comparison\.baselines: 'dkd' is not one of the study's methods"),
    ("unknown correction", _set("comparison.correction", "sidak"), r"comparison\.correction: unknown value 'sidak'; allowed values: \['holm', 'bh', 'none'\]"),
    ("negative latency limit", _set("recommendation.max_latency_ms", -1.0), r"recommendation\.max_latency_ms"),
    ("unknown recommendation key", _set("recommendation.max_memory", 1.0), r"recommendation\.max_memory: unknown key"),
    ("swept value out of range", _set("methods.kd.sweep", {"temperature": [1.0, -2.0]}), r"methods\.kd\.temperature: must be > 0"),
    ("empty sweep list", _set("methods.kd.sweep", {"temperature": []}), r"methods\.kd\.sweep\.temperature: must be a non-empty list"),
    ("label fraction out of range", _set("grid.label_fractions", [0.0, 1.0]), r"grid\.label_fractions: every fraction must be in \(0, 1\]"),
    ("unknown grid key", _set("grid.teachers", {}), r"grid\.teachers: unknown key"),
    ("unknown grid student model", _set("grid.students", {"small": {"name": "transformer"}}), r"grid\.students\.small\.name: unknown model 'transformer'"),
    ("bad confidence", _set("comparison.confidence", 1.0), r"comparison\.confidence: must be in \(0, 1\)"),
    ("unknown top-level key", _set("trainer", {}), r"trainer: unknown top-level parameter; allowed keys: \[.*'data'.*'methods'"),
    ("no methods", _set("methods", {}), r"methods: at least one method is required"),
    ("missing section", lambda c: c.pop("student"), r"student: missing or not a mapping"),
    ("bad evaluation", _set("evaluation.ece_bins", 0), r"evaluation\.ece_bins: must be > 0"),
    ("bad tracking type", _set("tracking.enabled", "yes"), r"tracking\.enabled: expected bool"),
]


def test_valid_base_config_passes():
    study = validate_study(base_config())
    assert isinstance(study, StudyConfig)
    assert [entry.key for entry in study.methods] == ["ce", "kd", "fitnet", "rkd"]
    assert study.seeds == (0, 1)
    assert study.teacher_spec == {"name": "cnn", "in_shape": [1, 8, 8], "num_classes": 10, "channels": [8, 16], "embed": 32}
    assert study.student_spec["hidden"] == [16]
    assert study.methods[1].config.temperature == 4.0
    assert study.comparison.baselines == ("ce", "kd")


def test_base_config_is_not_mutated():
    config = base_config()
    snapshot = copy.deepcopy(config)
    validate_study(config)
    assert config == snapshot


def test_named_method_entry_passes():
    config = base_config()
    config["methods"]["kd_t8"] = {"method": "kd", "temperature": 8.0}
    study = validate_study(config)
    entry = study.methods[-1]
    assert (entry.key, entry.method, entry.config.temperature) == ("kd_t8", "kd", 8.0)


@pytest.mark.parametrize("mutate, message", [case[1:] for case in BAD_CONFIGS], ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_names_the_key(mutate, message):
    config = copy.deepcopy(base_config())
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        validate_study(config)
