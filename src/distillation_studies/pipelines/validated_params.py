"""Nodes receive their ``params:`` inputs as the study's validated sections, parsed once.

``validate_study`` parses and checks the whole study when the pipelines are built, before any node
runs. A node keeps its ``params:<key>`` inputs, so kedro-viz still draws the parameters each node
reads and hooks still see them as written (the tracking hook logs ``params:teacher`` and
``params:student.training``); its function receives ``StudyConfig.section(key)`` in their place: a
``DataConfig``, a ``MethodEntry``, a ``ModelSection`` ... and never parses config itself.

Kedro 1.7's typed ``params:`` inputs are not used for this, for three reasons in its code:
``kedro.validation.model_factory._instantiate_dataclass`` is ``model_type(**raw_value)`` (no type
coercion, no ``check()``, an unknown key is a ``TypeError`` re-raised as ``ParameterValidationError``,
not a ``ConfigError`` naming the key); ``ParameterValidator._apply_validation`` writes the instances
back into the whole parameters tree, which ``KedroContext._get_parameters`` serves as ``parameters``
(the protocol card and the config hash read it as plain data); and it runs per key after the
pipelines are built, while building them already needs the whole validated study (the grid's arms).
The swapped functions therefore hide their annotations from Kedro's ``TypeExtractor``.
"""

from __future__ import annotations

import functools
import inspect
from types import CodeType
from typing import Any, Callable

from kedro.pipeline import Pipeline

from distillation_studies.common.errors import ConfigError
from distillation_studies.study.schema import StudyConfig

PARAMS = "params:"


def with_validated_params(pipeline: Pipeline, study: StudyConfig) -> Pipeline:
    """``pipeline`` with every node's ``params:<key>`` arguments replaced by ``study.section(key)``."""
    for node in pipeline.nodes:
        keys = {name: name.removeprefix(PARAMS) for name in node.inputs if name.startswith(PARAMS)}
        if keys:
            sections = {name: (study.raw(key), study.section(key)) for name, key in keys.items()}
            node.func = _validated(node.func, list(node.inputs), sections)
    return pipeline


def _validated(function: Callable, inputs: list[str], sections: dict[str, tuple[Any, Any]]) -> Callable:
    """``function`` called with each ``params:`` value swapped for its validated section, after checking
    that the value is the one the section was validated from (a pipeline built for another config fails
    here, naming the key, instead of training with stale settings)."""

    def run(*values):  # no annotations: Kedro's TypeExtractor must not instantiate params itself
        return function(*(_section(name, value, sections) for name, value in zip(inputs, values)))

    functools.update_wrapper(run, function, assigned=("__module__", "__name__", "__qualname__", "__doc__"), updated=())
    run.__wrapped__ = own = inspect.unwrap(function)  # kedro-viz shows the node's own code (inspect.getsource)
    run.__code__ = _located_at(run.__code__, own.__code__)
    return run


def _located_at(wrapper: CodeType, own: CodeType) -> CodeType:
    """The wrapper's code placed at its node function's ``def`` line: kedro-viz's node panel takes the file
    from ``inspect.getfile`` (which does not unwrap), and a traceback then names the node's function and
    file for the call that enters it instead of this module."""
    first_call_line = next(line for _, _, line in wrapper.co_lines() if line is not None and line > wrapper.co_firstlineno)
    return wrapper.replace(
        co_filename=own.co_filename,
        co_firstlineno=own.co_firstlineno - (first_call_line - wrapper.co_firstlineno),
        co_name=own.co_name,
        co_qualname=own.co_qualname,
    )


def _section(name: str, value: Any, sections: dict[str, tuple[Any, Any]]) -> Any:
    if name not in sections:
        return value
    raw, section = sections[name]
    if value != raw:
        raise ConfigError(
            f"{name.removeprefix(PARAMS)}: differs from the value the pipelines were built and validated for; "
            "build them again for this config (bootstrap_project, or a new process)"
        )
    return section
