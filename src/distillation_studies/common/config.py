"""Turn plain config mappings into frozen dataclasses, with errors that name the key."""

from __future__ import annotations

import dataclasses
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
    values = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in raw.items()}
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if callable(check):
        check(where)
    return obj


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Lenient on ints for floats and lists for tuples; strict otherwise."""
    origin = getattr(hint, "__origin__", None)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if hint in (float, int, bool, str):
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
