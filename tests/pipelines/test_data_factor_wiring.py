"""The DAG of a study with a transfer set and label noise: which splits each arm and the teacher read."""

from __future__ import annotations

from distillation_studies.pipelines.data_processing import create_pipeline as data_pipeline
from distillation_studies.pipelines.distillation import create_pipeline as distillation_pipeline
from distillation_studies.pipelines.teacher import create_pipeline as teacher_pipeline
from distillation_studies.study.schema import StudyConfig, validate_study
from tests.study.test_schema import base_config


def study(grid: dict, data: dict | None = None) -> StudyConfig:
    params = base_config()
    params["grid"] = grid
    params["data"].update(data or {})
    return validate_study(params)


def _inputs_of(pipeline, namespace: str) -> set[str]:
    return {name for n in pipeline.nodes if n.namespace == namespace for name in n.inputs}


def test_each_arm_reads_the_splits_of_its_data_cell():
    cells = study({"label_fractions": [0.2, 1.0], "transfer_set": [True], "label_noise": [0.0, 0.3]})
    made = data_pipeline(cells).all_outputs()
    assert {"model_input_noise_30", "model_input_labels_20_transfer", "model_input_noise_30_labels_20_transfer"} <= made
    students = distillation_pipeline(cells)
    assert "model_input_noise_30_labels_20_transfer" in _inputs_of(students, "students.kd__labels_20__transfer__noise_30.seed_0")
    assert "model_input_labels_20_transfer" in _inputs_of(students, "students.ce__labels_20__transfer__noise_0.seed_1")
    assert "model_input_noise_30" in _inputs_of(students, "students.kd__labels_100__noise_30.seed_0")
    assert "model_input" in teacher_pipeline(cells).inputs()  # teacher_labels: clean


def test_a_noisy_teacher_reads_the_noisy_splits():
    noisy = study({"label_noise": [0.0, 0.3]}, {"teacher_labels": "noisy"})
    teacher_inputs = teacher_pipeline(noisy).inputs()
    assert "model_input_noise_30" in teacher_inputs and "model_input" not in teacher_inputs
