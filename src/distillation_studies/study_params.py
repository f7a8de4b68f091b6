"""The study parameters seen by the pipeline registry.

The set of namespaced (method, seed) pipelines depends on the study config, so the registry must
read parameters. A hook records them when Kedro creates its context (with ``--env`` and
``--params`` applied); outside a session (e.g. tools importing the registry) they are loaded
from ``conf/`` with ``KEDRO_ENV``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
