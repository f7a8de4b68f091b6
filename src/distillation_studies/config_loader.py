"""Kedro's config loader, except that ``--params`` overrides apply once, to the merged parameters.

Kedro merges runtime parameters into the base and the run environment separately, then lets each
top-level key of the environment replace base's (kedro-org/kedro#3456). So under an environment that
does not define ``methods``, ``kedro run --env=tiny --params methods.kd.temperature=2`` would leave
``methods`` holding kd alone, with no other method and no other kd setting. The study environments
rely on that replacement of whole top-level keys (``conf/cifar100_benchmark`` spells out its own
``methods``), so soft merging is no cure. Here base and environment merge as Kedro merges them,
without runtime parameters, and the overrides are merged into the result once: a ``--params`` key
changes that one key and nothing else.

An environment's parameters merge into base's key by key (:func:`merge_parameters`): an environment
that sets ``student.training: {epochs: 5}`` keeps base's learning rate and every other training
setting. An environment's ``methods`` and ``grid.students`` are the study's own sets and replace
base's whole (``ENVIRONMENT_WHOLE_KEYS``); a ``teacher.model``/``student.model`` that names its
``name`` is a new architecture and replaces base's whole (a CNN's ``channels`` mean nothing to an
MLP), one without ``name`` changes base's model's settings; lists are values and are replaced. The
``--params`` overrides merge by the same rule, except that they change single methods.

It also names the study whose results a catalog path holds: ``${study_env:}`` resolves to the run
environment (``default`` for plain ``kedro run``), so each environment writes under its own paths and
running ``tiny`` never changes what the default study's "latest" version is.

And it is the one bridge from a Kedro session to the code Kedro builds before or without handing it
the session's config: the pipeline registry (``session_parameters``) and the Dask runner's settings
(``session_config_loader``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import yaml
from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf

from distillation_studies.common.errors import ConfigError


DEFAULT_STUDY = "default"
LOCAL_ENVS = {None, "", "local"}  # the project's default study: base (+ conf/local overrides)

# Parameter keys an environment replaces whole instead of merging into base's: see ``merge_parameters``.
ENVIRONMENT_WHOLE_KEYS = frozenset({"methods", "grid.students"})
MODEL_KEYS = frozenset({"teacher.model", "student.model"})  # replaced whole when the override names the model

# The loader Kedro created last: see ``session_parameters``. Process state, on purpose and alone.
_last_loader: StudyConfigLoader | None = None


class StudyConfigLoader(OmegaConfigLoader):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bound to this loader, and replaced by each new one, as Kedro does for ``globals``.
        OmegaConf.register_new_resolver("study_env", self.study_name, replace=True)
        global _last_loader
        _last_loader = self

    def study_name(self) -> str:
        """The folder of this environment's results: its name, or ``default`` for base/local."""
        return DEFAULT_STUDY if self.env in LOCAL_ENVS else str(self.env)

    def _read_dir_configs(self, conf_path: str, patterns, *args: Any, **kwargs: Any) -> dict:
        """Kedro's reading of one folder's files (Kedro 1.x), with OmegaConf's size limit named by file."""
        try:
            return super()._read_dir_configs(conf_path, patterns, *args, **kwargs)
        except yaml.constructor.ConstructorError as error:
            if "expansion exceeds" not in str(error):
                raise
            raise ConfigError(_too_many_nodes(conf_path, patterns, error)) from None

    def _merge_and_resolve(self, key: str, config_per_file: dict) -> dict[str, Any]:
        if key != "parameters" or not self.runtime_params:
            return super()._merge_and_resolve(key, config_per_file)
        if not config_per_file:
            return {}
        return OmegaConf.to_container(OmegaConf.unsafe_merge(*config_per_file.values()), resolve=True)

    def _merge_configs(self, config: dict[str, Any], env_config: dict[str, Any], key: str, env_path: str) -> Any:
        if key != "parameters":
            return super()._merge_configs(config, env_config, key, env_path)
        return merge_parameters(config, env_config, ENVIRONMENT_WHOLE_KEYS)

    def __getitem__(self, key: str) -> dict[str, Any]:
        config = super().__getitem__(key)
        if key == "parameters" and self.runtime_params:
            return merge_parameters(config, self.runtime_params)
        return config


def merge_parameters(
    base: Mapping[str, Any], override: Mapping[str, Any], whole: frozenset[str] = frozenset(), prefix: str = ""
) -> dict[str, Any]:
    """``override``'s parameters over ``base``'s: mappings merge key by key, except at the dotted paths in
    ``whole`` and at a model section that names its ``name``, where (as for lists and plain values) the
    override replaces base's value."""
    merged = dict(base)
    for key, value in override.items():
        path = f"{prefix}{key}"
        new_model = path in MODEL_KEYS and isinstance(value, Mapping) and "name" in value
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping) and path not in whole and not new_model:
            merged[key] = merge_parameters(base[key], value, whole, f"{path}.")
        else:
            merged[key] = value
    return merged


def _too_many_nodes(conf_path: str, patterns, error: Exception) -> str:
    """OmegaConf refuses a YAML file of more than 10,000 values (its guard against alias bombs): name the
    file, and the two ways out."""
    found = sorted({str(path) for pattern in patterns for path in Path(conf_path).glob(pattern)})
    culprit = next((path for path in found if _refused(path)), conf_path)
    limit = str(error).split("limit of ", 1)[-1].split(".", 1)[0]
    return (
        f"{culprit}: more than {limit} YAML values in one file (e.g. a list of 10,000 seeds), which OmegaConf refuses "
        "as a guard against alias bombs. Shorten the list, or, for a file you wrote, raise the limit: "
        "OMEGACONF_MAX_YAML_EXPANDED_NODES=<a larger number> kedro run ..."
    )


def _refused(path: str) -> bool:
    try:
        OmegaConf.load(path)
    except yaml.constructor.ConstructorError:
        return True
    except Exception:  # noqa: BLE001 - another problem of that file is not the one being named
        return False
    return False


def session_config_loader() -> StudyConfigLoader:
    """The config loader Kedro created last (see ``session_parameters``), or, before any session, one
    over ``conf/`` under ``KEDRO_ENV``."""
    return _last_loader if _last_loader is not None else _loader_without_session()  # a loader is a (falsy) dict


def session_parameters() -> dict[str, Any]:
    """The parameters the pipelines are built for: those of the config loader Kedro created last.

    The shape of the study (one pipeline per arm and seed) depends on the parameters, including
    ``--params`` overrides, which exist only in the session: Kedro calls ``register_pipelines()``
    with no arguments, and ``KedroSession.run`` creates the context's config loader, with the
    session's ``env`` and ``runtime_params``, in ``load_context()`` before it reads
    ``pipelines[name]``; kedro-viz (which runs no hooks) does the same before ``dict(pipelines)``.
    Before any session (``kedro registry``, a script importing the registry) this reads ``conf/``
    under ``KEDRO_ENV``. Dask workers receive built nodes and never read this.
    """
    return session_config_loader()["parameters"]


def _loader_without_session() -> StudyConfigLoader:
    from kedro.framework.project import settings
    from kedro.utils import find_kedro_project

    project = find_kedro_project(Path.cwd()) or Path(__file__).resolve().parents[2]
    return StudyConfigLoader(
        conf_source=str(project / settings.CONF_SOURCE), env=os.environ.get("KEDRO_ENV"), **settings.CONFIG_LOADER_ARGS
    )
