"""Study grids: methods x hyperparameter settings x student architectures x label fractions
(with or without a transfer set of the unlabelled rest) x label-noise rates.

Each grid point without its seed is an ``Arm``; with a seed it becomes one namespaced pipeline
``students.<arm key>.seed_<n>``. A study with no sweep has one arm per method, keyed by the method.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping

from distillation_studies.common.errors import ConfigError
from distillation_studies.common.names import DEFAULT_STUDENT


@dataclass(frozen=True)
class Arm:
    """One trained configuration of the study, repeated over seeds."""

    key: str
    method_key: str
    setting: dict[str, Any] = field(default_factory=dict)
    student: str = DEFAULT_STUDENT
    label_fraction: float = 1.0
    transfer_set: bool = False  # the unlabelled rest of the training split is kept for the teacher's terms
    label_noise: float = 0.0  # fraction of training (and validation) labels corrupted

    def as_dict(self) -> dict[str, Any]:
        """Plain data for node arguments, histories and MLflow params."""
        return {
            "key": self.key,
            "method_key": self.method_key,
            "setting": dict(self.setting),
            "student": self.student,
            "label_fraction": self.label_fraction,
            "transfer_set": self.transfer_set,
            "label_noise": self.label_noise,
        }


def _token(value: Any) -> str:
    """A value as a namespace-safe token: 0.5 -> '0p5', 4.0 -> '4', True -> 'true'."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).replace(".", "p").replace("-", "m")


def fraction_token(fraction: float) -> str:
    """Label fraction as a percentage token: 0.1 -> 'labels_10'."""
    return f"labels_{_token(round(100 * fraction, 6))}"


def sweep_settings(sweep: Mapping[str, Any] | None, where: str) -> list[dict[str, Any]]:
    """Cartesian product of swept hyperparameter values; ``[{}]`` when nothing is swept."""
    if not sweep:
        return [{}]
    if not isinstance(sweep, Mapping):
        raise ConfigError(f"{where}: must map hyperparameter names to lists of values")
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{key}: must be a non-empty list of values, got {values!r}")
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{where}.{key}: values must be distinct, got {values}")
    names = list(sweep)
    return [dict(zip(names, combo)) for combo in itertools.product(*(sweep[n] for n in names))]


def noise_token(rate: float) -> str:
    """Label-noise rate as a percentage token: 0.2 -> 'noise_20'."""
    return f"noise_{_token(round(100 * rate, 6))}"


TRANSFER_TOKEN = "transfer"


def data_cells(
    label_fractions: list[float], transfer_sets: list[bool], label_noise: list[float]
) -> list[tuple[float, bool, float]]:
    """(label fraction, transfer set, noise rate) cells; a transfer set needs unlabelled samples, so
    full-label cells come without one."""
    cells = []
    for fraction, transfer, rate in itertools.product(label_fractions, transfer_sets, label_noise):
        cell = (fraction, transfer and fraction < 1.0, rate)
        if cell not in cells:
            cells.append(cell)
    return cells


def cell_keys(cells: list[Mapping[str, Any]]) -> list[str]:
    """A short key per data cell of a study (``student``, ``label_fraction``, ``transfer_set``,
    ``label_noise``), naming the factors that vary among ``cells`` as arm keys do: ``''`` for a study of
    one cell, else e.g. ``labels_10__transfer``, ``wide__labels_100``, ``noise_20``."""
    def varies(column: str) -> bool:
        return len({cell[column] for cell in cells}) > 1

    keys = []
    for cell in cells:
        parts = [str(cell["student"])] if varies("student") else []
        if varies("label_fraction") or varies("transfer_set"):
            parts.append(fraction_token(float(cell["label_fraction"])))
        if cell["transfer_set"] and varies("transfer_set"):
            parts.append(TRANSFER_TOKEN)
        if varies("label_noise"):
            parts.append(noise_token(float(cell["label_noise"])))
        keys.append("__".join(parts))
    return keys


def expand_arms(
    method_sweeps: Mapping[str, list[dict[str, Any]]],
    students: list[str],
    label_fractions: list[float],
    transfer_sets: list[bool] = (False,),
    label_noise: list[float] = (0.0,),
) -> list[Arm]:
    """Every (method setting, student, data cell) combination, with readable unique keys."""
    arms = []
    cells = data_cells(list(label_fractions), list(transfer_sets), list(label_noise))
    for method_key, settings in method_sweeps.items():
        for setting, student, (fraction, transfer, rate) in itertools.product(settings, students, cells):
            parts = [method_key, *(f"{k}_{_token(v)}" for k, v in setting.items())]
            if len(students) > 1:
                parts.append(student)
            if len(label_fractions) > 1 or fraction != 1.0:
                parts.append(fraction_token(fraction))
            if transfer:
                parts.append(TRANSFER_TOKEN)
            if len(label_noise) > 1 or rate != 0.0:
                parts.append(noise_token(rate))
            arms.append(Arm("__".join(parts), method_key, setting, student, fraction, transfer, rate))
    return arms


def check_label_fractions(values: Any, where: str = "grid.label_fractions") -> list[float]:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: must be a non-empty list of fractions in (0, 1], got {values!r}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
            raise ConfigError(f"{where}: every fraction must be in (0, 1], got {value!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: fractions must be distinct, got {values}")
    return [float(v) for v in values]


def check_transfer_sets(values: Any, fractions: list[float], where: str = "grid.transfer_set") -> list[bool]:
    """``[false]`` (default), ``[true]`` or ``[false, true]``; true needs a label fraction below 1."""
    values = [values] if isinstance(values, bool) else values
    if not isinstance(values, list) or not values or not all(isinstance(v, bool) for v in values):
        raise ConfigError(f"{where}: must be a list of booleans ([false], [true] or [false, true]), got {values!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: values must be distinct, got {values}")
    if True in values and all(f >= 1.0 for f in fractions):
        raise ConfigError(
            f"{where}: a transfer set is the unlabelled rest of the training split, so it needs a label fraction "
            f"below 1 in grid.label_fractions (got {fractions})"
        )
    return list(values)


def check_label_noise(values: Any, where: str = "grid.label_noise") -> list[float]:
    """Noise rates in [0, 1): the fraction of training (and validation) labels corrupted."""
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: must be a non-empty list of rates in [0, 1), got {values!r}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ConfigError(f"{where}: every rate must be in [0, 1), got {value!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: rates must be distinct, got {values}")
    return [float(v) for v in values]
