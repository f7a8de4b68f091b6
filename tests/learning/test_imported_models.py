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


# ---- an imported teacher's inputs ---------------------------------------------------------------------


class Recorder(torch.nn.Module):
    """Returns what it was fed: the inputs an imported teacher would see."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _pipeline(**inputs) -> dict:
    from distillation_studies.learning.imported import TeacherInputs

    return TeacherInputs(**inputs).pipeline((1, 2, 2), {"mean": [0.5], "std": [0.25]})


def test_the_teacher_is_fed_its_own_scale_channels_and_normalisation():
    from distillation_studies.learning.imported import attach_input_pipeline

    teacher = attach_input_pipeline(Recorder(), _pipeline(channels=3, scale=255, mean=[100.0, 110.0, 120.0], std=[50.0, 50.0, 50.0]))
    study_inputs = torch.tensor([[[[-2.0, 0.0], [2.0, 1.0]]]])  # normalised by the study: pixels 0, 0.5, 1, 0.75
    fed = teacher(study_inputs)
    pixels = torch.tensor([[0.0, 127.5], [255.0, 191.25]])  # x * 0.25 + 0.5, in bytes
    expected = torch.stack([(pixels - m) / 50.0 for m in (100.0, 110.0, 120.0)]).unsqueeze(0)
    torch.testing.assert_close(fed, expected)
    assert teacher.spec["input_pipeline"]["channels"] == 3
    assert teacher(torch.zeros(2, 3, 2, 2)).abs().sum() == 0  # a probe already in the teacher's shape passes as it is


def test_resize_to_gray_and_the_studys_own_normalisation():
    from distillation_studies.learning.imported import InputPipeline, describe_inputs

    pipeline = InputPipeline({**_pipeline(size=[4, 4]), "study_shape": [3, 2, 2], "study_mean": [0.5] * 3, "study_std": [0.25] * 3, "channels": 1, "mean": [0.5], "std": [0.25]})
    constant = torch.full((1, 3, 2, 2), 2.0)  # pixels 1.0 in every channel: gray 0.299 + 0.587 + 0.114 = 1
    torch.testing.assert_close(pipeline.forward(constant), torch.full((1, 1, 4, 4), 2.0))
    assert describe_inputs(_pipeline()) == "1 channel(s) of 2x2 pixels in [0, 1], normalised with mean [0.5] and std [0.25]"


def test_a_saved_imported_teacher_is_rebuilt_with_its_inputs(tmp_path):
    from distillation_studies.learning.imported import attach_input_pipeline

    teacher = build_model(make_spec(TINY_NET, (3, 4, 4), 10, "teacher.model"))
    attach_input_pipeline(teacher, {**_pipeline(channels=3, size=[4, 4]), "study_shape": [1, 2, 2]})
    saved = TorchModelDataset(filepath=str(tmp_path / "teacher.pt"))
    saved.save(teacher)
    loaded = saved.load()
    study_inputs = torch.randn(5, 1, 2, 2)
    torch.testing.assert_close(loaded.eval()(study_inputs), teacher.eval()(study_inputs))
    assert loaded.spec["input_pipeline"] == teacher.spec["input_pipeline"]


def test_checkpoint_inputs_size_the_teacher_and_each_mistake_names_its_key():
    config = _study_with_own_models()
    config["teacher"]["checkpoint"] = {"path": "t.pt", "inputs": {"size": [16, 16], "channels": 3, "scale": 255}, "min_val_accuracy": 0.9}
    study = validate_study(config)
    assert study.teacher.spec["in_shape"] == [3, 16, 16] and study.teacher.checkpoint == "t.pt"
    assert study.teacher.min_val_accuracy == 0.9 and study.teacher.checkpoint_inputs.scale == 255
    for inputs, message in [
        ({"channels": 2}, r"teacher\.checkpoint\.inputs\.channels: 1, 3 or null"),
        ({"size": [0, 4]}, r"teacher\.checkpoint\.inputs\.size: must be \[height, width\]"),
        ({"mean": [0.5]}, r"teacher\.checkpoint\.inputs: mean and std are both 'study' or both lists"),
        ({"mean": [0.5], "std": [0.0]}, r"teacher\.checkpoint\.inputs\.std: every value must be > 0"),
        ({"resize": [4, 4]}, r"teacher\.checkpoint\.inputs\.resize: unknown key"),
    ]:
        config["teacher"]["checkpoint"] = {"path": "t.pt", "inputs": inputs}
        with pytest.raises(ConfigError, match=message):
            validate_study(config)
    config["teacher"]["checkpoint"] = {"path": "t.pt", "min_val_accuracy": 1.5}
    with pytest.raises(ConfigError, match=r"teacher\.checkpoint\.min_val_accuracy: an accuracy in \[0, 1\]"):
        validate_study(config)


def test_an_imported_teacher_is_scored_on_its_own_inputs_printed_and_flagged_below_its_floor(tmp_path, caplog):
    """A teacher trained elsewhere on 3-channel byte images with its own normalisation: imported with
    those inputs it scores what its own script measures; the floor flags it in its history."""
    from distillation_studies.learning.data import SplitConfig, load_embedded, normalisation_stats, normalise, stratified_split
    from distillation_studies.learning.imported import TeacherInputs
    from distillation_studies.learning.methods import build_method, parse_method_config
    from distillation_studies.learning.training import TrainConfig, accuracy, predict, train
    from distillation_studies.pipelines.teacher.nodes import train_teacher
    from distillation_studies.study.schema import ModelSection

    full = load_embedded("digits")
    splits = stratified_split({"x": full["x"][:600], "y": full["y"][:600]}, SplitConfig(0.2, 0.2, 0))
    own = {k: {"x": (s["x"].repeat(1, 3, 1, 1) * 255 - 40.0) / 60.0, "y": s["y"]} for k, s in splits.items()}  # "its own script"
    spec = make_spec(TINY_NET, (3, 8, 8), 10, "teacher.model")
    torch.manual_seed(0)
    elsewhere = build_model(spec)
    ce = build_method("ce", parse_method_config("ce", {}, "teacher"), elsewhere, None, len(own["train"]["y"]))
    train(elsewhere, ce, own["train"], own["val"], TrainConfig(epochs=4, batch_size=32, lr=3e-2), seed=0)
    its_own_accuracy = accuracy(predict(elsewhere, own["val"]["x"]).logits, own["val"]["y"])
    torch.save(elsewhere.state_dict(), tmp_path / "teacher.pt")

    stats = normalisation_stats(splits["train"]["x"])
    model_input = {k: {"x": normalise(s["x"], stats), "y": s["y"]} for k, s in splits.items()}
    summary = {"input_shape": [1, 8, 8], "num_classes": 10, "normalisation": stats}
    inputs = TeacherInputs(channels=3, scale=255, mean=[40.0] * 3, std=[60.0] * 3)
    section = ModelSection(spec, TrainConfig(), 0, str(tmp_path / "teacher.pt"), inputs, min_val_accuracy=0.999)
    with caplog.at_level("INFO", logger="distillation_studies.pipelines.teacher.nodes"):
        teacher, _, history = train_teacher(model_input, summary, section)
    scored = history["summary"]["best_val_accuracy"]
    assert scored == pytest.approx(its_own_accuracy, abs=1e-6) and scored > 0.2  # ten classes: chance is 0.1
    assert f"validation accuracy {scored:.4f}; it is fed 3 channel(s) of 8x8 pixels in [0, 255], normalised with mean [40, 40, 40] and std [60, 60, 60]" in caplog.text
    assert history["summary"]["below_floor"].startswith(
        f"imported teacher's validation accuracy {scored:.4f} is below teacher.checkpoint.min_val_accuracy 0.999: check teacher.checkpoint.inputs"
    )
