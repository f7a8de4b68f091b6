"""Which distillation method should I use? Constraints, a noise-aware ranking and the evidence behind it.

Numbers and data classes only (the report puts them in words). Candidates (methods or method
settings) that break a cost or accuracy constraint are listed with every broken limit; the rest are
ranked by their mean metric, and a candidate that the paired test against its rank group's leader
cannot tell apart shares the leader's rank. The paired tests are the comparison's family
(:func:`~distillation_studies.analysis.comparison.pairwise_tests`, corrected as ``statistics.correction``
says), so the table and the recommendation give one verdict and one signed difference per pair.

A study gives one answer per data cell (:func:`recommend_per_cell`): a user with 10% of the labels
cannot pick the full-label arm, so candidates are ranked only against candidates of their own cell
(label fraction, transfer set, noise rate, student), and each answer reads its cell's family of tests.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from distillation_studies.common.records import DataCell
from distillation_studies.analysis.comparison import arm_cell, family_size, in_cell, oriented, pairwise_tests
from distillation_studies.analysis.metrics import BY_NAME, COST_LIMITS
from distillation_studies.analysis.pareto import TIMED_COSTS, cost_bounds
from distillation_studies.analysis.stats import Statistics, seeds_needed, t_half_width
from distillation_studies.common.errors import ConfigError

# Constraint key -> cost column stem in the summary (``<stem>_mean``, or ``<stem>`` as a fallback).
COSTS_SHOWN = tuple(COST_LIMITS.values())  # COST_LIMITS: recommendation key (a Constraints field) -> metric
MAX_SEEDS = 1000
# Keys of ``recommendation:`` that moved to the one statistics section, ``comparison:``.
MOVED_TO_COMPARISON = ("significance", "confidence")
FAILED = "failed"  # Violation key of a candidate whose training diverged or never beat chance


@dataclass(frozen=True)
class Constraints:
    """Hard limits a candidate must meet, and how the survivors are ranked; ``None`` means no limit.

    ``min_accuracy`` applies to ``test_accuracy`` (a fraction) whatever ``metric`` ranks the candidates.
    ``significance`` and ``confidence`` are deprecated here: ``comparison.significance`` and
    ``comparison.confidence`` are read by the table and the recommendation alike. Set, they still
    override the recommendation's level for one release, with a warning.
    """

    max_parameters: float | None = None
    max_flops: float | None = None
    max_latency_ms: float | None = None
    min_accuracy: float | None = None
    max_train_time_s: float | None = None
    metric: str = "test_accuracy"
    significance: float | None = None
    target_power: float = 0.8
    confidence: float | None = None

    def check(self, where: str = "constraints") -> None:
        """Raise ConfigError naming ``where.key`` for a limit that is not a positive number (or null)."""
        for key in (*COST_LIMITS, "min_accuracy"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ConfigError(f"{where}.{key}: expected a finite number or null, got {value!r}")
            if key == "min_accuracy" and not 0 <= value <= 1:
                raise ConfigError(f"{where}.{key}: must be in [0, 1] (a fraction), got {value}")
            if key != "min_accuracy" and value <= 0:
                raise ConfigError(f"{where}.{key}: must be > 0, got {value}")
        if not isinstance(self.metric, str) or self.metric not in BY_NAME:
            raise ConfigError(f"{where}.metric: expected a reported metric, one of {sorted(BY_NAME)}; got {self.metric!r}")
        for key in ("significance", "target_power", "confidence"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
                raise ConfigError(f"{where}.{key}: must be in (0, 1), got {value!r}")
        for key in MOVED_TO_COMPARISON:
            if getattr(self, key) is not None:
                warnings.warn(
                    f"{where}.{key} is deprecated and will be removed in the next release: set comparison.{key}, "
                    "the one statistics section the comparison table and the recommendation both read",
                    FutureWarning,
                    stacklevel=2,
                )

    @property
    def higher_is_better(self) -> bool:
        return BY_NAME[self.metric].higher_is_better

    def limits(self) -> dict[str, float]:
        """The constraints that are set, by key."""
        return {k: getattr(self, k) for k in (*COST_LIMITS, "min_accuracy") if getattr(self, k) is not None}

    def statistics(self, section: Statistics) -> Statistics:
        """``section`` with the deprecated ``significance``/``confidence`` overrides applied."""
        moved = {k: getattr(self, k) for k in MOVED_TO_COMPARISON if getattr(self, k) is not None}
        return dataclasses.replace(section, **moved)


@dataclass(frozen=True)
class LeaderTest:
    """The paired test that placed a candidate: against the leader of the rank group above it.

    ``diff_mean`` is candidate - leader (the comparison's sign convention).
    """

    leader: str
    n_pairs: int
    diff_mean: float
    p_adjusted: float
    within_noise: bool


@dataclass(frozen=True)
class RankedCandidate:
    """A candidate that meets the constraints, with its rank and the evidence behind it.

    ``versus`` is None for the first candidate; otherwise the test against its group's leader (the
    candidate joined the leader's rank when ``versus.within_noise``).
    """

    candidate: str
    rank: int
    tied: bool
    mean: float
    ci_low: float
    ci_high: float
    seeds: int
    costs: dict[str, float]
    run_ids: tuple[str, ...]
    versus: LeaderTest | None

    @property
    def rank_label(self) -> str:
        """'2' or, when it shares the rank, '=2'."""
        return f"={self.rank}" if self.tied else str(self.rank)


@dataclass(frozen=True)
class Violation:
    """One broken limit: ``quantity`` (a summary column stem) is ``value`` against ``key``'s ``limit``.

    ``value`` is NaN when the quantity is unknown; ``key`` is ``"metric"`` when the ranked metric is.
    """

    key: str
    quantity: str
    value: float
    limit: float | None


@dataclass(frozen=True)
class Excluded:
    """A candidate ruled out by the constraints, with every broken limit."""

    candidate: str
    violations: tuple[Violation, ...]
    run_ids: tuple[str, ...]


# Cases of the seeds verdict.
NONE_FEASIBLE, SINGLE, SEPARATED, TOO_FEW_SHARED, ZERO_DIFFERENCE, UNREACHABLE, MORE_SEEDS, NEGLIGIBLE = (
    "none_feasible", "single", "separated", "too_few_shared", "zero_difference", "unreachable", "more_seeds", "negligible"
)


@dataclass(frozen=True)
class SeedsVerdict:
    """Whether the leader is separated from the runner-up, and if not, how many seeds would do it.

    ``level`` is the per-test level the estimate assumes: ``significance / comparisons`` under Holm or
    BH (the worst case of both), ``significance`` without correction. ``negligible``: the two differ by
    less than ``statistics.smallest_difference``, so separating them is not worth more seeds.
    """

    case: str
    enough: bool
    first: str | None = None
    second: str | None = None
    n_pairs: int = 0
    diff_mean: float = math.nan
    diff_std: float = math.nan
    diff_ci_low: float = math.nan
    diff_ci_high: float = math.nan
    p_adjusted: float = math.nan
    level: float = math.nan
    needed: float | None = None


@dataclass(frozen=True)
class Recommendation:
    """Ranked candidates (ties kept as ties), excluded ones with reasons, and whether the seeds suffice."""

    metric: str
    higher_is_better: bool
    ranked: tuple[RankedCandidate, ...]
    excluded: tuple[Excluded, ...]
    seeds: SeedsVerdict
    comparisons: int
    constraints: Constraints
    statistics: Statistics

    @property
    def best(self) -> list[str]:
        """The candidates sharing rank 1 (empty when nothing meets the constraints)."""
        return [c.candidate for c in self.ranked if c.rank == 1]

    @property
    def enough_seeds(self) -> bool:
        return self.seeds.enough

    @property
    def seeds_needed(self) -> float | None:
        return self.seeds.needed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN and infinity become None, tuples become lists."""
        ranked = [{**dataclasses.asdict(c), "rank_label": c.rank_label} for c in self.ranked]
        return _jsonable(
            {
                "metric": self.metric,
                "higher_is_better": self.higher_is_better,
                "best": self.best,
                "ranked": ranked,
                "excluded": [dataclasses.asdict(e) for e in self.excluded],
                "enough_seeds": self.enough_seeds,
                "seeds_needed": self.seeds_needed,
                "seeds": dataclasses.asdict(self.seeds),
                "comparisons": self.comparisons,
                "constraints": dataclasses.asdict(self.constraints),
                "statistics": dataclasses.asdict(self.statistics),
            }
        )


def recommend(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    constraints: Constraints | None = None,
    statistics: Statistics | None = None,
    tests: pd.DataFrame | None = None,
) -> Recommendation:
    """Filter ``summary`` by ``constraints``, rank the rest by mean metric, keep indistinguishable ones tied.

    ``summary``: one row per candidate: ``candidate``, ``<metric>_mean`` and, when present, ``<metric>_std``,
    ``<metric>_ci_low``/``_ci_high``, ``seeds``, cost means (``parameters_mean``, ``flops_mean``,
    ``latency_ms_mean``, ``train_time_s_mean``), ``test_accuracy_mean`` and ``run_ids`` (list or string).
    ``runs``: one row per (candidate, seed) with ``candidate``, ``seed``, ``<metric>`` and optionally
    ``run_id``. ``tests``: the comparison's paired tests (columns ``metric``, ``arm``, ``reference``, ...)
    naming candidates; computed from ``runs`` over every candidate of ``summary`` when not given.

    Walking down the ranking, a candidate joins the current rank group when its paired test against the
    group's leader is within noise (adjusted p not below ``statistics.significance``, or fewer than 2
    shared seeds); otherwise it leads a new group whose rank is its position (1, =2, =2, 4).
    """
    constraints = Constraints() if constraints is None else constraints
    constraints.check("constraints")
    statistics = constraints.statistics(Statistics(baselines=()) if statistics is None else statistics)
    metric = constraints.metric
    _require(summary, "summary", "candidate", f"{metric}_mean")
    _require(runs, "runs", "candidate", "seed", metric)
    _no_duplicates(summary, "summary", ["candidate"])
    _no_duplicates(runs, "runs", ["candidate", "seed"])
    for key in constraints.limits():
        stem = "test_accuracy" if key == "min_accuracy" else COST_LIMITS[key]
        if _column(summary, stem) is None:
            raise ConfigError(f"constraints.{key}: the summary has no {stem}_mean column to check it against")
    if tests is None:
        candidates = runs[runs["candidate"].astype(str).isin(set(summary["candidate"].astype(str)))]
        tests = pairwise_tests(candidates, statistics, [metric], group="candidate")
    tests = tests[tests["metric"] == metric]
    if constraints.significance is not None:  # the deprecated override re-reads the family's adjusted p at its level
        tests = tests.assign(within_noise=[bool(n < 2 or not p < constraints.significance) for n, p in zip(tests["n_pairs"], tests["p_adjusted"])])

    feasible, excluded = [], []
    for _, row in summary.iterrows():
        candidate = str(row["candidate"])
        violations = _violations(row, summary, constraints)
        if "usable" in summary and not truthy(row["usable"]):  # diverged or chance-level training
            violations.insert(0, Violation(FAILED, str(row.get("failure") or "flagged unusable"), math.nan, None))
        mean = _float(row[f"{metric}_mean"])
        if math.isnan(mean):
            violations.append(Violation("metric", metric, math.nan, None))
        if violations:
            excluded.append(Excluded(candidate, tuple(violations), _run_ids(row, runs, candidate)))
        else:
            feasible.append((candidate, mean, row))
    # Best first; equal means keep the summary's order.
    sign = -1.0 if constraints.higher_is_better else 1.0
    feasible.sort(key=lambda item: sign * item[1])

    names = [c for c, _, _ in feasible]
    lookup = oriented(tests).set_index(["arm", "reference"])
    ranks, versus = _rank(names, lookup)
    ranked = []
    for j, (candidate, mean, row) in enumerate(feasible):
        low, high = _ci(row, summary, metric, mean, statistics.confidence)
        costs = {stem: _float(row[col]) for stem in COSTS_SHOWN if (col := _column(summary, stem)) is not None}
        tied = ranks.count(ranks[j]) > 1
        seeds = _seeds(row, summary, runs, candidate)
        ranked.append(
            RankedCandidate(candidate, ranks[j], tied, mean, low, high, seeds, costs, _run_ids(row, runs, candidate), versus[j])
        )
    comparisons = family_size(tests, metric)
    return Recommendation(
        metric=metric,
        higher_is_better=constraints.higher_is_better,
        ranked=tuple(ranked),
        excluded=tuple(excluded),
        seeds=_seeds_verdict(names, ranks, lookup, comparisons, constraints, statistics),
        comparisons=comparisons,
        constraints=constraints,
        statistics=statistics,
    )


@dataclass(frozen=True)
class CellAnswer:
    """The recommendation for one data cell: ``cell`` maps each ``CELL`` column to its value."""

    cell: dict[str, Any]
    recommendation: Recommendation


@dataclass(frozen=True)
class StudyRecommendation:
    """One ranked answer per data cell (best data first: no noise, most labels); no ranking mixes cells."""

    metric: str
    higher_is_better: bool
    cells: tuple[CellAnswer, ...]
    constraints: Constraints
    statistics: Statistics

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the shared settings once, then per cell its answer (``Recommendation.to_dict`` less
        the shared keys)."""
        shared = ("metric", "higher_is_better", "constraints", "statistics")
        cells = []
        for answer in self.cells:
            record = answer.recommendation.to_dict()
            cells.append({"cell": _jsonable(answer.cell), **{k: v for k, v in record.items() if k not in shared}})
        return _jsonable(
            {
                "metric": self.metric,
                "higher_is_better": self.higher_is_better,
                "family": "cell",  # each cell's answer is corrected over the pairs of that cell
                "cells": cells,
                "constraints": dataclasses.asdict(self.constraints),
                "statistics": dataclasses.asdict(self.statistics),
            }
        )


def recommend_per_cell(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    constraints: Constraints | None = None,
    statistics: Statistics | None = None,
    tests: pd.DataFrame | None = None,
) -> StudyRecommendation:
    """:func:`recommend` within each data cell of ``summary`` (its ``CELL`` columns; absent ones take
    their defaults, so a table without them is one cell).

    Each cell's candidates are ranked against each other only, with the tests of that cell: ``tests``
    (the comparison's within-cell family) or, when not given, paired tests computed per cell. Cells come
    best data first: noise rate ascending, label fraction descending, without transfer set first, then
    students as first seen.
    """
    constraints = Constraints() if constraints is None else constraints
    section = Statistics(baselines=()) if statistics is None else statistics
    cells = _cells(summary)
    answers = []
    for cell in cells:
        members = summary[in_cell(summary, cell)]
        names = set(members["candidate"].astype(str))
        cell_runs = runs[runs["candidate"].astype(str).isin(names)]
        cell_tests = None
        if tests is not None:
            cell_tests = tests[tests["arm"].astype(str).isin(names) & tests["reference"].astype(str).isin(names)]
        answers.append(CellAnswer(cell, recommend(members, cell_runs, constraints, section, cell_tests)))
    return StudyRecommendation(
        metric=constraints.metric,
        higher_is_better=constraints.higher_is_better,
        cells=tuple(answers),
        constraints=constraints,
        statistics=answers[0].recommendation.statistics if answers else constraints.statistics(section),
    )


def _cells(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The distinct cells of ``summary``, best data first (see :func:`recommend_per_cell`)."""
    seen: list[dict[str, Any]] = []
    for _, row in summary.iterrows():
        cell = arm_cell(row)
        if cell not in seen:
            seen.append(cell)
    students = {cell["student"]: i for i, cell in reversed(list(enumerate(seen)))}
    return sorted(seen, key=lambda c: (DataCell.from_row(c).sort_key(), students[c["student"]]))


# --- helpers ------------------------------------------------------------------------------------------------


def _leader_test(lookup: pd.DataFrame, candidate: str, leader: str) -> LeaderTest:
    """The family's test of ``candidate`` against ``leader`` (untested pairs count as within noise)."""
    if (candidate, leader) not in lookup.index:
        return LeaderTest(leader, 0, math.nan, math.nan, True)
    test = lookup.loc[(candidate, leader)]
    return LeaderTest(leader, int(test["n_pairs"]), float(test["diff_mean"]), float(test["p_adjusted"]), bool(test["within_noise"]))


def _rank(names: list[str], lookup: pd.DataFrame) -> tuple[list[int], list[LeaderTest | None]]:
    """Ranks down the sorted candidates: each is tested against its rank group's leader, not its neighbour."""
    ranks: list[int] = []
    versus: list[LeaderTest | None] = []
    leader = 0
    for j, name in enumerate(names):
        if j == 0:
            ranks.append(1)
            versus.append(None)
            continue
        test = _leader_test(lookup, name, names[leader])
        versus.append(test)
        if test.within_noise:
            ranks.append(ranks[leader])
        else:
            leader = j
            ranks.append(j + 1)
    return ranks, versus


def _seeds_verdict(
    names: list[str], ranks: list[int], lookup: pd.DataFrame, comparisons: int, constraints: Constraints,
    statistics: Statistics,
) -> SeedsVerdict:
    """Whether the leader is separated from the runner-up; if not, roughly how many seeds would do it."""
    if not names:
        return SeedsVerdict(NONE_FEASIBLE, True)
    if len(names) == 1:
        return SeedsVerdict(SINGLE, True, names[0])
    first, second = names[0], names[1]
    pair = lookup.loc[(second, first)] if (second, first) in lookup.index else None
    n = 0 if pair is None else int(pair["n_pairs"])
    level = statistics.significance if statistics.correction == "none" else statistics.significance / max(comparisons, 1)
    facts = {"first": first, "second": second, "n_pairs": n, "level": level}
    if pair is not None:
        facts.update({k: _float(pair.get(k)) for k in ("diff_mean", "diff_std", "diff_ci_low", "diff_ci_high", "p_adjusted")})
    if ranks[1] != 1:
        return SeedsVerdict(SEPARATED, True, **facts)
    if n < 2:
        return SeedsVerdict(TOO_FEW_SHARED, False, **facts)
    if abs(facts["diff_mean"]) < statistics.smallest_difference:
        return SeedsVerdict(NEGLIGIBLE, True, **facts)
    if math.isclose(facts["diff_mean"], 0.0, abs_tol=1e-12):
        return SeedsVerdict(ZERO_DIFFERENCE, False, needed=math.inf, **facts)
    std = 0.0 if math.isnan(facts["diff_std"]) else facts["diff_std"]
    needed = seeds_needed(facts["diff_mean"], std, significance=level, power=constraints.target_power, max_seeds=MAX_SEEDS)
    if math.isinf(needed):
        return SeedsVerdict(UNREACHABLE, False, needed=math.inf, **facts)
    return SeedsVerdict(MORE_SEEDS, False, needed=max(int(needed), n + 1), **facts)


def _violations(row: pd.Series, summary: pd.DataFrame, constraints: Constraints) -> list[Violation]:
    violations = []
    for key, limit in constraints.limits().items():
        stem = "test_accuracy" if key == "min_accuracy" else COST_LIMITS[key]
        value = _float(row[_column(summary, stem)])
        if stem in TIMED_COSTS:  # met only beyond run-to-run noise: the high end of its interval (pareto.cost_bounds)
            high = float(cost_bounds(summary, _column(summary, stem))[1][summary.index.get_loc(row.name)])
            if not (math.isnan(high) or high == value):
                stem, value = f"{stem} (upper end of its run-to-run noise)", high
        broken = value < limit if key == "min_accuracy" else value > limit
        if math.isnan(value) or broken:
            violations.append(Violation(key, stem, value, limit))
    return violations


def _column(summary: pd.DataFrame, stem: str) -> str | None:
    for column in (f"{stem}_mean", stem):
        if column in summary.columns:
            return column
    return None


def _ci(row: pd.Series, summary: pd.DataFrame, metric: str, mean: float, confidence: float) -> tuple[float, float]:
    """The summary's own interval when it has one, else the t interval from its std and seed count."""
    if {f"{metric}_ci_low", f"{metric}_ci_high"} <= set(summary.columns):
        low, high = _float(row[f"{metric}_ci_low"]), _float(row[f"{metric}_ci_high"])
        if not (math.isnan(low) or math.isnan(high)):
            return low, high
    if f"{metric}_std" in summary.columns and "seeds" in summary.columns:
        std, n = _float(row[f"{metric}_std"]), _float(row["seeds"])
        if n >= 2 and not math.isnan(std):
            half = t_half_width(std, n, confidence)
            return mean - half, mean + half
    return math.nan, math.nan


def _seeds(row: pd.Series, summary: pd.DataFrame, runs: pd.DataFrame, candidate: str) -> int:
    if "seeds" in summary.columns and not math.isnan(_float(row["seeds"])):
        return int(row["seeds"])
    return int((runs["candidate"].astype(str) == candidate).sum())


def _run_ids(row: pd.Series, runs: pd.DataFrame, candidate: str) -> tuple[str, ...]:
    """The summary's ``run_ids`` (list, or a comma/space separated string), else ``run_id`` from ``runs``."""
    raw = row.get("run_ids") if "run_ids" in row.index else None
    if isinstance(raw, str):
        ids = [part for part in raw.replace(",", " ").split() if part]
    elif isinstance(raw, (list, tuple, np.ndarray, pd.Series)):
        ids = [str(part) for part in raw if part is not None and not (isinstance(part, float) and math.isnan(part))]
    else:
        ids = []
    if not ids and "run_id" in runs.columns:
        mine = runs[runs["candidate"].astype(str) == candidate].sort_values("seed")
        ids = [str(r) for r in mine["run_id"] if isinstance(r, str) and r]
    return tuple(ids)


def _require(df: pd.DataFrame, where: str, *columns: str) -> None:
    for column in columns:
        if column not in df.columns:
            raise ConfigError(f"{where}.{column}: required column missing; columns: {list(df.columns)}")


def _no_duplicates(df: pd.DataFrame, where: str, keys: list[str]) -> None:
    duplicated = df[df.duplicated(keys, keep=False)]
    if not duplicated.empty:
        first = duplicated.iloc[0]
        named = ", ".join(f"{k}={first[k]!r}" for k in keys)
        raise ConfigError(f"{where}: {named} appears more than once; expected one row per {' and '.join(keys)}")


def truthy(value: Any) -> bool:
    """A ``usable`` cell as read back from CSV or parquet (bool, numpy bool, or 'True'/'False')."""
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def failed(excluded: Excluded) -> bool:
    """Whether a candidate was excluded because its training failed (not by a constraint)."""
    return any(v.key == FAILED for v in excluded.violations)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    return value
