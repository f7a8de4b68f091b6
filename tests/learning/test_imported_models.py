"""Your own nn.Module by import path: validated once with one clear error each, trained, distilled,
saved and rebuilt from its spec, and exported as the MLflow model is (torch.export)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from distillation_studies.common.errors import ConfigError
from distillation_studies.datasets import TorchModelDataset
from distillation_studies.learning.export import for_raw_images
from distillation_studies.learning.models import build_model, make_spec, model_footprint
from distillation_studies.study.schema import validate_study
from tests.learning.own_models import TinyNet
from tests.study.test_schema import base_config

OWN = "tests.learning.own_models"
TINY_NET = {"name": "import", "path": f"{OWN}:TinyNet", "kwargs": {"width": 4}}
IN_SHAPE = (1, 8, 8)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_spec_keeps_path_and_kwargs_and_rebuilds_the_class_with_the_datas_shape():
    spec = make_spec(TINY_NET, IN_SHAPE, 10, "student.model")
    assert spec == {"name": "import", "in_shape": [1, 8, 8], "num_classes": 10, "path": f"{OWN}:TinyNet", "kwargs": {"width": 4}}
    model = build_model(json.loads(json.dumps(spec)))
    assert isinstance(model, TinyNet) and model.spec == spec
    # conv 1*4*9 + 4, neck (4*4*4)*8 + 8, fc 8*10 + 10
    assert _count(model) == 40 + 520 + 90
    assert model(torch.zeros(3, *IN_SHAPE)).shape == (3, 10)
    # activations per sample: conv 4*8*8, relu 4*8*8, pool 4*4*4, neck 8, fc 10
    assert model_footprint(spec) == (650, 256 + 256 + 64 + 8 + 10)


def test_a_factory_function_with_lazy_layers_is_materialised_at_build():
    spec = make_spec({"name": "import", "path": f"{OWN}:tiny_mlp", "kwargs": {"hidden": 5}}, IN_SHAPE, 10)
    model = build_model(spec)
    assert _count(model) == 64 * 5 + 5 + 5 * 10 + 10


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"path": "my_missing_pkg.models:TinyNet"}, r"student\.model\.path: cannot import module 'my_missing_pkg\.models' \(ModuleNotFoundError"),
        ({"path": f"{OWN}:TinyNett"}, r"student\.model\.path: module 'tests\.learning\.own_models' has no attribute 'TinyNett'; its nn\.Module classes: \['FixedClasses', 'TinyNet'\]"),
        ({"path": f"{OWN}.TinyNet"}, r"student\.model\.path: must be 'package\.module:ClassName'"),
        ({"path": f"{OWN}:NOT_A_MODEL"}, r"student\.model\.path: tests\.learning\.own_models:NOT_A_MODEL is not a class or function but int"),
        ({"path": f"{OWN}:TinyNet", "kwargs": {"widht": 4}}, r"student\.model\.kwargs: tests\.learning\.own_models:TinyNet\(in_shape.*width.*\) does not accept \{'widht': 4\}: got an unexpected keyword argument 'widht'"),
        ({"path": f"{OWN}:TinyNet", "kwargs": {"width": 0}}, r"student\.model\.kwargs: .*TinyNet\(\*\*\{'width': 0, .*\}\) failed: ValueError: width must be positive, got 0"),
        ({"path": f"{OWN}:TinyNet", "kwargs": {"width": {1, 2}}}, r"student\.model\.kwargs: values must be plain"),
        ({"path": f"{OWN}:FixedClasses"}, r"student\.model: the model returns \[2, 3\] for inputs of shape \[2, 1, 8, 8\]; a classifier here must return logits of shape \(N, num_classes\) = \(N, 10\)"),
        ({"path": f"{OWN}:TinyNet", "width": 4}, r"student\.model\.width: unknown key for model 'import'; allowed keys: \['kwargs', 'path'\]"),
    ],
)
def test_each_mistake_is_one_config_error_naming_the_key(raw, message):
    config = base_config()
    config["student"]["model"] = {"name": "import", **raw}
    with pytest.raises(ConfigError, match=message):
        validate_study(config)


def _study_with_own_models() -> dict:
    config = base_config()
    config["teacher"]["model"] = {"name": "import", "path": f"{OWN}:TinyNet", "kwargs": {"width": 8}}
    config["student"]["model"] = TINY_NET
    config["methods"]["fitnet"] = {"student_layer": "neck", "teacher_layer": "neck", "weight": 0.001}
    config["methods"]["rkd"] = {"student_layer": "body.2", "teacher_layer": "neck"}
    return config


def test_feature_layers_are_the_models_module_paths():
    study = validate_study(_study_with_own_models())
    assert study.student.spec["path"] == f"{OWN}:TinyNet" and study.teacher.spec["kwargs"] == {"width": 8}
    config = _study_with_own_models()
    config["methods"]["fitnet"]["teacher_layer"] = "hidden.0"
    with pytest.raises(ConfigError, match=r"methods\.fitnet\.teacher_layer: layer 'hidden\.0' does not exist in the teacher; "
                       r"available layers: \['body', 'body\.0', 'body\.1', 'body\.2', 'neck', 'fc'\]"):
        validate_study(config)


def test_grid_students_accept_own_models():
    config = base_config()
    config["grid"] = {"students": {"own": TINY_NET, "mlp": {"name": "mlp", "hidden": [16]}}}
    config["methods"] = {"ce": {}, "kd": {}}
    assert validate_study(config).grid.students["own"]["path"] == f"{OWN}:TinyNet"
    config["grid"]["students"]["own"] = {**TINY_NET, "kwargs": {"width": -1}}
    with pytest.raises(ConfigError, match=r"grid\.students\.own\.kwargs: .*width must be positive"):
        validate_study(config)


def test_distil_save_load_and_export_an_imported_student(tmp_path):
    from distillation_studies.learning.data import SplitConfig, load_embedded, normalisation_stats, normalise, stratified_split
    from distillation_studies.learning.methods import build_method, parse_method_config
    from distillation_studies.learning.training import TrainConfig, accuracy, predict, train

    full = load_embedded("digits")
    splits = stratified_split({"x": full["x"][:600], "y": full["y"][:600]}, SplitConfig(0.2, 0.2, 0))
    stats = normalisation_stats(splits["train"]["x"])
    data = {k: {"x": normalise(s["x"], stats), "y": s["y"]} for k, s in splits.items()}
    study = validate_study(_study_with_own_models())
    torch.manual_seed(0)
    teacher, student = build_model(study.teacher.spec), build_model(study.student.spec)
    config = TrainConfig(epochs=6, batch_size=32, lr=3e-2)
    ce = build_method("ce", parse_method_config("ce", {}, "teacher"), teacher, None, len(data["train"]["y"]))
    train(teacher, ce, data["train"], data["val"], config, seed=0)
    fitnet = build_method("fitnet", parse_method_config("fitnet", study.params["methods"]["fitnet"], "fitnet"), student, teacher.eval(), 360)
    result = train(student, fitnet, data["train"], data["val"], config, seed=0, teacher=teacher)
    assert {"loss_ce", "loss_hint"} <= set(result.history[-1])  # the hint went through the student's "neck"
    assert result.history[-1]["loss_hint"] < result.history[0]["loss_hint"]
    test_accuracy = accuracy(predict(student, data["test"]["x"]).logits, data["test"]["y"])
    assert test_accuracy > 0.5  # ten classes: chance is 0.1

    saved = TorchModelDataset(filepath=str(tmp_path / "student.pt"))
    saved.save(student)
    loaded = saved.load()
    assert isinstance(loaded, TinyNet)
    torch.testing.assert_close(loaded(data["test"]["x"][:8]), student.eval()(data["test"]["x"][:8]))

    packaged = for_raw_images(loaded, stats)  # what mlflow_models.log_classifier exports
    raw = data["test"]["x"][:4] * torch.tensor(stats["std"]).view(1, -1, 1, 1) + torch.tensor(stats["mean"]).view(1, -1, 1, 1)
    program = torch.export.export(packaged, (raw,))
    torch.testing.assert_close(program.module()(raw), packaged(raw))
