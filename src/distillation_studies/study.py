"""The validated study behind the pipelines: parsed once per parameter set, errors before any node runs."""

from __future__ import annotations

import json
from functools import lru_cache

from distillation_studies import study_params
from distillation_studies.core.study import StudyConfig, validate_study


def study_config() -> StudyConfig:
    return _validated(json.dumps(study_params.current(), sort_keys=True, default=str))


@lru_cache(maxsize=4)
def _validated(params_json: str) -> StudyConfig:
    return validate_study(json.loads(params_json))


def student_namespace(method_key: str, seed: int) -> str:
    """Namespace of one (method, seed) arm; catalog patterns spell out ``students.{method}.{seed}``."""
    return f"students.{method_key}.seed_{seed}"
