"""search -> finalists -> confirmation: what the comparison reads in a study with a ``search:`` section."""

from kedro.pipeline import Pipeline, node

from distillation_studies.pipelines.validated_params import with_validated_params
from distillation_studies.study.schema import StudyConfig

from .nodes import confirm_finalists, search_methods

TRAINING_INPUTS = ["teacher_model", "model_input", "data_summary", "params:student.model", "params:student.training", "params:methods", "params:search"]


def create_pipeline(study: StudyConfig) -> Pipeline:
    if study.search is None:
        return Pipeline([])
    return with_validated_params(
        Pipeline(
            [
                node(
                    search_methods,
                    [*TRAINING_INPUTS, "search_storage", "search_tracking"],
                    ["search_trials", "search_events", "search_finalists"],
                    name="search_methods",
                    tags="search",
                ),
                node(
                    confirm_finalists,
                    [*TRAINING_INPUTS, "params:comparison", "params:evaluation", "search_finalists", "search_tracking"],
                    ["study_runs", "run_details", "study_histories"],
                    name="confirm_finalists",
                    tags="confirmation",
                ),
            ]
        ),
        study,
    )
