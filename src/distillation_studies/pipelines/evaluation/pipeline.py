"""Teacher evaluation and capacity diagnostics, plus one namespaced evaluation per (arm, seed).

Every student is evaluated on the full test split, whatever labelled fraction it trained on.
"""

from kedro.pipeline import Pipeline, node

from distillation_studies.pipelines.validated_params import with_validated_params
from distillation_studies.study.identity import student_runs
from distillation_studies.study.schema import StudyConfig

from .nodes import diagnose_capacity_gap, evaluate_student, evaluate_teacher


def student_evaluation_template() -> Pipeline:
    return Pipeline(
        [
            node(
                evaluate_student,
                ["model", "last_model", "teacher_model", "model_input", "history", "params:evaluation"],
                "metrics",
                name="evaluate_student",
            )
        ],
        tags="students",
    )


def create_pipeline(study: StudyConfig) -> Pipeline:
    teacher = Pipeline(
        [
            node(
                evaluate_teacher,
                ["teacher_model", "teacher_last_model", "model_input", "teacher_history", "params:evaluation"],
                "teacher_metrics",
                name="evaluate_teacher",
            ),
            node(
                diagnose_capacity_gap,
                [
                    "teacher_model",
                    "teacher_metrics",
                    "model_input",
                    "data_summary",
                    "params:student",
                    "params:grid",
                    "params:methods",
                ],
                "capacity_report",
                name="diagnose_capacity_gap",
            ),
        ],
        tags="teacher",
    )
    template = student_evaluation_template()
    students = [
        Pipeline(
            template,
            namespace=run.namespace,
            inputs={"teacher_model", "model_input"},
            parameters={"params:evaluation": "params:evaluation"},
        )
        for run in student_runs(study.arms, study.seeds)
    ]
    return with_validated_params(sum(students, teacher), study)
