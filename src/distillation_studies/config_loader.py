"""Kedro's config loader, except that ``--params`` overrides apply once, to the merged parameters.

Kedro merges runtime parameters into the base and the run environment separately, then lets each
top-level key of the environment replace base's (kedro-org/kedro#3456). So under an environment that
does not define ``methods``, ``kedro run --env=tiny --params methods.kd.temperature=2`` would leave
``methods`` holding kd alone, with no other method and no other kd setting. The study environments
rely on that replacement of whole top-level keys (``conf/cifar100_benchmark`` spells out its own
``methods``), so soft merging is no cure. Here base and environment merge as Kedro merges them,
without runtime parameters, and the overrides are merged into the result once: a ``--params`` key
changes that one key and nothing else.
"""

from __future__ import annotations

from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf


class StudyConfigLoader(OmegaConfigLoader):
    def _merge_and_resolve(self, key: str, config_per_file: dict) -> dict[str, Any]:
        if key != "parameters" or not self.runtime_params:
            return super()._merge_and_resolve(key, config_per_file)
        if not config_per_file:
            return {}
        return OmegaConf.to_container(OmegaConf.unsafe_merge(*config_per_file.values()), resolve=True)

    def __getitem__(self, key: str) -> dict[str, Any]:
        config = super().__getitem__(key)
        if key == "parameters" and self.runtime_params:
            return OmegaConf.to_container(OmegaConf.merge(config, self.runtime_params), resolve=True)
        return config
