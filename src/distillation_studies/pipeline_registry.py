"""Project pipelines, each built for the validated study; ``__default__`` runs the whole study.

Not ``find_pipelines``: it calls every ``create_pipeline()`` with no arguments, and these builders
take the study explicitly. This is the one place that obtains it (``config_loader.session_parameters``).
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from distillation_studies.config_loader import session_parameters
from distillation_studies.pipelines import comparison, data_processing, distillation, evaluation, teacher
from distillation_studies.study.schema import validate_study

PIPELINES = {
    "data_processing": data_processing,
    "teacher": teacher,
    "distillation": distillation,
    "evaluation": evaluation,
    "comparison": comparison,
}


def register_pipelines() -> dict[str, Pipeline]:
    study = validate_study(session_parameters())  # a bad config fails here, before any node runs
    pipelines = {name: module.create_pipeline(study) for name, module in PIPELINES.items()}
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
