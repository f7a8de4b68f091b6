"""Project pipelines, each built for the validated study; ``__default__`` runs the whole study.

Not ``find_pipelines``: it calls every ``create_pipeline()`` with no arguments, and these builders
take the study explicitly. This is the one place that obtains it (``config_loader.session_parameters``).

A study with a ``search:`` section replaces its grid of arms by the budgeted search and its
confirmation: ``__default__`` is data processing + teacher (and its evaluation) + search +
confirmation + the comparison and report, which read the confirmation's runs only.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from distillation_studies.config_loader import session_parameters
from distillation_studies.pipelines import comparison, data_processing, distillation, evaluation, search, teacher
from distillation_studies.study.schema import validate_study

PIPELINES = {
    "data_processing": data_processing,
    "teacher": teacher,
    "distillation": distillation,
    "evaluation": evaluation,
    "comparison": comparison,
}
STUDENT_TAG = "students"  # the grid's per-arm nodes (training, evaluation, collection), which a search replaces


def register_pipelines() -> dict[str, Pipeline]:
    study = validate_study(session_parameters())  # a bad config fails here, before any node runs
    pipelines = {name: module.create_pipeline(study) for name, module in PIPELINES.items()}
    if study.search is None:
        pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
        return pipelines
    pipelines["search"] = search.create_pipeline(study)
    grid_free = [pipelines[name] - pipelines[name].only_nodes_with_tags(STUDENT_TAG) for name in ("evaluation", "comparison")]
    pipelines["__default__"] = sum([pipelines["data_processing"], pipelines["teacher"], pipelines["search"], *grid_free], Pipeline([]))
    return pipelines
