"""Pure helpers of the MLflow tracking: which run a dataset belongs to, URIs, flattened params."""

from pathlib import Path

from distillation_studies.hooks import arm_of, protocol_tags
from distillation_studies.tracking import flatten, resolve_uri


def test_datasets_map_to_their_nested_run():
    assert arm_of("teacher_metrics") == ("teacher", "metrics")
    assert arm_of("students.kd__temperature_2.seed_1.history") == ("kd__temperature_2/seed_1", "history")
    assert arm_of("comparison_table") is None
    assert arm_of("model_input") is None


def test_relative_sqlite_uri_is_anchored_at_the_project():
    assert resolve_uri("sqlite:///mlflow.db", Path("/work/project")) == "sqlite:////work/project/mlflow.db"
    assert resolve_uri("sqlite:////abs/m.db", Path("/work/project")) == "sqlite:////abs/m.db"
    assert resolve_uri("http://tracking:5000", Path("/x")) == "http://tracking:5000"


def test_nested_config_becomes_dotted_string_params():
    assert flatten({"kd": {"temperature": 4.0, "layers": ["a", "b"]}, "seeds": [0, 1]}) == {
        "kd.temperature": "4.0",
        "kd.layers": '["a", "b"]',
        "seeds": "[0, 1]",
    }


def test_protocol_card_becomes_searchable_tags():
    tags = protocol_tags({"dataset": "mnist5k", "seeds": [0, 1, 2], "git_commit": "abc", "package_versions": {}})
    assert tags == {"protocol.dataset": "mnist5k", "protocol.seeds": "[0, 1, 2]", "protocol.git_commit": "abc"}
