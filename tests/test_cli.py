"""`kedro run --params` reads YAML lists and mappings, and every `kedro run` the README shows parses and
(with its `--params`) validates as written, through the same click command the CLI runs."""

from __future__ import annotations

import re
import shlex

import click
import pytest

from distillation_studies import settings
from distillation_studies.cli import cli, parse_params, split_items
from distillation_studies.terminal import VERBOSE_ENV
from distillation_studies.config_loader import StudyConfigLoader
from distillation_studies.study.schema import validate_study
from tests.conftest import ROOT

RUN = cli.commands["run"]


@pytest.mark.parametrize(
    "value, items",
    [
        ("seeds=[0,1,2,3,4]", ["seeds=[0,1,2,3,4]"]),
        ("a=1, b=x", ["a=1", "b=x"]),
        ("g={s: {hidden: [16, 8]}},seeds=[0]", ["g={s: {hidden: [16, 8]}}", "seeds=[0]"]),
        ("name='a,b',x=\"[\"", ["name='a,b'", 'x="["']),
        ("", []),
    ],
)
def test_items_split_at_commas_outside_brackets_and_quotes(value, items):
    assert split_items(value) == items


def test_values_are_yaml_and_dotted_keys_nest():
    got = parse_params(None, None, "seeds=[0,1,2],methods.kd.temperature=2,grid.students={small: {name: mlp, hidden: [16]}},tracking.uri=sqlite:///a=b.db")
    assert got == {
        "seeds": [0, 1, 2],
        "methods": {"kd": {"temperature": 2}},
        "grid": {"students": {"small": {"name": "mlp", "hidden": [16]}}},
        "tracking": {"uri": "sqlite:///a=b.db"},
    }


def test_an_item_without_a_value_is_refused_naming_it():
    with pytest.raises(click.BadParameter, match=r"item 'seeds' must be key=value"):
        parse_params(None, None, "seeds,x=1")


def test_kedros_own_parser_splits_lists_apart():
    """Why the project replaces the callback: Kedro 1.x splits at every comma."""
    from kedro.framework.cli.utils import _split_params

    command = click.Command("run", params=[click.Option(["--params"])])
    with pytest.raises(click.UsageError, match="Item `1]` must contain a key and a value"):
        _split_params(click.Context(command), command.params[0], "seeds=[0,1]")


def readme_runs() -> list[str]:
    """Every `kedro run ...` command in the README: inline code and shell-block lines (with continuations)."""
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"`(?:[A-Z_]+=\S+ )*(kedro run[^`]*)`", text)
    fence = None  # the language of the code block being read, if any
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip() or "text"
        elif fence in ("bash", "sh") and (found := re.match(r"\s*(?:[A-Z_]+=\S+ +)*(kedro run.*)", line)):
            commands.append(found.group(1).split("#")[0].strip())
    return commands


def test_the_readme_shows_list_overrides():
    assert 'kedro run --params "seeds=[0,1,2,3,4]"' in readme_runs()


@pytest.mark.parametrize("command", readme_runs())
def test_each_readme_kedro_run_parses_and_its_params_validate(command, monkeypatch):
    monkeypatch.setenv(VERBOSE_ENV, "")  # `kedro run -v` sets it in this process: restored after the test
    args = shlex.split(command)[2:]
    context = RUN.make_context("run", args)
    params, env = context.params["params"], context.params["env"]
    if not params:
        return
    loader = StudyConfigLoader(conf_source=str(ROOT / "conf"), env=env, runtime_params=params, **settings.CONFIG_LOADER_ARGS)
    validate_study(loader["parameters"])
