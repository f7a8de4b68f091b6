"""The study parameters seen by the pipeline registry.

The set of namespaced (method, seed) pipelines depends on the study config, so the registry must
read parameters. A hook records them when Kedro creates its context (with ``--env`` and
``--params`` applied); outside a session (e.g. tools importing the registry) they are loaded
from ``conf/`` with ``KEDRO_ENV``.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from distillation_studies.study.schema import StudyConfig, validate_study

_current: dict[str, Any] | None = None


def remember(params: dict[str, Any]) -> None:
    global _current
    _current = params


def current() -> dict[str, Any]:
    if _current is not None:
        return _current
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        conf_source=str(_project_root() / "conf"),
        env=os.environ.get("KEDRO_ENV"),
        base_env="base",
        default_run_env="local",
    )
    return loader["parameters"]


def _project_root() -> Path:
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "pyproject.toml").exists() and (folder / "conf").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]


def study_config() -> StudyConfig:
    """The validated study of the current parameters, parsed once per parameter set."""
    return _validated(json.dumps(current(), sort_keys=True, default=str))


@lru_cache(maxsize=4)
def _validated(params_json: str) -> StudyConfig:
    return validate_study(json.loads(params_json))
