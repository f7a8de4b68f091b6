"""Logged students are MLflow models a user can load without the project, and the registry marks the pick.

A tiny student is trained by the project's own loop, evaluated by the project's own evaluation, and
logged into a temporary sqlite store. A separate Python (``-I -S``: no PYTHONPATH, no site .pth files, so
not even the project's editable install) then loads it with ``mlflow.pyfunc.load_model`` and must get the
logged test accuracy back from the *raw* test images, which it normalises nowhere itself.
"""

from __future__ import annotations

import json
import os
import tempfile
import subprocess
import sys
import sysconfig
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.entities import Param

from distillation_studies.common.config import parse_dataclass
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning import data
from distillation_studies.learning.evaluation import evaluate_model
from distillation_studies.learning.export import first_images, for_raw_images
from distillation_studies.tracking.models import (
    _global_tracking_uri,
    RECOMMENDED_ALIAS,
    log_classifier,
    logged_model_id,
    register_recommended,
    recommended_alias,
    registry_runs,
)
from distillation_studies.pipelines.data_processing.nodes import split_images
from distillation_studies.pipelines.teacher.nodes import train_teacher
from distillation_studies.study.schema import DataConfig, TrackingConfig, parse_model_section

DATA = DataConfig(dataset="digits", val_fraction=0.1, test_fraction=0.2, split_seed=0, normalisation="train")
STUDENT = {"seed": 0, "model": {"name": "mlp", "hidden": [32]}, "training": {"epochs": 6, "batch_size": 32, "lr": 0.01}}

# Runs in the bare interpreter: only what site-packages holds (torch, mlflow), read without .pth files.
LOAD_AND_SCORE = """
import json, sys
site_packages, uri, run_id, model_uri, raw_path = sys.argv[1:]
sys.path.append(site_packages)
try:
    import distillation_studies
    project_importable = True
except ImportError:
    project_importable = False
import numpy as np, mlflow
from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION
assert MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get() is False  # loaded as the README says: no unpickling
mlflow.set_tracking_uri(uri)
raw = np.load(raw_path)
probabilities = mlflow.pyfunc.load_model(f"runs:/{run_id}/ce-seed_0").predict(raw["x"])  # README: by its name
by_id = mlflow.pyfunc.load_model(model_uri).predict(raw["x"][:5])
accuracy = float((probabilities.argmax(axis=1) == raw["y"]).mean())
try:
    mlflow.pyfunc.load_model(model_uri).predict(raw["x"][:5] * 16)  # digits on their 0..16 scale
    wrong_scale = "accepted"
except Exception as error:
    wrong_scale = f"{type(error).__name__}: {error}"
logged = mlflow.MlflowClient(uri).get_run(run_id).data.metrics["test/accuracy"]
print(json.dumps({"project_importable": project_importable, "accuracy": accuracy, "logged": logged,
                  "shape": list(probabilities.shape), "wrong_scale": wrong_scale, "same_by_id": bool(np.allclose(by_id, probabilities[:5], atol=1e-6)), "row_sums": probabilities.sum(axis=1).round(5).tolist()[:3]}))
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A temp tracking store with one run holding a trained student as an MLflow model and its test accuracy."""
    root = tmp_path_factory.mktemp("mlflow_models")
    images = data.load_embedded("digits")
    model_input, summary = split_images(images, DATA)
    best, last, history = train_teacher(model_input, summary, parse_model_section(STUDENT, "teacher", summary))
    metrics = evaluate_model(best, last, model_input["test"], None, history["summary"], latency_repeats=1, throughput_batch=8)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("students", artifact_location=(root / "artifacts").as_uri())
    run_id = client.create_run(experiment, run_name="ce/seed_0").info.run_id
    client.log_metric(run_id, "test/accuracy", metrics["test_accuracy"])
    model_uri = log_classifier(client, run_id, best, summary, first_images(model_input["val"], 8), name="ce-seed_0")
    # The raw test split: the same stratified split of the un-normalised images (data.load_embedded).
    raw_test = data.stratified_split(images, DATA.split())["test"]
    raw_path = root / "raw_test.npz"
    np.savez(raw_path, x=raw_test["x"].numpy(), y=raw_test["y"].numpy())
    return {"root": root, "uri": uri, "client": client, "experiment": experiment, "run_id": run_id,
            "model_uri": model_uri, "metrics": metrics, "raw_path": raw_path, "model": best, "summary": summary,
            "model_input": model_input}


def test_logged_student_predicts_from_raw_images_without_the_project(study):
    site_packages = sysconfig.get_paths()["purelib"]
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LOAD_AND_SCORE, site_packages, study["uri"], study["run_id"], study["model_uri"], str(study["raw_path"])],
        cwd=study["root"], capture_output=True, text=True, timeout=900,
        env={**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scored = json.loads(result.stdout.strip().splitlines()[-1])
    assert scored["project_importable"] is False
    assert scored["shape"] == [study["summary"]["sizes"]["test"], 10]
    assert scored["same_by_id"]
    assert scored["row_sums"] == [1.0, 1.0, 1.0]  # class probabilities
    assert scored["accuracy"] == pytest.approx(study["metrics"]["test_accuracy"], abs=1e-9)
    assert scored["logged"] == pytest.approx(scored["accuracy"], abs=1e-9)
    assert scored["accuracy"] > 0.5  # trained, so the comparison above is not between two chance levels
    assert scored["wrong_scale"].startswith("RuntimeError: raw pixels must lie in [0, 1]"), scored["wrong_scale"]  # not classified


def test_logged_model_is_a_ready_model_of_its_run_with_signature_and_example(study):
    client, run_id = study["client"], study["run_id"]
    model_id = study["model_uri"].removeprefix("models:/")
    logged = client.get_logged_model(model_id)
    assert (logged.name, logged.source_run_id, logged.experiment_id) == ("ce-seed_0", run_id, study["experiment"])
    assert str(logged.status) in ("READY", "LoggedModelStatus.READY")
    assert [m.model_id for m in client.get_run(run_id).outputs.model_outputs] == [model_id]
    artifacts = {a.path for a in client.list_logged_model_artifacts(model_id)}
    assert {"MLmodel", "input_example.json", "data"} <= artifacts
    mlmodel = yaml.safe_load(Path(logged.artifact_location.removeprefix("file://"), "MLmodel").read_text())
    assert mlmodel["flavors"]["pytorch"]["model_data"] == "data"
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow.pytorch"
    assert mlmodel["flavors"]["python_function"]["model_config"] == {"device": "cpu"}  # loads on GPU machines too
    assert json.loads(mlmodel["signature"]["inputs"]) == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1, 8, 8]}}]
    assert mlmodel["metadata"]["normalisation"] == study["summary"]["normalisation"]
    assert mlmodel["metadata"]["classes"] == [str(d) for d in range(10)]

def test_recommended_student_gets_the_alias_and_every_candidate_a_version(study):
    client, experiment = study["client"], study["experiment"]
    summary, model, examples = study["summary"], study["model"], first_images(study["model_input"]["val"], 4)
    runs = [study["run_id"]]
    for name in ("kd/seed_0", "dkd/seed_0"):
        run_id = client.create_run(experiment, run_name=name, tags={"study_run": "parent-1"}).info.run_id
        for key, value in zip(("arm", "method", "seed"), (name.split("/")[0], name.split("/")[0], "0")):
            client.log_param(run_id, key, value)
        log_classifier(client, run_id, model, summary, examples)
        runs.append(run_id)
    versions = register_recommended(client, "digits-students", recommended_run_id=runs[1], candidate_run_ids=runs)
    assert versions == {runs[0]: "1", runs[1]: "2", runs[2]: "3"}
    picked = client.get_model_version_by_alias("digits-students", RECOMMENDED_ALIAS)
    assert (str(picked.version), picked.run_id) == ("2", runs[1])
    # The registry page says which arm a version is, without opening its run.
    assert picked.tags == {"arm": "kd", "method": "kd", "seed": "0", "study_run": "parent-1"}
    assert picked.description == "kd/seed_0 of study run parent-1"
    assert picked.source == f"models:/{logged_model_id(client, runs[1])}"
    assert {client.get_model_version("digits-students", v).source for v in versions.values()} == {
        f"models:/{logged_model_id(client, run)}" for run in runs
    }
    # A later study adds versions to the same registered model and moves the alias.
    again = register_recommended(client, "digits-students", recommended_run_id=runs[2], candidate_run_ids=[runs[2]])
    assert again == {runs[2]: "4"}
    assert str(client.get_model_version_by_alias("digits-students", RECOMMENDED_ALIAS).version) == "4"


def test_registering_a_run_without_a_model_names_the_run(study):
    client = study["client"]
    bare = client.create_run(study["experiment"], run_name="no-model").info.run_id
    with pytest.raises(MlflowException, match=f"run {bare} logged no MLflow model"):
        register_recommended(client, "digits-students-bare", recommended_run_id=bare, candidate_run_ids=[bare])


def test_register_key_names_a_valid_registered_model():
    assert parse_dataclass(TrackingConfig, {"register": "digits-students"}, "tracking").register == "digits-students"
    assert parse_dataclass(TrackingConfig, {}, "tracking").register is None
    for bad in ("a/b", "run:1", " padded", "", 3):
        with pytest.raises(ConfigError, match=r"^tracking\.register: "):
            parse_dataclass(TrackingConfig, {"register": bad}, "tracking")


def test_each_candidate_is_registered_through_its_best_validation_seed_and_the_first_ranked_is_recommended():
    recommendation = {
        "ranked": [
            {"candidate": "kd", "run_ids": ["kd0", "kd1", "kd2"]},
            {"candidate": "ce", "run_ids": ["ce0", "ce1"]},
            {"candidate": "untracked", "run_ids": []},
        ]
    }
    val = {"kd0": 0.91, "kd1": 0.95, "kd2": 0.93, "ce0": 0.90, "ce1": 0.89}
    assert registry_runs(recommendation, val) == ("kd1", ["kd1", "ce0"])
    with pytest.raises(ValueError, match="tracking.register"):
        registry_runs({"ranked": [{"candidate": "kd", "run_ids": []}]}, val)


def test_one_alias_per_data_cell_and_the_plain_alias_for_a_study_of_one_cell():
    assert recommended_alias("") == RECOMMENDED_ALIAS == "recommended"
    assert recommended_alias("labels_10__transfer") == "recommended_labels_10__transfer"


def test_each_data_cell_gets_its_own_alias_and_no_pick_spans_cells(study):
    """tracking.register on a two-cell recommendation: each cell's first-ranked candidate gets
    ``recommended_<cell key>``; no bare ``recommended`` points at one cell's pick for everyone."""
    from distillation_studies.tracking.hooks import _register
    from distillation_studies.tracking.runs import StudyRun

    client, experiment = study["client"], study["experiment"]
    examples = first_images(study["model_input"]["val"], 4)
    runs = {}
    for name, val in (("kd__labels_100/seed_0", 0.97), ("ce__labels_10__transfer/seed_0", 0.80), ("kd__labels_10__transfer/seed_0", 0.9)):
        run_id = client.create_run(experiment, run_name=name).info.run_id
        client.log_metric(run_id, "val/best_accuracy", val)
        log_classifier(client, run_id, study["model"], study["summary"], examples)
        runs[name.split("/")[0]] = run_id
    record = {"cells": [
        {"key": "labels_100", "description": "all labels",
         "ranked": [{"candidate": "kd__labels_100", "run_ids": [runs["kd__labels_100"]]}]},
        {"key": "labels_10__transfer", "description": "10% labels + transfer set",
         "ranked": [{"candidate": "kd__labels_10__transfer", "run_ids": [runs["kd__labels_10__transfer"]]},
                    {"candidate": "ce__labels_10__transfer", "run_ids": [runs["ce__labels_10__transfer"]]}]},
    ]}
    _register(StudyRun(study["uri"], experiment, "parent", "hash", "v", register="per-cell-students"), record)
    assert client.get_model_version_by_alias("per-cell-students", "recommended_labels_100").run_id == runs["kd__labels_100"]
    tenth = client.get_model_version_by_alias("per-cell-students", "recommended_labels_10__transfer")
    assert tenth.run_id == runs["kd__labels_10__transfer"]
    assert set(client.get_registered_model("per-cell-students").aliases) == {"recommended_labels_100", "recommended_labels_10__transfer"}
    assert len(client.search_model_versions("name='per-cell-students'")) == 3  # every ranked candidate of every cell


def _student_like(activation: type[torch.nn.Module], seed: int) -> torch.nn.Module:
    """A small classifier of 8x8 images with an architecture spec, as ``build_model`` gives."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), activation(), torch.nn.Linear(16, 10))
    model.spec = {"name": "mlp", "hidden": [16], "in_shape": [1, 8, 8], "num_classes": 10}
    return model


def _logged(client, experiment, model, summary, examples, name):
    run_id = client.create_run(experiment, run_name=name).info.run_id
    model_id = log_classifier(client, run_id, model, summary, examples, name=name).split("/")[-1]
    with _global_tracking_uri(client.tracking_uri):
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{model_id}", dst_path=tempfile.mkdtemp()))
    return model_id, local


def _predicted(client, model_id, images):
    with _global_tracking_uri(client.tracking_uri):
        return mlflow.pyfunc.load_model(f"models:/{model_id}").predict(images.numpy())


def test_a_model_written_from_an_earlier_trace_is_the_model_a_fresh_export_gives(study, monkeypatch):
    """Arms of one architecture reuse one torch.export trace with their own weights: what a user loads
    (files, MLmodel, predictions) is what a fresh export of that arm would give."""
    from distillation_studies.tracking import models

    client, summary = study["client"], study["summary"]
    examples = first_images(study["model_input"]["val"], 8)
    images = torch.from_numpy(np.load(study["raw_path"])["x"][:16])
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")  # loaded as the README says
    monkeypatch.setattr(models, "_exported", type(models._exported)())
    _logged(client, study["experiment"], _student_like(torch.nn.ReLU, 0), summary, examples, "first-seed_0")
    assert len(models._exported) == 1
    second = _student_like(torch.nn.ReLU, 1)
    reused_id, reused = _logged(client, study["experiment"], second, summary, examples, "second-seed_0")
    monkeypatch.setattr(models, "_exported", type(models._exported)())  # forget the trace: export afresh
    fresh_id, fresh = _logged(client, study["experiment"], second, summary, examples, "second-seed_1")

    assert sorted(p.relative_to(reused).as_posix() for p in reused.rglob("*")) == sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*"))
    own = ("run_id", "model_id", "model_uuid", "artifact_path", "utc_time_created", "model_size_bytes")
    described = [{k: v for k, v in yaml.safe_load((folder / "MLmodel").read_text()).items() if k not in own} for folder in (reused, fresh)]
    assert described[0] == described[1]
    mine = yaml.safe_load((reused / "MLmodel").read_text())
    logged = client.get_logged_model(reused_id)
    assert (mine["model_id"], mine["model_uuid"], mine["run_id"], mine["artifact_path"]) == (reused_id, reused_id, logged.source_run_id, logged.artifact_location)
    assert mine["model_size_bytes"] == yaml.safe_load((fresh / "MLmodel").read_text())["model_size_bytes"]
    for name in ("input_example.json", "serving_input_example.json", "requirements.txt"):
        assert (reused / name).read_bytes() == (fresh / name).read_bytes()
    with torch.no_grad():
        expected = for_raw_images(second, summary["normalisation"])(images)
    for model_id in (reused_id, fresh_id):
        predicted = _predicted(client, model_id, images)
        np.testing.assert_allclose(predicted, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_a_trace_that_predicts_otherwise_is_not_reused(study, monkeypatch):
    """Same spec and weight layout, another forward (tanh for relu): the earlier trace would compute the
    wrong function, so the model is exported afresh."""
    from distillation_studies.tracking import models

    client, summary = study["client"], study["summary"]
    examples = first_images(study["model_input"]["val"], 8)
    monkeypatch.setattr(models, "_exported", type(models._exported)())
    _logged(client, study["experiment"], _student_like(torch.nn.ReLU, 0), summary, examples, "relu-seed_0")
    tanh = _student_like(torch.nn.Tanh, 0)
    model_id, _ = _logged(client, study["experiment"], tanh, summary, examples, "tanh-seed_0")
    images = torch.from_numpy(np.load(study["raw_path"])["x"][:16])
    with torch.no_grad():
        expected = for_raw_images(tanh, summary["normalisation"])(images)
    predicted = _predicted(client, model_id, images)
    np.testing.assert_allclose(predicted, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_a_model_logged_with_its_runs_params_carries_its_labels_and_labelling_it_again_writes_nothing(study, monkeypatch):
    """The hooks log an arm's MLflow model once its run has every param: the model is created with them and
    with its labels (arm, method, seed, study run), so the evaluation's labelling only reads it."""
    from distillation_studies.tracking.models import label_model

    client, experiment = study["client"], study["experiment"]
    params = {"arm": "kd__labels_10", "method": "kd", "seed": "2", "training.epochs": "3"}
    run_id = client.create_run(experiment, run_name="kd__labels_10/seed_2", tags={"study_run": "parent-run"}).info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    uri = log_classifier(client, run_id, study["model"], study["summary"], first_images(study["model_input"]["val"], 4), known=(experiment, params, "parent-run"))
    model_id = uri.split("/")[-1]
    logged = client.get_logged_model(model_id)
    assert logged.params == params
    assert {k: logged.tags.get(k) for k in ("arm", "method", "seed", "study_run")} == {"arm": "kd__labels_10", "method": "kd", "seed": "2", "study_run": "parent-run"}
    writes: list[str] = []
    for name in ("log_model_params", "set_logged_model_tags"):
        monkeypatch.setattr(MlflowClient, name, lambda self, *args, name=name, **kwargs: writes.append(name))
    label_model(client, model_id, client.get_run(run_id))
    assert writes == []
    client.log_batch(run_id, params=[Param("label_fraction", "0.1")])  # a param the model lacks: written, tags kept
    label_model(client, model_id, client.get_run(run_id))
    assert writes == ["log_model_params"]
