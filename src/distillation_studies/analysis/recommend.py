"""Which distillation method should I use? Constraints, a noise-aware ranking and the evidence behind it.

Pure pandas/scipy: candidates (methods or method settings) that break a cost or accuracy constraint are
listed with the reason; the rest are ranked by their mean metric, and candidates that paired tests over
shared seeds cannot tell apart (Holm-corrected) share a rank instead of being ordered by noise.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from distillation_studies.common.errors import ConfigError
from distillation_studies.analysis.stats import adjust_p_values, paired_difference, seeds_needed

# Metrics where a smaller value is better; every other metric is maximised.
LOWER_IS_BETTER = frozenset({"test_nll", "test_ece", "test_kl_to_teacher", "nll", "ece"})
# Constraint key -> cost column stem in the summary (``<stem>_mean``, or ``<stem>`` as a fallback).
COST_LIMITS = {
    "max_parameters": "parameters",
    "max_flops": "flops",
    "max_latency_ms": "latency_ms",
    "max_train_time_s": "train_time_s",
}
COSTS_SHOWN = ("parameters", "flops", "latency_ms", "train_time_s")
MAX_SEEDS = 1000
FAILED = "training failed:"  # reason prefix of candidates whose training diverged or never beat chance


@dataclass(frozen=True)
class Constraints:
    """Hard limits a candidate must meet, and how the survivors are ranked; ``None`` means no limit.

    ``min_accuracy`` applies to ``test_accuracy`` (a fraction) whatever ``metric`` ranks the candidates.
    """

    max_parameters: float | None = None
    max_flops: float | None = None
    max_latency_ms: float | None = None
    min_accuracy: float | None = None
    max_train_time_s: float | None = None
    metric: str = "test_accuracy"
    significance: float = 0.05
    target_power: float = 0.8
    confidence: float = 0.95

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
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"{where}.metric: expected a metric name such as 'test_accuracy', got {self.metric!r}")
        for key in ("significance", "target_power", "confidence"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
                raise ConfigError(f"{where}.{key}: must be in (0, 1), got {value!r}")

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in LOWER_IS_BETTER

    def limits(self) -> dict[str, float]:
        """The constraints that are set, by key."""
        return {k: getattr(self, k) for k in (*COST_LIMITS, "min_accuracy") if getattr(self, k) is not None}


@dataclass(frozen=True)
class RankedCandidate:
    """A candidate that meets the constraints, with its rank and the evidence behind it."""

    candidate: str
    rank: int
    tied: bool
    mean: float
    ci_low: float
    ci_high: float
    seeds: int
    costs: dict[str, float]
    run_ids: tuple[str, ...]
    comparison: str
    reason: str

    @property
    def rank_label(self) -> str:
        """'2' or, when it shares the rank, '=2'."""
        return f"={self.rank}" if self.tied else str(self.rank)


@dataclass(frozen=True)
class Excluded:
    """A candidate ruled out by the constraints, with every broken limit."""

    candidate: str
    reasons: tuple[str, ...]
    run_ids: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class Recommendation:
    """Ranked candidates (ties kept as ties), excluded ones with reasons, and whether the seeds suffice."""

    metric: str
    higher_is_better: bool
    ranked: tuple[RankedCandidate, ...]
    excluded: tuple[Excluded, ...]
    enough_seeds: bool
    seeds_message: str
    seeds_needed: float | None
    comparisons: int
    constraints: Constraints

    @property
    def best(self) -> list[str]:
        """The candidates sharing rank 1 (empty when nothing meets the constraints)."""
        return [c.candidate for c in self.ranked if c.rank == 1]

    def to_markdown(self) -> str:
        direction = "higher is better" if self.higher_is_better else "lower is better"
        limits = self.constraints.limits()
        lines = [f"## Recommendation: {self.metric} ({direction})", ""]
        lines.append(
            "Constraints: " + (", ".join(f"{k} = {_number(v)}" for k, v in limits.items()) if limits else "none") + "."
        )
        lines.append("")
        failed = [e for e in self.excluded if e.reasons[0].startswith(FAILED)]
        if not self.ranked:
            lines += [
                "No candidate is usable: every arm failed its training (see below) or broke a constraint, so "
                "nothing is ranked."
                if failed
                else "No candidate meets the constraints.",
                "",
            ]
        for entry in self.ranked:
            lines += [f"{entry.rank_label}. **{entry.candidate}**: {entry.reason}", ""]
        if self.ranked:
            lines += [
                f"Candidates share a rank when the paired difference (over shared seeds) to their group's leader is "
                f"not significant at {self.constraints.significance} after Holm correction over "
                f"{self.comparisons} pairwise comparison(s).",
                "",
            ]
        lines += [f"**Enough seeds:** {'yes' if self.enough_seeds else 'no'}. {self.seeds_message}", ""]
        if failed:
            lines += ["**Failed training (never ranked):**", ""]
            lines += [f"- **{entry.candidate}**: {entry.reason}" for entry in failed]
            lines.append("")
        if len(failed) < len(self.excluded):
            lines += ["**Excluded by the constraints:**", ""]
            lines += [f"- **{entry.candidate}**: {entry.reason}" for entry in self.excluded if entry not in failed]
            lines.append("")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN and infinity become None, tuples become lists."""
        ranked = [{**dataclasses.asdict(c), "rank_label": c.rank_label} for c in self.ranked]
        excluded = [{**dataclasses.asdict(e), "reason": e.reason} for e in self.excluded]
        return _jsonable(
            {
                "metric": self.metric,
                "higher_is_better": self.higher_is_better,
                "best": self.best,
                "ranked": ranked,
                "excluded": excluded,
                "enough_seeds": self.enough_seeds,
                "seeds_message": self.seeds_message,
                "seeds_needed": self.seeds_needed,
                "comparisons": self.comparisons,
                "constraints": dataclasses.asdict(self.constraints),
            }
        )


def recommend(summary: pd.DataFrame, runs: pd.DataFrame, constraints: Constraints | None = None) -> Recommendation:
    """Filter ``summary`` by ``constraints``, rank the rest by mean metric, keep indistinguishable ones tied.

    ``summary``: one row per candidate: ``candidate``, ``<metric>_mean`` and, when present, ``<metric>_std``,
    ``<metric>_ci_low``/``_ci_high``, ``seeds``, cost means (``parameters_mean``, ``flops_mean``,
    ``latency_ms_mean``, ``train_time_s_mean``), ``test_accuracy_mean`` and ``run_ids`` (list or string).
    ``runs``: one row per (candidate, seed) with ``candidate``, ``seed``, ``<metric>`` and optionally
    ``run_id``; paired tests use the seeds two candidates share.

    Walking down the ranking, a candidate joins the current rank group when its paired difference to the
    group's leader is not significant after Holm correction over all pairwise comparisons among the
    candidates that meet the constraints (or when they share fewer than 2 seeds); otherwise it leads a new
    group whose rank is its position (1, =2, =2, 4).
    """
    constraints = Constraints() if constraints is None else constraints
    constraints.check("constraints")
    metric = constraints.metric
    _require(summary, "summary", "candidate", f"{metric}_mean")
    _require(runs, "runs", "candidate", "seed", metric)
    _no_duplicates(summary, "summary", ["candidate"])
    _no_duplicates(runs, "runs", ["candidate", "seed"])
    for key in constraints.limits():
        stem = "test_accuracy" if key == "min_accuracy" else COST_LIMITS[key]
        if _column(summary, stem) is None:
            raise ConfigError(f"constraints.{key}: the summary has no {stem}_mean column to check it against")

    feasible, excluded = [], []
    for _, row in summary.iterrows():
        candidate = str(row["candidate"])
        reasons = _violations(row, summary, constraints)
        if "usable" in summary and not _truthy(row["usable"]):  # diverged or chance-level training
            reasons.insert(0, f"{FAILED} {row.get('failure') or 'flagged unusable'}")
        mean = _float(row[f"{metric}_mean"])
        if math.isnan(mean):
            reasons.append(f"{metric} unknown (no finished runs)")
        if reasons:
            excluded.append(Excluded(candidate, tuple(reasons), _run_ids(row, runs, candidate)))
        else:
            feasible.append((candidate, mean, row))
    # Best first; equal means keep the summary's order.
    sign = -1.0 if constraints.higher_is_better else 1.0
    feasible.sort(key=lambda item: sign * item[1])

    names = [c for c, _, _ in feasible]
    pairs = _pairwise(names, runs, metric, constraints.higher_is_better)
    comparisons = sum(not math.isnan(p["p_value"]) for p in pairs.values())

    ranks, comparison_notes, tied_groups = [], [], {}
    leader = 0
    for j, name in enumerate(names):
        if j == 0:
            ranks.append(1)
            comparison_notes.append(f"highest mean {metric}" if constraints.higher_is_better else f"lowest mean {metric}")
            continue
        pair = pairs[(leader, j)]
        if _separable(pair, constraints.significance):
            comparison_notes.append(f"behind {names[leader]} beyond noise ({_pair_text(pair)})")
            leader = j
            ranks.append(j + 1)
        else:
            ranks.append(ranks[leader])
            if pair["n_pairs"] < 2:
                comparison_notes.append(
                    f"tied with {names[leader]} by default: {pair['n_pairs']} shared seed(s), too few for a paired test"
                )
            else:
                comparison_notes.append(f"within noise of {names[leader]} ({_pair_text(pair)})")
    for rank in ranks:
        tied_groups[rank] = tied_groups.get(rank, 0) + 1

    ranked = []
    for j, (candidate, mean, row) in enumerate(feasible):
        low, high = _ci(row, summary, metric, mean, constraints.confidence)
        seeds = _seeds(row, summary, runs, candidate)
        costs = {stem: _float(row[col]) for stem in COSTS_SHOWN if (col := _column(summary, stem)) is not None}
        run_ids = _run_ids(row, runs, candidate)
        tied = tied_groups[ranks[j]] > 1
        label = f"={ranks[j]}" if tied else str(ranks[j])
        half = (high - low) / 2
        interval = "" if math.isnan(half) else f" ± {half:.4f}"
        ci_text = f"{constraints.confidence:.0%} CI" if not math.isnan(half) else "no CI"
        cost_text = ", ".join(_cost_text(stem, value) for stem, value in costs.items()) or "costs not recorded"
        evidence = f"MLflow runs {', '.join(run_ids)}" if run_ids else "no MLflow run ids recorded"
        reason = (
            f"{metric} {mean:.4f}{interval} ({ci_text}, {seeds} seed(s)); {cost_text}; "
            f"rank {label}: {comparison_notes[j]}; evidence: {evidence}"
        )
        ranked.append(
            RankedCandidate(candidate, ranks[j], tied, mean, low, high, seeds, costs, run_ids, comparison_notes[j], reason)
        )

    enough, message, needed = _seeds_verdict(names, ranks, pairs, comparisons, constraints)
    return Recommendation(
        metric=metric,
        higher_is_better=constraints.higher_is_better,
        ranked=tuple(ranked),
        excluded=tuple(excluded),
        enough_seeds=enough,
        seeds_message=message,
        seeds_needed=needed,
        comparisons=comparisons,
        constraints=constraints,
    )


# --- helpers ------------------------------------------------------------------------------------------------


def _pairwise(names: list[str], runs: pd.DataFrame, metric: str, higher_is_better: bool) -> dict[tuple[int, int], dict]:
    """Paired test for every (better-ranked i, worse-ranked j); diff is oriented so positive favours i."""
    series = {
        name: runs[runs["candidate"].astype(str) == name].set_index("seed")[metric].astype(float) for name in names
    }
    pairs: dict[tuple[int, int], dict] = {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            paired = pd.concat([series[names[i]].rename("a"), series[names[j]].rename("b")], axis=1, join="inner")
            a, b = paired["a"].to_numpy(), paired["b"].to_numpy()
            if not higher_is_better:
                a, b = b, a
            diff = a - b
            test = paired_difference(a, b)
            pairs[(i, j)] = {
                "n_pairs": len(diff),
                "diff_mean": test["diff_mean"],
                "diff_std": float(diff.std(ddof=1)) if len(diff) > 1 else math.nan,
                "all_zero": bool(len(diff) and np.allclose(diff, 0.0)),
                "p_value": test["p_value"],
            }
    keys = list(pairs)
    adjusted = adjust_p_values([pairs[k]["p_value"] for k in keys], "holm")
    for key, p in zip(keys, adjusted):
        pairs[key]["p_adjusted"] = float(p)
    return pairs


def _separable(pair: dict, significance: float) -> bool:
    return pair["n_pairs"] >= 2 and not math.isnan(pair["p_adjusted"]) and pair["p_adjusted"] < significance


def _pair_text(pair: dict) -> str:
    return (
        f"paired difference {pair['diff_mean']:+.4f} over {pair['n_pairs']} shared seed(s), "
        f"Holm-adjusted p = {pair['p_adjusted']:.3g}"
    )


def _seeds_verdict(
    names: list[str], ranks: list[int], pairs: dict, comparisons: int, constraints: Constraints
) -> tuple[bool, str, float | None]:
    """Whether the leader is separated from the runner-up; if not, roughly how many seeds would do it."""
    if not names:
        return True, "No candidate meets the constraints, so there is nothing to separate.", None
    if len(names) == 1:
        return True, f"Only {names[0]} meets the constraints.", None
    first, second = names[0], names[1]
    pair = pairs[(0, 1)]
    if ranks[1] != 1:
        return True, f"{first} is ahead of the runner-up {second} beyond noise ({_pair_text(pair)}).", None
    n = pair["n_pairs"]
    if n < 2:
        return (
            False,
            f"{first} and {second} cannot be separated: they share {n} seed(s). Run both on the same seeds "
            f"(at least 2, better 5 or more) to test the difference.",
            None,
        )
    if pair["all_zero"] or math.isclose(pair["diff_mean"], 0.0, abs_tol=1e-12):
        return (
            False,
            f"{first} and {second} cannot be separated: their observed mean difference over {n} shared seeds is "
            f"exactly 0, so more seeds cannot be expected to separate them. Treat them as equivalent on "
            f"{constraints.metric} and choose by cost.",
            math.inf,
        )
    level = constraints.significance / max(comparisons, 1)
    needed = seeds_needed(
        pair["diff_mean"], pair["diff_std"], significance=level, power=constraints.target_power, max_seeds=MAX_SEEDS
    )
    observed = (
        f"{first} and {second} are not separable with {n} shared seeds (observed paired difference "
        f"{pair['diff_mean']:+.4f}, std {pair['diff_std']:.4f}, Holm-adjusted p = {pair['p_adjusted']:.3g})."
    )
    test = (
        f"two-sided paired t-test at level {level:.3g} = {constraints.significance} / {max(comparisons, 1)} "
        f"comparison(s), the Holm worst case"
    )
    if math.isinf(needed):
        return (
            False,
            f"{observed} Even {MAX_SEEDS} seeds would not reach {constraints.target_power:.0%} power for a "
            f"difference this small ({test}): treat them as equivalent and choose by cost.",
            math.inf,
        )
    needed = max(int(needed), n + 1)
    return (
        False,
        f"{observed} About {needed} seeds per candidate would separate a difference this size with "
        f"{constraints.target_power:.0%} power ({test}).",
        needed,
    )


def _violations(row: pd.Series, summary: pd.DataFrame, constraints: Constraints) -> list[str]:
    reasons = []
    for key, limit in constraints.limits().items():
        stem = "test_accuracy" if key == "min_accuracy" else COST_LIMITS[key]
        value = _float(row[_column(summary, stem)])
        if math.isnan(value):
            reasons.append(f"{stem} unknown, {key} = {_number(limit)}")
        elif key == "min_accuracy" and value < limit:
            reasons.append(f"{stem} {_number(value)} < {key} {_number(limit)}")
        elif key != "min_accuracy" and value > limit:
            reasons.append(f"{stem} {_number(value)} > {key} {_number(limit)}")
    return reasons


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
            half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
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


def _truthy(value: Any) -> bool:
    """A ``usable`` cell as read back from CSV or parquet (bool, numpy bool, or 'True'/'False')."""
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _number(value: float) -> str:
    if abs(value) >= 1e3:
        return human(value)
    return f"{value:.4g}"


def human(count: float) -> str:
    """1234567 -> '1.23M': counts readable at a glance."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:.4g}"


def _cost_text(stem: str, value: float) -> str:
    if math.isnan(value):
        return f"{stem} unknown"
    if stem == "latency_ms":
        return f"latency {value:.3f} ms"
    if stem == "train_time_s":
        return f"training {value:.1f} s"
    return f"{stem} {human(value)}"


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
