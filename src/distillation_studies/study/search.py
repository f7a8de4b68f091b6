"""The ``search:`` section: per-method search spaces and one compute budget for the whole search.

A search study tunes each method that declares ``methods.<key>.search`` and races every method's best
trial against the others (``analysis.search_driver`` runs it). Everything here is checked before any
training: each hyperparameter must be a field of the method's config, its range well formed, and both
ends of the range (or every choice) accepted by the method's own config check, as sweeps are.

The budget is planned for the worst case (no trial fails, no arm is dropped by the race), so the
search never spends more than ``budget_epochs``: the full race is reserved first (racing seeds is what
makes the choice trustworthy), then each tunable method gets the most trials, up to
``trials_per_method`` and the same number for every method, whose rungs still fit. Only when one trial
per method with the full race does not fit are race seeds given up, down to the two a first look needs.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from distillation_studies.analysis.search_driver import (
    MIN_RACE_SEEDS,
    fit_budget,
    halving_schedule,
    rung_epochs,
    worst_case_epochs,
)
from distillation_studies.common.config import parse_dataclass
from distillation_studies.common.errors import ConfigError
from distillation_studies.study import limits

if TYPE_CHECKING:  # schema imports this module: the type only
    from distillation_studies.study.schema import MethodEntry

SEARCH_KEYS = [
    "budget_epochs", "trials_per_method", "min_epochs", "max_epochs", "eta", "race_seeds", "confirmation_seeds",
    "finalists", "race_alpha", "sampler_seed", "waves",
]
RANGE_KEYS = ["low", "high", "log", "integer"]
# ``finalists: all``: every method the race could not drop goes to the confirmation (one per method at most).
ALL_SURVIVORS = "all"
CHOICE_KEYS = ["choices"]


@dataclass(frozen=True)
class Hyperparameter:
    """One tuned value: a range ``[low, high]`` (``log`` scale, ``integer`` values) or a list of ``choices``."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None  # categorical instead of a range


@dataclass(frozen=True)
class SearchSpace:
    """What the search may vary for one study method; no hyperparameters: one fixed configuration."""

    method_key: str  # key under methods:
    method: str  # registry name
    hyperparameters: tuple[Hyperparameter, ...]  # empty: a fixed method (no `search:`), one trial

    @property
    def fixed(self) -> bool:
        return not self.hyperparameters


@dataclass(frozen=True)
class SearchConfig:
    """The validated ``search:`` section with every method's space; budgets in student epochs."""

    spaces: tuple[SearchSpace, ...]  # one per study method, in the order of methods:
    budget_epochs: float
    trials_per_method: int  # as configured (upper bound)
    min_epochs: int
    max_epochs: int
    eta: int = 3
    race_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    confirmation_seeds: tuple[int, ...] = (100, 101, 102)
    finalists: int = 3  # at most this many race survivors are confirmed; ``all`` in YAML: every survivor
    race_alpha: float = 0.05
    sampler_seed: int = 0
    waves: int = 2

    def check(self, where: str) -> None:
        for key in ("budget_epochs", "trials_per_method", "min_epochs", "max_epochs", "finalists", "waves"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{where}.{key}: must be > 0, got {getattr(self, key)}")
        if self.max_epochs > limits.MAX_EPOCHS:
            raise ConfigError(f"{where}.max_epochs: {self.max_epochs}; at most {limits.MAX_EPOCHS} are allowed")
        if self.min_epochs > self.max_epochs:
            raise ConfigError(
                f"{where}.min_epochs: {self.min_epochs} is more than max_epochs={self.max_epochs} (the first rung "
                "must not train longer than the last)"
            )
        if self.eta < 2:
            raise ConfigError(f"{where}.eta: must be an integer >= 2 (keep 1/eta of the trials at each rung), got {self.eta}")
        if not 0.0 < self.race_alpha < 1.0:
            raise ConfigError(f"{where}.race_alpha: must be in (0, 1), got {self.race_alpha}")
        limits.check_seed_value(self.sampler_seed, f"{where}.sampler_seed")
        _check_seeds(self.race_seeds, f"{where}.race_seeds", MIN_RACE_SEEDS)
        _check_seeds(self.confirmation_seeds, f"{where}.confirmation_seeds", 1)
        shared = sorted(set(self.race_seeds) & set(self.confirmation_seeds))
        if shared:
            raise ConfigError(
                f"{where}.confirmation_seeds: {shared} are also race_seeds; confirmation needs fresh seeds, "
                "disjoint from the ones the selection saw"
            )
        self.plan()  # the budget fits, or a ConfigError naming search.budget_epochs

    def rungs(self) -> tuple[int, ...]:
        """Training lengths of successive halving: ``min_epochs * eta**k`` below ``max_epochs``, then ``max_epochs``."""
        return rung_epochs(self.min_epochs, self.max_epochs, self.eta)

    def schedule(self, trials: int) -> tuple[tuple[int, int], ...]:
        """(epochs, trials trained) of each rung a method with ``trials`` trials visits when none fails."""
        return halving_schedule(trials, self.rungs(), self.eta)

    def worst_case_epochs(self, trials: int, race_seeds: int) -> float:
        """Epochs spent with ``trials`` per tunable method when nothing fails and the race drops nobody."""
        counts = [1 if space.fixed else trials for space in self.spaces]
        return worst_case_epochs(counts, self.rungs(), self.eta, race_seeds)

    def plan(self) -> tuple[int, int]:
        """(trials per tunable method, race seeds used) whose worst case fits ``budget_epochs``."""
        fitted = fit_budget(self.worst_case_epochs, self.budget_epochs, self.trials_per_method, len(self.race_seeds))
        if fitted is not None:
            return fitted
        seeds = MIN_RACE_SEEDS if len(self.spaces) > 1 else 1
        raise ConfigError(
            f"search.budget_epochs: {self.budget_epochs:g} epochs cannot pay for the smallest search, one trial of "
            f"each of the {len(self.spaces)} method(s) trained for max_epochs={self.max_epochs} on {seeds} race "
            f"seed(s) = {self.worst_case_epochs(1, MIN_RACE_SEEDS):g} epochs; raise it or lower search.max_epochs"
        )

    def trials_for(self, space: SearchSpace) -> int:
        """1 for a fixed method; else the planned number of trials (after the budget fit)."""
        return 1 if space.fixed else self.plan()[0]

    def planned_race_seeds(self) -> tuple[int, ...]:
        """The race seeds the budget pays for, in order (all of ``race_seeds`` unless the budget is tight)."""
        return self.race_seeds[: self.plan()[1]]


def parse_search(
    raw: Mapping[str, Any] | None, methods: tuple[MethodEntry, ...], student_epochs: int
) -> SearchConfig | None:
    """The ``search:`` section checked against the study's methods; None for a study without one."""
    searched = [entry for entry in methods if entry.search is not None]
    if raw is None:
        if searched:
            raise ConfigError(
                f"methods.{searched[0].key}.search: needs a top-level search: section (budget_epochs, "
                "trials_per_method, min_epochs ...) that sets the budget"
            )
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"search: must be a mapping with keys {SEARCH_KEYS}, got {raw!r}")
    unknown = sorted(set(raw) - set(SEARCH_KEYS))
    if unknown:
        raise ConfigError(f"search.{unknown[0]}: unknown key; allowed keys: {SEARCH_KEYS}")
    for key in ("budget_epochs", "trials_per_method", "min_epochs"):
        if key not in raw:
            raise ConfigError(f"search.{key}: required in a search study")
    spaces = tuple(parse_space(entry) for entry in methods)
    finalists = raw.get("finalists")
    if isinstance(finalists, str) and finalists != ALL_SURVIVORS:
        raise ConfigError(f"search.finalists: a count or {ALL_SURVIVORS!r} (every survivor of the race), got {finalists!r}")
    raw = {**raw, "finalists": len(spaces)} if finalists == ALL_SURVIVORS else raw
    return parse_dataclass(SearchConfig, {"max_epochs": student_epochs, **raw, "spaces": spaces}, "search")


def _check_seeds(seeds: tuple[int, ...], where: str, least: int) -> None:
    if len(seeds) < least:
        raise ConfigError(f"{where}: at least {least} seed(s) are needed, got {list(seeds)}")
    for seed in seeds:
        limits.check_seed_value(seed, where)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: seeds must be distinct, got {list(seeds)}")


def parse_space(entry: MethodEntry) -> SearchSpace:
    """One method's ``search:`` mapping as a space; every end of every range passes the method's config check."""
    where = f"methods.{entry.key}.search"
    raw = entry.search
    if raw is None:
        return SearchSpace(entry.key, entry.method, ())
    config_class = type(entry.config)
    names = [f.name for f in dataclasses.fields(config_class)]
    if not names:
        raise ConfigError(f"{where}: method {entry.method!r} has no hyperparameters, nothing to tune; remove search:")
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: must map hyperparameter names to ranges or choices, e.g. {{{names[0]}: {{low: .., high: ..}}}}")
    hints = typing.get_type_hints(config_class)
    hyperparameters = []
    for name, spec in raw.items():
        if name not in names:
            raise ConfigError(f"{where}.{name}: unknown hyperparameter; {entry.key}'s are {names}")
        hyperparameter = parse_hyperparameter(name, spec, f"{where}.{name}", hints[name] is int)
        for value in _ends(hyperparameter):
            _check_value(entry, config_class, name, value, f"{where}.{name}")
        hyperparameters.append(hyperparameter)
    return SearchSpace(entry.key, entry.method, tuple(hyperparameters))


def parse_hyperparameter(name: str, spec: Any, where: str, integer_field: bool = False) -> Hyperparameter:
    """``{low, high, log?, integer?}`` or ``{choices: [...]}``, well formed (the values are checked elsewhere)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: must be a mapping {{low: .., high: ..}} or {{choices: [..]}}, got {spec!r}")
    if "choices" in spec:
        unknown = sorted(set(spec) - set(CHOICE_KEYS))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: not allowed with choices; a hyperparameter is a range or choices")
        choices = spec["choices"]
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(f"{where}.choices: must be a non-empty list of values, got {choices!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}.choices: values must be distinct, got {list(choices)}")
        return Hyperparameter(name, choices=tuple(choices))
    unknown = sorted(set(spec) - set(RANGE_KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; allowed keys: {RANGE_KEYS} or {CHOICE_KEYS}")
    for key in ("low", "high"):
        value = spec.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}.{key}: required, a finite number, got {value!r}")
    for key in ("log", "integer"):
        if not isinstance(spec.get(key, False), bool):
            raise ConfigError(f"{where}.{key}: must be true or false, got {spec[key]!r}")
    low, high, log, integer = spec["low"], spec["high"], spec.get("log", False), spec.get("integer", False)
    if low >= high:
        raise ConfigError(f"{where}: empty or inverted range, low={low} must be below high={high}")
    if log and low <= 0:
        raise ConfigError(f"{where}.low: a log range needs low > 0, got {low}")
    if integer_field and not integer:
        raise ConfigError(f"{where}.integer: this hyperparameter is an integer; add integer: true")
    if integer:
        bad = next((v for v in (low, high) if not float(v).is_integer()), None)
        if bad is not None:
            raise ConfigError(f"{where}: an integer range needs integer bounds, got {bad}")
        low, high = int(low), int(high)
    return Hyperparameter(name, low, high, log, integer)


def _ends(hyperparameter: Hyperparameter) -> tuple[Any, ...]:
    """The values whose acceptance stands for the whole space: both ends of a range, or every choice."""
    if hyperparameter.choices is not None:
        return hyperparameter.choices
    return hyperparameter.low, hyperparameter.high


def _check_value(entry: MethodEntry, config_class: type, name: str, value: Any, where: str) -> None:
    try:
        parse_dataclass(config_class, {**entry.raw, name: value}, f"methods.{entry.key}")
    except ConfigError as error:
        raise ConfigError(f"{where}: {value!r} is refused by {entry.key}'s config: {error}") from None
