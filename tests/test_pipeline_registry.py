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
    return {n.namespace for n in pipeline.nodes if n.namespace and ".seed_" in n.namespace}


def test_builders_take_the_study_explicitly_and_build_its_shape():
    one = validate_study({**tiny_params(), "seeds": [0]})
    three = validate_study({**tiny_params(), "seeds": [0, 1, 2], "methods": {"ce": {}}, "comparison": {"baselines": ["ce"]}})
    for module in PIPELINES.values():
        assert inspect.signature(module.create_pipeline).parameters["study"].default is inspect.Parameter.empty
    # Built alternately: each pipeline is the shape of the study it was given, nothing else.
    assert _arm_namespaces(PIPELINES["distillation"].create_pipeline(three)) == {f"students.ce.seed_{s}" for s in (0, 1, 2)}
    assert _arm_namespaces(PIPELINES["distillation"].create_pipeline(one)) == {"students.ce.seed_0", "students.kd.seed_0"}
    assert _arm_namespaces(PIPELINES["evaluation"].create_pipeline(three)) == {f"students.ce.seed_{s}" for s in (0, 1, 2)}
    comparison = {n.name: n for n in PIPELINES["comparison"].create_pipeline(three).nodes}
    # Each arm's seeds are gathered inside the arm (kedro-viz's level below `students`), metrics then histories.
    assert comparison["students.ce.gather_seeds"].inputs == [
        *(f"students.ce.seed_{s}.metrics" for s in (0, 1, 2)),
        *(f"students.ce.seed_{s}.history" for s in (0, 1, 2)),
    ]
    assert comparison["collect_runs"].inputs == comparison["collect_histories"].inputs == ["students.ce.seeds"]
    collect = next(n for n in PIPELINES["comparison"].create_pipeline(one).nodes if n.name == "collect_runs")
    assert collect.inputs == ["students.ce.seeds", "students.kd.seeds"]


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


def test_the_study_tables_are_collected_from_each_arms_gathered_seeds():
    from distillation_studies.pipelines.comparison.nodes import collect_study_histories, collect_study_runs, gather_seeds

    def metrics(arm, seed, accuracy):
        return {"arm": arm, "seed": seed, "test_accuracy": accuracy, "details": {"bins": [seed]}}

    def history(arm, seed):
        return {"summary": {"arm": arm, "seed": seed}, "epochs": [seed]}

    ce = gather_seeds(metrics("ce", 0, 0.5), metrics("ce", 1, 0.7), history("ce", 0), history("ce", 1))
    kd = gather_seeds(metrics("kd", 0, 0.9), history("kd", 0))
    assert ce["metrics"][1]["seed"] == 1 and ce["histories"][0]["summary"] == {"arm": "ce", "seed": 0}
    runs, details = collect_study_runs(ce, kd)
    assert list(zip(runs["arm"], runs["seed"], runs["test_accuracy"])) == [("ce", 0, 0.5), ("ce", 1, 0.7), ("kd", 0, 0.9)]
    assert "details" not in runs.columns and details == {"ce/seed_0": {"bins": [0]}, "ce/seed_1": {"bins": [1]}, "kd/seed_0": {"bins": [0]}}
    assert list(collect_study_histories(ce, kd)) == ["ce/seed_0", "ce/seed_1", "kd/seed_0"]
