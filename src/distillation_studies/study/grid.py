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
from distillation_studies.common.records import DataCell, value_token, varying_factors


@dataclass(frozen=True)
class Arm:
    """One trained configuration of the study, repeated over seeds; passed to its nodes as itself."""

    key: str
    method_key: str
    setting: dict[str, Any] = field(default_factory=dict)
    student: str = DEFAULT_STUDENT
    cell: DataCell = field(default_factory=DataCell)


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


def cell_keys(cells: list[Mapping[str, Any]]) -> list[str]:
    """A short key per data cell of a study (``student`` and the data-cell columns), naming the factors
    that vary among ``cells`` as arm keys do: ``''`` for a study of one cell, else e.g.
    ``labels_10__transfer``, ``wide__labels_100``, ``noise_20``."""
    data = [DataCell.from_row(cell) for cell in cells]
    varying = varying_factors(data)
    several_students = len({cell["student"] for cell in cells}) > 1
    return [
        "__".join([str(cell["student"])] * several_students + data_cell.tokens(varying, non_default=False))
        for cell, data_cell in zip(cells, data)
    ]


def expand_arms(
    method_sweeps: Mapping[str, list[dict[str, Any]]],
    students: list[str],
    cells: tuple[DataCell, ...] | list[DataCell] = (DataCell(),),
) -> list[Arm]:
    """Every (method setting, student, data cell) combination, with readable unique keys."""
    arms = []
    varying = varying_factors(cells)
    for method_key, settings in method_sweeps.items():
        for setting, student, cell in itertools.product(settings, students, cells):
            parts = [method_key, *(f"{k}_{value_token(v)}" for k, v in setting.items())]
            if len(students) > 1:
                parts.append(student)
            arms.append(Arm("__".join(parts + cell.tokens(varying)), method_key, setting, student, cell))
    return arms
