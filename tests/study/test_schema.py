"""validate_study: a table of bad configs, each failing with a ConfigError that names the key."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from distillation_studies.common.errors import ConfigError, DataError
from distillation_studies.study.schema import StudyConfig, validate_study
from distillation_studies.learning.training import SCHEDULES


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
    ("unknown dataset", _set("data.dataset", "svhn"), r"data\.dataset: unknown dataset 'svhn'.*digits.*mnist5k.*'cifar100'.*'image_folder'"),
    ("bad normalisation", _set("data.normalisation", "zscore"), r"data\.normalisation: unknown value 'zscore'; allowed values: \['standard', 'train'\]"),
    ("download of embedded data", _set("data.download", True), r"data\.download: only applies to the torchvision datasets"),
    ("image size of embedded data", _set("data.image_size", 32), r"data\.image_size: only applies to dataset: image_folder"),
    ("bad val fraction", _set("data.val_fraction", 0.0), r"data\.val_fraction: must be in \(0, 1\)"),
    ("streaming embedded data", _set("data.in_memory", False), r"data\.in_memory: false only applies to the torchvision datasets; digits"),
    ("in_memory not a bool", _set("data.in_memory", "no"), r"data\.in_memory: expected bool, got 'no'"),
    ("negative loader workers", _set("student.training.workers", -1), r"student\.training\.workers: must be >= 0, got -1"),
    ("fractional loader workers", _set("teacher.training.workers", 1.5), r"teacher\.training\.workers: expected int, got 1\.5"),
    ("negative teacher cache", _set("student.training.teacher_cache_gb", -1), r"student\.training\.teacher_cache_gb: must be >= 0"),
    ("unknown evaluation device", _set("evaluation.device", "gpu"), r"evaluation\.device: unknown value 'gpu'; allowed values: \['auto', 'cpu', 'cuda', 'mps'\]"),
    ("negative evaluation workers", _set("evaluation.workers", -2), r"evaluation\.workers: must be >= 0, got -2"),
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
    ("bad schedule", _set("teacher.training.schedule", "step"), r"teacher\.training\.schedule: unknown value 'step'; allowed values: \['cosine', 'constant'"),
    ("unknown training key", _set("teacher.training.learning_rate", 0.1), r"teacher\.training\.learning_rate: unknown key"),
    ("empty seeds", _set("seeds", []), r"seeds: must be a non-empty list"),
    ("missing seeds", lambda c: c.pop("seeds"), r"seeds: must be a non-empty list"),
    ("duplicate seeds", _set("seeds", [0, 1, 0]), r"seeds: seeds must be distinct"),
    ("negative seed", _set("seeds", [0, -1]), r"seeds: every seed must be an integer in \[0, 4294967295\], got -1"),
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
    assert study.teacher.spec == {"name": "cnn", "in_shape": [1, 8, 8], "num_classes": 10, "channels": [8, 16], "embed": 32}
    assert study.student.spec["hidden"] == [16]
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


def test_each_parameter_key_has_one_validated_section():
    config = base_config()
    config["methods"]["kd"]["sweep"] = {"temperature": [2.0, 8.0]}
    config["grid"] = {"students": {"wide": {"name": "mlp", "hidden": [64]}}}
    study = validate_study(config)
    assert study.section("data") is study.data and study.section("recommendation") is study.constraints
    assert study.section("student.training") is study.student.training and study.section("teacher").seed == 0
    assert study.section("grid.students.wide")["in_shape"] == [1, 8, 8]  # sized to the data, like student.model
    assert study.section("grid").students == {"wide": study.section("grid.students.wide")}
    kd = study.section("methods.kd")
    assert kd.config_for({"temperature": 8.0}).temperature == 8.0 and kd.config_for({"temperature": 8.0}) is kd.configs[1]
    assert study.raw("methods.kd") == config["methods"]["kd"] and study.raw("grid.label_noise") is None
    with pytest.raises(ConfigError, match=r"^methods\.nope: no validated section"):
        study.section("methods.nope")
    with pytest.raises(ConfigError, match=r"^methods\.kd: \{'temperature': 4\.0\} is not one of its settings"):
        kd.config_for({"temperature": 4.0})


@pytest.mark.parametrize("mutate, message", [case[1:] for case in BAD_CONFIGS], ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_names_the_key(mutate, message):
    config = copy.deepcopy(base_config())
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        validate_study(config)


# --- torchvision datasets: shapes and class counts known before any file is read -----------------

CONF = Path(__file__).resolve().parents[2] / "conf"


def _with_data(data: dict[str, Any]) -> dict[str, Any]:
    config = base_config()
    config["data"] = data
    config["methods"] = {"ce": {}, "kd": {}}  # layer-free: these tests are about the data section
    return config


@pytest.mark.parametrize(
    "dataset, shape, classes",
    [("mnist", [1, 28, 28], 10), ("fashion_mnist", [1, 28, 28], 10), ("cifar10", [3, 32, 32], 10), ("cifar100", [3, 32, 32], 100)],
)
def test_torchvision_dataset_sizes_the_models_without_reading_files(tmp_path, dataset, shape, classes):
    # root is empty: validation must not need the files (they are read by the first node).
    study = validate_study(_with_data({"dataset": dataset, "root": str(tmp_path), "val_fraction": 0.1}))
    assert (study.teacher.spec["in_shape"], study.teacher.spec["num_classes"]) == (shape, classes)
    assert (study.student.spec["in_shape"], study.student.spec["num_classes"]) == (shape, classes)


def test_torchvision_dataset_ignores_test_fraction(tmp_path):
    # val + test >= 1 would leave no training split for an embedded dataset; the official test split is used instead.
    study = validate_study(_with_data({"dataset": "cifar10", "root": str(tmp_path), "val_fraction": 0.2, "test_fraction": 0.9}))
    assert study.data.test_fraction == 0.9 and study.data.train_size() == 40000


def test_image_folder_counts_class_folders_at_validation(tmp_path):
    for name in ("cat", "dog", "owl"):
        (tmp_path / "train" / name).mkdir(parents=True)
    (tmp_path / "train" / "notes.txt").write_text("not a class")
    study = validate_study(_with_data({"dataset": "image_folder", "root": str(tmp_path), "image_size": 16}))
    assert (study.teacher.spec["in_shape"], study.teacher.spec["num_classes"]) == ([3, 16, 16], 3)


def test_image_folder_without_train_folder_names_it(tmp_path):
    with pytest.raises(DataError, match=r"data\.root: " + re.escape(f"{tmp_path / 'train'} not found")):
        validate_study(_with_data({"dataset": "image_folder", "root": str(tmp_path), "image_size": 16}))
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'train'} holds no class folder")):
        validate_study(_with_data({"dataset": "image_folder", "root": str(tmp_path), "image_size": 16}))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"dataset": "image_folder"}, r"data\.image_size: required for dataset: image_folder"),
        ({"dataset": "cifar10", "image_size": 32}, r"data\.image_size: only applies to dataset: image_folder; remove it for cifar10"),
        ({"dataset": "cifar100", "val_fraction": 0.0}, r"data\.val_fraction: must be in \(0, 1\)"),
        ({"dataset": "mnist", "download": "yes"}, r"data\.download: expected bool"),
        ({"dataset": "image_folder", "image_size": 8, "download": True}, r"data\.download: image_folder cannot be downloaded"),
        ({"dataset": "cifar100", "root": ""}, r"data\.root: required"),
    ],
)
def test_bad_torchvision_data_config_names_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        validate_study(_with_data(data))


def env_params(env: str) -> dict[str, Any]:
    """conf/base with conf/<env> merged over it, as the project's config loader merges them."""
    from distillation_studies.config_loader import ENVIRONMENT_WHOLE_KEYS, merge_parameters

    params: dict[str, Any] = {}
    for path in sorted((CONF / "base").glob("parameters_*.yml")):
        params.update(yaml.safe_load(path.read_text()))
    return merge_parameters(params, yaml.safe_load((CONF / env / "parameters.yml").read_text()), ENVIRONMENT_WHOLE_KEYS)


def _without_multistep(params: dict[str, Any]) -> dict[str, Any]:
    """Until TrainConfig knows ``schedule: multistep``, check everything else of a config that uses it."""
    if "multistep" in SCHEDULES:
        return params
    for role in ("teacher", "student"):
        training = params[role]["training"]
        if training.get("schedule") == "multistep":
            training.update(schedule="constant")
            training.pop("milestones", None)
            training.pop("gamma", None)
    return params


@pytest.mark.e2e  # builds resnet32x4 / wrn_40_2 and every method's adapters: tens of seconds on a busy CPU
@pytest.mark.parametrize(
    "env, teacher, student, dkd_beta",
    [("cifar100_benchmark", "resnet32x4", "resnet8x4", 8.0), ("cifar100_benchmark_wrn", "wrn_40_2", "wrn_16_2", 6.0)],
)
def test_cifar100_benchmark_envs_validate(env, teacher, student, dkd_beta):
    study = validate_study(_without_multistep(env_params(env)))
    assert (study.teacher.spec["name"], study.student.spec["name"]) == (teacher, student)
    assert study.teacher.spec["num_classes"] == 100 and study.teacher.spec["in_shape"] == [3, 32, 32]
    assert [e.key for e in study.methods] == [
        "ce", "kd", "fitnet", "at", "rkd", "pkt", "sp", "cc", "vid", "crd", "crd_kd", "dkd", "dist", "reviewkd",
        "ickd", "wttm", "ab", "skd",
    ]
    assert study.seeds == (0, 1, 2)
    by_key = {e.key: e.config for e in study.methods}
    assert by_key["dkd"].beta == dkd_beta
    # the authors' published settings (issue 24): DIST's CIFAR run, ICKD's weight, AB's 30 init epochs
    assert (by_key["dist"].tau, by_key["dist"].beta, by_key["dist"].gamma) == (4.0, 2.0, 2.0)
    assert (by_key["ickd"].weight, by_key["ab"].init_epochs, by_key["fitnet"].regressor) == (2.5, 30, "published")
    # SKD: the authors' note for resnet32x4 -> resnet8x4 (CE 0.5, KD 0.5), their class defaults for the wrn pair
    skd = by_key["skd"]
    assert (skd.temperature, skd.tikhonov) == (4.0, 0.1)
    assert (skd.ce_weight, skd.kd_weight) == ((0.5, 0.5) if teacher == "resnet32x4" else (0.1, 0.9))
    for training in (study.teacher.training, study.student.training):
        assert (training.epochs, training.batch_size, training.optimizer) == (240, 64, "sgd")
        assert (training.lr, training.momentum, training.weight_decay) == (0.05, 0.9, 0.0005)
        assert (training.augment, training.device) == ("standard", "auto")
    raw = env_params(env)["student"]["training"]
    assert (raw["schedule"], raw["milestones"], raw["gamma"]) == ("multistep", [150, 180, 210], 0.1)
    assert (study.data.dataset, study.data.normalisation, study.data.train_size()) == ("cifar100", "standard", 45000)


def test_cifar100_smoke_env_validates():
    study = validate_study(env_params("cifar100_smoke"))
    assert study.data.dataset == "cifar100" and study.teacher.spec["num_classes"] == 100
    assert [e.key for e in study.methods] == ["ce", "kd", "fitnet"] and study.seeds == (0,)
    assert study.student.training.device == "cpu" and study.student.training.augment == "standard"


def test_grayscale_image_folder_sizes_models_for_one_channel(tmp_path):
    """An MLP student over 16x16 grayscale images reads 256 inputs, not 768 (RGB copies of one band)."""
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("L", (16, 16), 9).save(tmp_path / "train" / name / "0.png")
    data = {"dataset": "image_folder", "root": str(tmp_path), "image_size": 16}
    study = validate_study(_with_data(data))
    assert study.student.spec["in_shape"] == [1, 16, 16]
    assert validate_study(_with_data({**data, "image_channels": 3})).student.spec["in_shape"] == [3, 16, 16]
    with pytest.raises(ConfigError, match=r"data\.image_channels: 1 \(grayscale\), 3 \(RGB\) or null"):
        validate_study(_with_data({**data, "image_channels": 4}))
    with pytest.raises(ConfigError, match=r"data\.image_channels: only applies to dataset: image_folder"):
        validate_study(_with_data({"dataset": "cifar10", "root": str(tmp_path), "image_channels": 1}))
