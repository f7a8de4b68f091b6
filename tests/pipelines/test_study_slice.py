"""A pipeline slice on an in-memory catalog: data processing through one student's evaluation."""

import copy
from pathlib import Path

import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from distillation_studies.pipelines import data_processing, distillation, evaluation, teacher
from distillation_studies.study.schema import validate_study

CONF = Path(__file__).resolve().parents[2] / "conf"


def tiny_params() -> dict:
    """conf/base merged with conf/tiny, as `kedro run --env=tiny` sees it (one level deep is enough)."""
    params = {}
    for path in sorted((CONF / "base").glob("parameters_*.yml")):
        params.update(yaml.safe_load(path.read_text()))
    for key, value in yaml.safe_load((CONF / "tiny" / "parameters.yml").read_text()).items():
        params[key] = {**params[key], **value} if isinstance(value, dict) else value
    params["methods"] = {"ce": {}, "kd": params["methods"]["kd"]}
    params["seeds"] = [0]
    return params


@pytest.fixture
def params():
    return copy.deepcopy(tiny_params())


def catalog_for(params: dict) -> DataCatalog:
    catalog = DataCatalog()
    catalog["parameters"] = params
    for key, value in params.items():
        catalog[f"params:{key}"] = MemoryDataset(value, copy_mode="assign")
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                catalog[f"params:{key}.{sub}"] = MemoryDataset(sub_value, copy_mode="assign")
    return catalog


def test_slice_from_raw_images_to_one_students_metrics(params):
    study = validate_study(params)
    pipeline = (
        data_processing.create_pipeline(study)
        + teacher.create_pipeline(study)
        + distillation.create_pipeline(study)
        + evaluation.create_pipeline(study)
    )
    kd_arm = pipeline.to_outputs("students.kd.seed_0.metrics")
    assert {n.name for n in kd_arm.nodes} == {
        "load_images",
        "split_images",
        "train_teacher",
        "students.kd.seed_0.distil_student",
        "students.kd.seed_0.evaluate_student",
    }
    catalog = catalog_for(params)
    SequentialRunner().run(kd_arm, catalog)
    metrics = catalog["students.kd.seed_0.metrics"].load()
    assert metrics["method"] == "kd" and metrics["seed"] == 0
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["parameters"] == (64 * 16 + 16) + (16 * 10 + 10)  # mlp 64 -> 16 -> 10 on 8x8 digits
    assert metrics["training_parameters"] == metrics["parameters"]  # kd has no adapter


def test_one_template_per_arm_shares_one_teacher(params):
    params["methods"]["ce2"] = {"method": "ce"}
    params["seeds"] = [0, 1]
    pipeline = distillation.create_pipeline(validate_study(params))
    assert {n.namespace for n in pipeline.nodes} == {
        f"students.{m}.seed_{s}" for m in ("ce", "kd", "ce2") for s in (0, 1)
    }
    assert {"teacher_model", "model_input", "data_summary"} <= pipeline.inputs()
    assert "params:methods.ce2" in pipeline.inputs()
