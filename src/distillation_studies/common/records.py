"""The study's data vocabulary, one record per word: a data cell and a run's labels.

A *data cell* (label fraction, transfer set, label-noise rate) is the user's situation, not a choice:
arms are compared within it, its data set is derived for it, and the report names it. :class:`DataCell`
owns everything a factor needs: its field (and so its column, history key and MLflow param), its grid
key and check, its token in arm keys and data-set names, its words, and its default for runs saved
before it existed. :class:`RunLabels` is what a trained student is labelled with; every history
summary, metrics row and MLflow param set is made from it. The layer test keeps the factor names from
appearing as string keys anywhere else: code outside reads fields or the constants below.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Collection, Mapping

from distillation_studies.common.errors import ConfigError
from distillation_studies.common.names import DEFAULT_STUDENT

# The factor names (fields of DataCell, columns of every table, keys of histories and MLflow params).
LABEL_FRACTION, TRANSFER_SET, LABEL_NOISE = "label_fraction", "transfer_set", "label_noise"
TRANSFER_TOKEN = "transfer"


def value_token(value: Any) -> str:
    """A value as a namespace-safe token: 0.5 -> '0p5', 4.0 -> '4', True -> 'true'."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).replace(".", "p").replace("-", "m")


def fraction_token(fraction: float) -> str:
    """Label fraction as a percentage token: 0.1 -> 'labels_10'."""
    return f"labels_{value_token(round(100 * fraction, 6))}"


def noise_token(rate: float) -> str:
    """Label-noise rate as a percentage token: 0.2 -> 'noise_20'."""
    return f"noise_{value_token(round(100 * rate, 6))}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class DataCell:
    """The data an arm trains on. Defaults are the published protocol: every label, clean, no transfer set."""

    label_fraction: float = 1.0
    transfer_set: bool = False  # the unlabelled rest of the training split is kept for the teacher's terms
    label_noise: float = 0.0  # fraction of training (and validation) labels corrupted

    # The grid key of each factor in conf/ (``grid.label_fractions: [0.1, 1.0]``).
    GRID_KEYS: ClassVar[dict[str, str]] = {
        LABEL_FRACTION: "label_fractions", TRANSFER_SET: TRANSFER_SET, LABEL_NOISE: LABEL_NOISE,
    }

    def __post_init__(self) -> None:
        # Normalised so that equal situations are equal records (numpy and CSV values included).
        object.__setattr__(self, LABEL_FRACTION, float(self.label_fraction))
        object.__setattr__(self, TRANSFER_SET, bool(self.transfer_set) and self.label_fraction < 1.0)
        object.__setattr__(self, LABEL_NOISE, float(self.label_noise))

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """The factor names, in table order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "DataCell":
        """The cell of a table row, history summary or dict; a factor a run saved before it existed
        (absent or NaN) takes its default."""
        values = {name: row.get(name) for name in cls.columns()}
        return cls(**{name: value for name, value in values.items() if not _missing(value)})

    def as_dict(self) -> dict[str, Any]:
        """Column -> value, for rows, summaries and params."""
        return {name: getattr(self, name) for name in self.columns()}

    def replace(self, **changes: Any) -> "DataCell":
        return dataclasses.replace(self, **changes)

    @property
    def is_published_protocol(self) -> bool:
        """Whether this is the cell published numbers are measured in: every label, clean, no transfer set."""
        return self == DataCell()

    def tokens(self, varying: Collection[str] = (), *, non_default: bool = True) -> list[str]:
        """Tokens naming this cell among others: a factor is named when it is in ``varying`` or (with
        ``non_default``) differs from its default; a transfer set is named with its label fraction."""
        default = DataCell()

        def shown(name: str) -> bool:
            return name in varying or (non_default and getattr(self, name) != getattr(default, name))

        parts = []
        if shown(LABEL_FRACTION) or shown(TRANSFER_SET):
            parts.append(fraction_token(self.label_fraction))
        if self.transfer_set and shown(TRANSFER_SET):
            parts.append(TRANSFER_TOKEN)
        if shown(LABEL_NOISE):
            parts.append(noise_token(self.label_noise))
        return parts

    @property
    def dataset(self) -> str:
        """The catalog name of the splits this cell trains on: ``model_input[_noise_20][_labels_10[_transfer]]``."""
        parts = ["model_input"]
        if self.label_noise > 0.0:
            parts.append(noise_token(self.label_noise))
        if self.label_fraction < 1.0:
            parts.append(fraction_token(self.label_fraction))
            if self.transfer_set:
                parts.append(TRANSFER_TOKEN)
        return "_".join(parts)

    @property
    def source(self) -> "DataCell | None":
        """The cell whose splits this one's are derived from (None for the plain splits): the label
        fraction is drawn from the noisy splits of its rate, the noise from the plain splits."""
        if self.label_fraction < 1.0:
            return DataCell(label_noise=self.label_noise)
        return DataCell() if self.label_noise > 0.0 else None

    def description(self) -> str:
        """The cell as a user names their situation: 'all labels', '10% labels + transfer set',
        '10% labels, no transfer set, 20% label noise'."""
        parts = ["all labels" if self.label_fraction >= 1.0 else f"{100 * self.label_fraction:g}% labels"]
        if self.label_fraction < 1.0:
            parts[0] += " + transfer set" if self.transfer_set else ", no transfer set"
        if self.label_noise > 0:
            parts.append(f"{100 * self.label_noise:g}% label noise")
        return ", ".join(parts)

    def sort_key(self) -> tuple:
        """Best data first: clean before noisy, more labels before fewer, without a transfer set first."""
        return (self.label_noise, -self.label_fraction, self.transfer_set)

    @classmethod
    def grid_cells(cls, grid: Mapping[str, Any]) -> tuple["DataCell", ...]:
        """Every cell of a ``grid:`` section (checked, each error naming its key), in grid order; a
        transfer set needs unlabelled samples, so full-label cells come without one."""
        keys = cls.GRID_KEYS
        fractions = check_label_fractions(grid.get(keys[LABEL_FRACTION], [1.0]), f"grid.{keys[LABEL_FRACTION]}")
        transfer = check_transfer_sets(grid.get(keys[TRANSFER_SET], [False]), fractions, f"grid.{keys[TRANSFER_SET]}")
        noise = check_label_noise(grid.get(keys[LABEL_NOISE], [0.0]), f"grid.{keys[LABEL_NOISE]}")
        cells = [cls(f, t, n) for f, t, n in itertools.product(fractions, transfer, noise)]
        return tuple(dict.fromkeys(cells))


def varying_factors(cells: Collection[DataCell]) -> set[str]:
    """The factors that take more than one value among ``cells``."""
    return {name for name in DataCell.columns() if len({getattr(c, name) for c in cells}) > 1}


@dataclass(frozen=True)
class RunLabels:
    """What one trained student is labelled with: its arm, method, setting, student, data cell and seed,
    and what its data really held. The one source of its history summary, metrics row and MLflow params."""

    arm: str
    method: str
    registered_method: str
    setting: Mapping[str, Any]
    student: str = DEFAULT_STUDENT
    cell: DataCell = field(default_factory=DataCell)
    seed: int = 0
    train_size: int = 0
    labelled_size: int = 0
    labels_changed: float = 0.0  # the fraction of training labels the noise model changed

    @classmethod
    def arm_columns(cls) -> list[str]:
        """The columns that label an arm in the comparison table (the same for each of its seeds)."""
        return ["arm", "method", "registered_method", "setting", "student", *DataCell.columns(), "labels_changed", "train_size"]

    def summary(self) -> dict[str, Any]:
        """History summary keys (also the MLflow params of the run): the setting as a dict."""
        return {
            "arm": self.arm, "method": self.method, "registered_method": self.registered_method,
            "setting": dict(self.setting), "student": self.student, **self.cell.as_dict(),
            "train_size": self.train_size, "labelled_size": self.labelled_size,
            "labels_changed": self.labels_changed, "seed": self.seed,
        }

    params = summary  # MLflow params of a nested run: what really ran, the same keys

    def row(self) -> dict[str, Any]:
        """A metrics row's labels: the setting as ``k=v, ...`` (``default``) and one ``hp_<name>`` column each."""
        setting = ", ".join(f"{k}={v}" for k, v in self.setting.items()) or "default"
        return {**self.summary(), "setting": setting, **{f"hp_{k}": v for k, v in self.setting.items()}}

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> "RunLabels":
        """The labels of a history summary; keys a run saved before them take their defaults."""
        method = str(summary["method"])
        train_size = int(summary.get("train_size", 0))
        return cls(
            arm=str(summary["arm"]), method=method, registered_method=str(summary.get("registered_method", method)),
            setting=dict(summary.get("setting") or {}), student=str(summary.get("student", DEFAULT_STUDENT)),
            cell=DataCell.from_row(summary), seed=int(summary.get("seed", 0)), train_size=train_size,
            labelled_size=int(summary.get("labelled_size", train_size)),
            labels_changed=float(summary.get("labels_changed", 0.0)),
        )


# ---- the grid's checks of each factor's values -------------------------------------------------------------


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
