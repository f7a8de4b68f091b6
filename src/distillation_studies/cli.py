"""``kedro run`` as Kedro defines it, except that ``--params`` values may be YAML lists and mappings,
``-v`` shows Kedro's per-task lines (``distillation_studies.terminal`` hides them by default), and a
study's own errors (bad config, missing data, a copied project) end in their message, not a traceback.

Kedro splits ``--params`` at every comma before reading ``key=value`` items (``split_string`` in
``kedro.framework.cli.utils``), so ``--params "seeds=[0,1,2,3,4]"`` fails with "Item `1` must contain a
key and a value". Here items are split at commas outside brackets, braces and quotes only; each value is
then read as YAML by OmegaConf's dot-list parser, as Kedro reads it, so ``seeds=[0,1,2,3,4]`` is a list,
``grid.students={small: {name: mlp, hidden: [16]}}`` a mapping, and every plain ``key=value`` means what
it meant before. Kedro loads this module's ``cli`` group and lets its ``run`` replace the built-in one
(built-in < plugins < the project's ``cli.py``); every other option and the run itself are Kedro's own.
"""

from __future__ import annotations

import copy
import functools
import os
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from omegaconf import OmegaConf
from omegaconf.errors import GrammarParseError

from distillation_studies.common.errors import ConfigError
from distillation_studies.terminal import VERBOSE_ENV, verbose

OPENING, CLOSING = "[{", "]}"


def split_items(value: str) -> list[str]:
    """``value`` split at commas that are outside ``[...]``, ``{...}`` and quotes, items stripped."""
    items, current, depth, quote = [], [], 0, ""
    for char in value:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in OPENING:
            depth += 1
        elif char in CLOSING:
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def parse_params(ctx: click.Context | None, param: click.Parameter | None, value: Any) -> dict[str, Any]:
    """The ``--params`` callback: ``key=value`` items (dotted keys nest) into a dict of parameters."""
    if isinstance(value, dict):  # from ``kedro run --config run.yml``
        return value
    dot_list = []
    for item in split_items(value or ""):
        key, equals, val = item.partition("=")
        if not equals or not key.strip():
            raise click.BadParameter(
                f"item {item!r} must be key=value (e.g. seeds=[0,1,2] or methods.kd.temperature=2)", ctx, param
            )
        dot_list.append(f"{key.strip()}={val}")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(dot_list))
    except (GrammarParseError, ValueError) as error:
        raise click.BadParameter(f"cannot read {value!r}: {error}", ctx, param) from None


def _run_command() -> click.Command:
    """Kedro's ``run`` command with the ``--params`` option's callback replaced; Kedro's object is untouched."""
    run = copy.copy(kedro_run)
    run.callback = _said_in_one_message(kedro_run.callback)
    run.params = [copy.copy(option) for option in kedro_run.params]
    for option in run.params:
        if option.name == "params":
            option.callback = parse_params
            option.help = (
                "Parameters to override: key=value items separated by commas; dotted keys nest "
                "(methods.kd.temperature=2); values are YAML, so lists and mappings work: "
                '--params "seeds=[0,1,2,3,4],grid.label_fractions=[0.1,1.0]".'
            )
    run.params.append(
        click.Option(
            ["-v", "--verbose"],
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_show_every_line,
            help=f"Show Kedro's lines for every task, whole (the same as {VERBOSE_ENV}=1).",
        )
    )
    return run


def _said_in_one_message(callback):
    """A ``ConfigError`` (every error the study raises on bad input names the key or file and what to do)
    ends the command with ``Error: <message>`` and exit status 1, as click reports a bad option; the stack
    of Kedro's session, hooks and runner under it says nothing more to the user. ``-v`` keeps the traceback."""

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except ConfigError as error:
            if verbose():
                raise
            raise click.ClickException(str(error)) from None

    return run


def _show_every_line(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``-v``: the terminal filter and formatter (``distillation_studies.terminal``) read this at each line;
    Dask workers started by the run inherit it."""
    if value:
        os.environ[VERBOSE_ENV] = "1"


@click.group(name="distillation_studies")
def cli() -> None:
    """The project's commands: Kedro's, with a ``run`` that reads YAML lists and mappings in ``--params``."""


cli.add_command(_run_command(), "run")
