"""Turn plain config mappings into frozen dataclasses, with errors that name the key."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Mapping, TypeVar, get_type_hints

from distillation_studies.common.errors import ConfigError

T = TypeVar("T")


def parse_dataclass(cls: type[T], raw: Mapping[str, Any] | None, where: str) -> T:
    """Build ``cls`` from ``raw``: unknown keys and wrong types fail naming ``where.key``.

    Lists become tuples (configs are frozen); ``check(where)`` runs when the class defines it.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping of settings, got {type(raw).__name__}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; allowed keys: {allowed}")
    hints = get_type_hints(cls)
    values = {key: coerce_value(value, hints[key], f"{where}.{key}") for key, value in raw.items()}
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if callable(check):
        check(where)
    return obj


def coerce_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` as type ``hint``, or a ConfigError naming ``where``.

    Lenient only on ints for floats and lists for tuples. Floats must be finite (NaN passes every
    ``<=`` check and inf no limit, so neither may reach the training code); ``X | None`` accepts null;
    ``tuple[X, ...]`` checks every element; other hints (``Any``, mappings) are left to ``check``.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return coerce_value(value, options[0], where)
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = []
        for v in value:
            try:
                items.append(coerce_value(v, item, where))
            except ConfigError:
                raise ConfigError(f"{where}: every entry must be {getattr(item, '__name__', item)}, got {v!r}") from None
        return tuple(items)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: must be finite, got {value!r}")
        return float(value)
    if hint in (int, bool, str) and isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
        return value
    if hint in (int, bool, str):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def require_positive(obj: Any, where: str, *keys: str) -> None:
    for key in keys:
        value = getattr(obj, key)
        if value <= 0:
            raise ConfigError(f"{where}.{key}: must be > 0, got {value}")


def require_non_negative(obj: Any, where: str, *keys: str) -> None:
    for key in keys:
        value = getattr(obj, key)
        if value < 0:
            raise ConfigError(f"{where}.{key}: must be >= 0, got {value}")


def require_range(obj: Any, where: str, key: str, low: float, high: float) -> None:
    value = getattr(obj, key)
    if not low <= value <= high:
        raise ConfigError(f"{where}.{key}: must be in [{low}, {high}], got {value}")


def require_choice(obj: Any, where: str, key: str, choices: list[str]) -> None:
    value = getattr(obj, key)
    if value not in choices:
        raise ConfigError(f"{where}.{key}: unknown value {value!r}; allowed values: {choices}")


def require_set(obj: Any, where: str, *keys: str) -> None:
    for key in keys:
        if getattr(obj, key) in (None, ""):
            raise ConfigError(f"{where}.{key}: required (a module path of the model)")
