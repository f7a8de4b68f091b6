"""The validated study behind the pipelines: parsed once per parameter set, errors before any node runs."""

from __future__ import annotations

import json
from functools import lru_cache

from distillation_studies import study_params
from distillation_studies.core.grid import DEFAULT_STUDENT, Arm, fraction_token
from distillation_studies.core.study import StudyConfig, validate_study


def study_config() -> StudyConfig:
    return _validated(json.dumps(study_params.current(), sort_keys=True, default=str))


@lru_cache(maxsize=4)
def _validated(params_json: str) -> StudyConfig:
    return validate_study(json.loads(params_json))


def student_namespace(arm_key: str, seed: int) -> str:
    """Namespace of one (arm, seed) pair; catalog patterns spell out ``students.{arm}.{seed}``."""
    return f"students.{arm_key}.seed_{seed}"


def model_input_name(fraction: float) -> str:
    """The splits a student trains on: all labels, or a stratified label fraction."""
    return "model_input" if fraction >= 1.0 else f"model_input_{fraction_token(fraction)}"


def student_model_param(arm: Arm) -> str:
    """The parameter holding an arm's student architecture."""
    return "params:student.model" if arm.student == DEFAULT_STUDENT else f"params:grid.students.{arm.student}"
