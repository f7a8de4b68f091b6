"""One namespaced pipeline per (method, seed), all built from one template and sharing one teacher."""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from distillation_studies.study import student_namespace, study_config

from .nodes import distil_student

SHARED_INPUTS = {"teacher_model", "model_input", "data_summary"}


def student_template(method_key: str, seed: int) -> Pipeline:
    distil = update_wrapper(partial(distil_student, method_key=method_key, seed=seed), distil_student)
    return Pipeline(
        [
            node(
                distil,
                ["teacher_model", "model_input", "data_summary", "params:student", "params:method"],
                ["model", "last_model", "history"],
                name="distil_student",
            )
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    study = study_config()
    return sum(
        (
            Pipeline(
                student_template(entry.key, seed),
                namespace=student_namespace(entry.key, seed),
                inputs=SHARED_INPUTS,
                parameters={"params:student": "params:student", "params:method": f"params:methods.{entry.key}"},
            )
            for entry in study.methods
            for seed in study.seeds
        ),
        Pipeline([]),
    )
