"""One namespaced pipeline per (arm, seed), all built from one template and sharing one teacher.

An arm is a (method setting, student architecture, label fraction, transfer set, label-noise rate)
point of the study grid.
"""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from distillation_studies.pipelines.validated_params import with_validated_params
from distillation_studies.study.grid import Arm
from distillation_studies.study.identity import ArmRun, student_model_param
from distillation_studies.study.schema import StudyConfig

from .nodes import distil_student


def student_template(arm: Arm, seed: int) -> Pipeline:
    distil = update_wrapper(partial(distil_student, arm=arm, seed=seed), distil_student)
    return Pipeline(
        [
            node(
                distil,
                [
                    "teacher_model",
                    "model_input",
                    "data_summary",
                    "params:student_model",
                    "params:student_training",
                    "params:method",
                ],
                ["model", "last_model", "history"],
                name="distil_student",
            )
        ],
        tags="students",
    )


def create_pipeline(study: StudyConfig) -> Pipeline:
    arms = sum(
        (
            Pipeline(
                student_template(arm, seed),
                namespace=ArmRun(arm.key, seed).namespace,
                inputs={
                    "teacher_model": "teacher_model",
                    "data_summary": "data_summary",
                    "model_input": arm.cell.dataset,
                },
                parameters={
                    "params:student_model": student_model_param(arm),
                    "params:student_training": "params:student.training",
                    "params:method": f"params:methods.{arm.method_key}",
                },
            )
            for arm in study.arms
            for seed in study.seeds
        ),
        Pipeline([]),
    )
    return with_validated_params(arms, study)
