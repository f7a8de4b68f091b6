"""The pipelines' shape comes from the study they are given; the registry gets it from the session's
config loader (``--env`` and ``--params`` applied), and a bad config fails there, before any node runs."""

from __future__ import annotations

import inspect

import pytest
from kedro.framework.project import pipelines, settings
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.runner import SequentialRunner

from distillation_studies.common.errors import ConfigError
from distillation_studies import config_loader
from distillation_studies.config_loader import StudyConfigLoader
from distillation_studies.pipeline_registry import PIPELINES, register_pipelines
from distillation_studies.study.schema import validate_study
from tests.conftest import ROOT
from tests.pipelines.test_study_slice import tiny_params

TINY_METHODS = ("ce", "kd", "fitnet", "rkd")  # conf/tiny


def _arm_namespaces(pipeline) -> set[str]:
    return {n.namespace for n in pipeline.nodes if n.namespace and n.namespace != "students"}


def test_builders_take_the_study_explicitly_and_build_its_shape():
    one = validate_study({**tiny_params(), "seeds": [0]})
    three = validate_study({**tiny_params(), "seeds": [0, 1, 2], "methods": {"ce": {}}, "comparison": {"baselines": ["ce"]}})
    for module in PIPELINES.values():
        assert inspect.signature(module.create_pipeline).parameters["study"].default is inspect.Parameter.empty
    # Built alternately: each pipeline is the shape of the study it was given, nothing else.
    assert _arm_namespaces(PIPELINES["distillation"].create_pipeline(three)) == {f"students.ce.seed_{s}" for s in (0, 1, 2)}
    assert _arm_namespaces(PIPELINES["distillation"].create_pipeline(one)) == {"students.ce.seed_0", "students.kd.seed_0"}
    assert _arm_namespaces(PIPELINES["evaluation"].create_pipeline(three)) == {f"students.ce.seed_{s}" for s in (0, 1, 2)}
    collect = next(n for n in PIPELINES["comparison"].create_pipeline(one).nodes if n.name == "students.collect_runs")
    assert collect.inputs == ["students.ce.seed_0.metrics", "students.kd.seed_0.metrics"]


def test_the_registry_reads_the_config_loader_kedro_created_last(monkeypatch):
    """kedro-viz runs no hooks: the loader alone (its env and runtime params) decides the shape."""
    monkeypatch.setattr(config_loader, "_last_loader", None)  # restored after the test
    StudyConfigLoader(conf_source=str(ROOT / "conf"), env="tiny", runtime_params={"seeds": [5, 6]}, **settings.CONFIG_LOADER_ARGS)
    assert _arm_namespaces(register_pipelines()["distillation"]) == {f"students.{m}.seed_{s}" for m in TINY_METHODS for s in (5, 6)}


def test_a_session_builds_the_pipelines_of_its_runtime_params():
    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT, env="tiny", runtime_params={"seeds": [4]}) as session:
        session.load_context()
        assert _arm_namespaces(pipelines["__default__"]) == {f"students.{m}.seed_4" for m in TINY_METHODS}


class NeverRuns(SequentialRunner):
    def run(self, *args, **kwargs):
        raise AssertionError("a bad config must fail before the runner starts")


def test_a_bad_params_section_fails_naming_its_key_before_any_node_runs():
    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT, env="tiny", runtime_params={"evaluation": {"ece_bins": 0}}) as session:
        with pytest.raises(ConfigError, match=r"^evaluation\.ece_bins: must be > 0, got 0$"):
            session.run(runner=NeverRuns())
