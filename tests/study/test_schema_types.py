"""Every setting of every section, given every wrong type: one ConfigError that names the key.

The table is generated from the dataclasses themselves (the same type hints ``parse_dataclass``
reads), so a new setting is covered the day it is added. Expected: the message starts with the
setting's full dotted key; any other exception (TypeError, ValueError from deep inside) fails.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from typing import Any, get_type_hints

import pytest

from distillation_studies.analysis.recommend import Constraints
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods import METHODS
from distillation_studies.learning.models import MODELS
from distillation_studies.learning.training import TrainConfig
from distillation_studies.study.schema import ComparisonConfig, DataConfig, EvaluationConfig, TrackingConfig, validate_study
from tests.study.test_schema import base_config

NOT_A_NUMBER = ["4", [1.0], {"a": 1}, True, None]


def wrong_values(hint: Any) -> list[Any]:
    """Values of the wrong type (or, for floats, not finite) for a type hint; [] when any value may do."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return [v for v in wrong_values(inner[0]) if v is not None] if len(inner) == 1 else []
    if origin is tuple:
        return ["abc", 5, {"a": 1}, *([[v] for v in wrong_values(args[0])[:2]])]
    return {
        float: [*NOT_A_NUMBER, math.nan, math.inf, -math.inf],
        int: [*NOT_A_NUMBER, 1.5, math.nan],
        bool: ["yes", 1, [True], None],
        str: [1, ["a"], {"a": 1}, True, None],
    }.get(hint, [])


def _with(config: dict, path: str, value: Any) -> dict:
    config = copy.deepcopy(config)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


def _cases() -> list[tuple[str, dict, str]]:
    base = base_config()
    base["methods"] = {"ce": {}, "kd": {}}
    sections: list[tuple[str, type, dict]] = [
        ("data", DataConfig, {}),
        ("teacher.training", TrainConfig, {}),
        ("student.training", TrainConfig, {}),
        ("evaluation", EvaluationConfig, {}),
        ("comparison", ComparisonConfig, {}),
        ("recommendation", Constraints, {}),
        ("tracking", TrackingConfig, {}),
        ("teacher.model", MODELS["cnn"].config_class, {"name": "cnn"}),
        ("student.model", MODELS["mlp"].config_class, {"name": "mlp"}),
        ("grid.students.wide", MODELS["cnn"].config_class, {"name": "cnn"}),
        *((f"methods.m_{name}", cls.Config, {"method": name}) for name, cls in sorted(METHODS.items())),
    ]
    cases = []
    for path, cls, section in sections:
        hints = get_type_hints(cls)
        for field in dataclasses.fields(cls):
            for value in wrong_values(hints[field.name]):
                config = _with(base, path, {**section, field.name: value}) if section else _with(base, f"{path}.{field.name}", value)
                cases.append((f"{path}.{field.name}={value!r}", config, f"{path}.{field.name}"))
    # Whole sections of the wrong shape, and the sections that are not dataclasses.
    shaped = [
        "data", "teacher", "student", "methods", "evaluation", "comparison", "recommendation", "tracking", "grid",
        "teacher.model", "teacher.training", "student.model", "student.training", "methods.kd", "grid.students",
        "grid.students.wide", "grid.label_fractions", "methods.kd.sweep", "methods.kd.sweep.temperature",
    ]
    for path in shaped:
        for value in (1, "abc", [1, 2]):
            if value == [1, 2] and path in ("grid.label_fractions", "methods.kd.sweep.temperature"):
                continue  # a list is the right shape there
            cases.append((f"{path}={value!r}", _with(base, path, value), path))
    for path in ("seeds", "teacher.seed", "student.seed", "data.split_seed"):
        for value in ("0", 1.5, -1, True, [0], 2**40):
            if path == "seeds" and value == [0]:
                continue
            cases.append((f"{path}={value!r}", _with(base, path, value), path))
    for value in (["0"], [1.5], [True], [-1], [math.nan]):
        cases.append((f"seeds={value!r}", _with(base, "seeds", value), "seeds"))
        cases.append((f"grid.label_fractions={value!r}", _with(base, "grid.label_fractions", value), "grid.label_fractions"))
    for value in (1, ["a.pt"], {"file": "a.pt"}, "", {"path": ""}, {"path": "a.pt", "inputs": {"channels": 2}}):
        cases.append((f"teacher.checkpoint={value!r}", _with(base, "teacher.checkpoint", value), "teacher.checkpoint"))
    nested = [  # method sections inside a method: combine's parts, two_stage's distill stage
        ("methods.c.parts.a", {"method": "combine", "parts": {"a": 1}}),
        ("methods.c.parts.a.weight", {"method": "combine", "parts": {"a": {"method": "kd", "weight": math.nan}}}),
        ("methods.c.parts.a.temperature", {"method": "combine", "parts": {"a": {"method": "kd", "temperature": "4"}}}),
    ]
    for key, section in nested:
        cases.append((f"{key}={section!r}", _with(base, key.split(".parts")[0], section), key))
    return cases


CASES = _cases()


def test_the_table_covers_every_section_and_method():
    keys = {key for _, _, key in CASES}
    typed = {name for name, cls in METHODS.items() if any(wrong_values(h) for h in get_type_hints(cls.Config).values())}
    assert typed >= set(METHODS) - {"combine", "two_stage"}  # their only settings are nested method sections
    assert {f"methods.m_{name}" for name in typed} <= {k.rsplit(".", 1)[0] for k in keys}
    assert {"data.val_fraction", "student.training.lr", "teacher.model.channels", "recommendation.max_flops"} <= keys
    assert len(CASES) > 500


@pytest.mark.parametrize("config, key", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_wrong_type_names_its_key(config, key):
    with pytest.raises(ConfigError) as caught:
        validate_study(config)
    message = str(caught.value)
    assert message.startswith(key), message
