"""`--params` overrides change the keys they name, under any environment (kedro-org/kedro#3456)."""

from __future__ import annotations

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import ROOT


def parameters(env: str | None, runtime_params: dict | None) -> dict:
    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT, env=env, runtime_params=runtime_params) as session:
        return session.load_context().config_loader["parameters"]


@pytest.mark.parametrize("env", [None, "tiny"])
def test_a_nested_override_keeps_its_siblings(env):
    """`tiny` does not define `methods`: Kedro's own loader would leave kd as the only method."""
    base = parameters(env, None)
    overridden = parameters(env, {"methods": {"kd": {"temperature": 2.0}}})
    assert overridden["methods"] == {**base["methods"], "kd": {**base["methods"]["kd"], "temperature": 2.0}}
    assert {k: v for k, v in overridden.items() if k != "methods"} == {k: v for k, v in base.items() if k != "methods"}


def test_environment_methods_and_models_replace_base_whole_overrides_or_not():
    """The study environments list their own methods: base's rkd must not leak in."""
    smoke = parameters("cifar100_smoke", {"methods": {"kd": {"kd_weight": 0.5}}, "seeds": [3]})
    assert list(smoke["methods"]) == ["ce", "kd", "fitnet"]  # base's rkd does not leak in
    assert smoke["methods"]["kd"] == {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.5} and smoke["seeds"] == [3]
    assert smoke["teacher"]["model"] == {"name": "resnet14"}  # no base cnn channels inside a resnet
    tiny = parameters("tiny", {"data": {"split_seed": 3}})
    base_data = parameters(None, None)["data"]
    assert tiny["data"] == {**base_data, "dataset": "digits", "split_seed": 3}  # base's, tiny's, the override


def _conf(tmp_path, base: str, env: str):
    from distillation_studies import settings
    from distillation_studies.config_loader import StudyConfigLoader

    (tmp_path / "base").mkdir()
    (tmp_path / "study").mkdir()
    (tmp_path / "base" / "parameters.yml").write_text(base)
    (tmp_path / "study" / "parameters.yml").write_text(env)
    return StudyConfigLoader(conf_source=str(tmp_path), env="study", **settings.CONFIG_LOADER_ARGS)["parameters"]


BASE = """
student:
  model: {name: cnn, channels: [8], embed: 16}
  training: {epochs: 60, lr: 0.002, optimizer: sgd}
methods: {ce: {}, kd: {temperature: 4.0}, fitnet: {teacher_layer: embed}}
seeds: [0, 1, 2]
"""


def test_a_partial_environment_section_keeps_base_settings_it_does_not_name(tmp_path):
    """An environment that sets student.training.epochs keeps base's learning rate and optimiser."""
    params = _conf(tmp_path, BASE, "student: {training: {epochs: 5}}\nseeds: [7]\n")
    assert params["student"]["training"] == {"epochs": 5, "lr": 0.002, "optimizer": "sgd"}
    assert params["student"]["model"] == {"name": "cnn", "channels": [8], "embed": 16} and params["seeds"] == [7]


def test_an_environment_model_or_method_set_replaces_base_whole(tmp_path):
    params = _conf(tmp_path, BASE, "student: {model: {name: mlp, hidden: [4]}}\nmethods: {kd: {alpha: 0.5}}\n")
    assert params["student"]["model"] == {"name": "mlp", "hidden": [4]}  # no cnn channels left inside
    assert params["student"]["training"]["lr"] == 0.002
    assert params["methods"] == {"kd": {"alpha": 0.5}}  # the study's methods: kd alone, as the environment wrote it


def test_a_model_section_without_a_name_changes_base_models_settings(tmp_path):
    params = _conf(tmp_path, BASE, "student: {model: {channels: [4, 4]}}\n")
    assert params["student"]["model"] == {"name": "cnn", "channels": [4, 4], "embed": 16}


def test_params_replace_a_model_they_name_and_merge_single_methods(tmp_path):
    from distillation_studies.config_loader import merge_parameters

    base = {"student": {"model": {"name": "mlp", "hidden": [16]}}, "methods": {"ce": {}, "kd": {"temperature": 4.0}}}
    own = {"name": "import", "path": "pkg.models:Net", "kwargs": {"width": 4}}
    merged = merge_parameters(base, {"student": {"model": own}, "methods": {"kd": {"alpha": 0.5}}})
    assert merged == {"student": {"model": own}, "methods": {"ce": {}, "kd": {"temperature": 4.0, "alpha": 0.5}}}


def catalog_paths(env: str | None) -> dict[str, str]:
    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT, env=env) as session:
        config = session.load_context().config_loader["catalog"]
    return {name: entry["filepath"] for name, entry in config.items() if isinstance(entry, dict) and "filepath" in entry}


def test_each_environment_writes_its_results_under_its_own_paths():
    """Running `tiny` must never change which version is the default study's "latest"."""
    default, tiny, local = catalog_paths(None), catalog_paths("tiny"), catalog_paths("local")
    assert default["comparison_table"] == "data/08_reporting/default/comparison_table.csv" == local["comparison_table"]
    assert tiny["comparison_table"] == "data/08_reporting/tiny/comparison_table.csv"
    assert tiny["students.{arm}.seed_{seed}.model"] == "data/06_models/tiny/students/{arm}/seed_{seed}/model.pt"
    shared = {name for name in default if default[name] == tiny[name]}
    assert shared == {"published_reference"}  # an input, read by every CIFAR-100 study


def test_a_file_of_more_values_than_omegaconf_reads_is_named(tmp_path):
    """A 10,000-seed list used to end in OmegaConf's "YAML node expansion exceeds the configured limit"."""
    from distillation_studies.common.errors import ConfigError
    from distillation_studies.config_loader import StudyConfigLoader

    (tmp_path / "base").mkdir()
    (tmp_path / "local").mkdir()
    (tmp_path / "base" / "parameters.yml").write_text("teacher: {seed: 0}\n")
    seeds = tmp_path / "base" / "parameters_seeds.yml"
    seeds.write_text("seeds: [" + ", ".join(map(str, range(10_000))) + "]\n")
    loader = StudyConfigLoader(conf_source=str(tmp_path), base_env="base", default_run_env="local")
    with pytest.raises(ConfigError, match=rf"^{seeds}: more than 10000 YAML values in one file .* OMEGACONF_MAX_YAML_EXPANDED_NODES="):
        loader["parameters"]
