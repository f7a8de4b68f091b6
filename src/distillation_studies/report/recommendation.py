"""The recommendation in words: one answer per data cell, each with its ranks and their evidence,
excluded candidates, and the seeds verdict.

Renders the recommender's record (``StudyRecommendation.to_dict()``, also what ``recommendation.json``
holds, or one cell's ``Recommendation.to_dict()``), so the report and the notebook read one JSON file
and never recompute a verdict.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from distillation_studies.analysis import recommend as r
from distillation_studies.report.sections import CORRECTIONS
from distillation_studies.report.text import cell_description, number, p_value, shown, spans_whole_range, unit, with_ci


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def title(record: Mapping[str, Any]) -> str:
    """'Recommendation: test_accuracy (higher is better)'."""
    direction = "higher is better" if record["higher_is_better"] else "lower is better"
    return f"Recommendation: {record['metric']} ({direction})"


def violation_text(violation: Mapping[str, Any]) -> str:
    """'parameters 20M > max_parameters 5M', or why the value is unknown."""
    key, quantity, value, limit = violation["key"], violation["quantity"], _nan(violation["value"]), violation["limit"]
    if key == "metric":
        return f"{quantity} unknown (no finished runs)"
    if key == r.FAILED:
        return f"training failed: {quantity}"
    if math.isnan(value):
        return f"{quantity} unknown, {key} = {number(limit)}"
    relation = "<" if key == "min_accuracy" else ">"
    return f"{quantity} {number(value)} {relation} {key} {number(limit)}"


def _cost_text(stem: str, value: float) -> str:
    if math.isnan(value):
        return f"{stem} unknown"
    if stem == "latency_ms":
        return f"latency {value:.3f} ms"
    if stem == "train_time_s":
        return f"training {value:.1f} s"
    return f"{stem} {number(value)}"


def _pair_text(metric: str, diff: float, n_pairs: int, p: float, correction: str) -> str:
    return (
        f"paired difference {shown(metric, diff, signed=True)} {unit(metric, True)} over {n_pairs} shared seed(s), "
        f"{CORRECTIONS[correction]} p {p_value(p)}"
    ).replace("  ", " ")


def placement_text(record: Mapping[str, Any], entry: Mapping[str, Any]) -> str:
    """Why a candidate has its rank: best mean, or its test against its rank group's leader."""
    metric, correction = record["metric"], record["statistics"]["correction"]
    versus = entry["versus"]
    if versus is None:
        return f"{'highest' if record['higher_is_better'] else 'lowest'} mean {metric}"
    leader, n = versus["leader"], versus["n_pairs"]
    if n < 2:
        return f"tied with {leader} by default: {n} shared seed(s), too few for a paired test"
    pair = _pair_text(metric, _nan(versus["diff_mean"]), n, _nan(versus["p_adjusted"]), correction)
    return f"within noise of {leader} ({pair})" if versus["within_noise"] else f"behind {leader} beyond noise ({pair})"


def candidate_text(record: Mapping[str, Any], entry: Mapping[str, Any]) -> str:
    """One ranked candidate: mean and interval, costs, why this rank, and the MLflow runs behind it."""
    metric, confidence = record["metric"], record["statistics"]["confidence"]
    mean, low = _nan(entry["mean"]), _nan(entry["ci_low"])
    if math.isnan(low):
        interval = f"{shown(metric, mean)} {unit(metric)} (no CI"
    elif spans_whole_range(metric, mean, low):
        interval = f"{with_ci(metric, mean, low)} {unit(metric)} ({confidence:.0%} CI spans every possible value"
    else:
        interval = f"{with_ci(metric, mean, low)} {unit(metric)} ({confidence:.0%} CI"
    costs = ", ".join(_cost_text(stem, _nan(value)) for stem, value in entry["costs"].items()) or "costs not recorded"
    runs = entry["run_ids"]
    evidence = f"MLflow runs {', '.join(runs)}" if runs else "no MLflow run ids recorded"
    return (
        f"{metric} {interval}, {entry['seeds']} seed(s)); {costs}; rank {entry['rank_label']}: "
        f"{placement_text(record, entry)}; evidence: {evidence}"
    ).replace(" )", ")")


def seeds_text(record: Mapping[str, Any]) -> str:
    """The seeds verdict in words: whether the leader is separated, else what more seeds would do."""
    seeds, metric, power = record["seeds"], record["metric"], record["constraints"]["target_power"]
    case, first, second, n = seeds["case"], seeds["first"], seeds["second"], seeds["n_pairs"]
    correction = record["statistics"]["correction"]
    if case == r.NONE_FEASIBLE:
        return "No candidate meets the constraints, so there is nothing to separate."
    if case == r.SINGLE:
        return f"Only {first} meets the constraints."
    pair = _pair_text(metric, _nan(seeds["diff_mean"]), n, _nan(seeds["p_adjusted"]), correction)
    if case == r.SEPARATED:
        return f"{first} is ahead of the runner-up {second} beyond noise ({pair})."
    if case == r.TOO_FEW_SHARED:
        return (
            f"{first} and {second} cannot be separated: they share {n} seed(s). Run both on the same seeds "
            "(at least 2, better 5 or more) to test the difference."
        )
    if case == r.NEGLIGIBLE:
        return negligible_text(record)
    if case == r.ZERO_DIFFERENCE:
        return (
            f"{first} and {second} cannot be separated: their observed mean difference over {n} shared seeds is "
            f"exactly 0, so more seeds cannot be expected to separate them. Treat them as equivalent on {metric} "
            "and choose by cost."
        )
    observed = f"{first} and {second} are not separable with {n} shared seeds ({pair}, std of the differences {shown(metric, _nan(seeds['diff_std']))})."
    test = f"two-sided paired t-test at level {seeds['level']:.3g}" + (
        f" = {record['statistics']['significance']} / {record['comparisons']} comparison(s), the worst case of the correction"
        if correction != "none" else ""
    )
    if case == r.UNREACHABLE:
        return (
            f"{observed} Even {r.MAX_SEEDS} seeds would not reach {power:.0%} power for a difference this small "
            f"({test}): treat them as equivalent and choose by cost."
        )
    return f"{observed} About {int(seeds['needed'])} seeds per candidate would separate a difference this size with {power:.0%} power ({test})."


def negligible_text(record: Mapping[str, Any]) -> str:
    """Leader and runner-up closer than ``comparison.smallest_difference``: equivalent, whatever more seeds say."""
    seeds, metric = record["seeds"], record["metric"]
    smallest = record["statistics"]["smallest_difference"]
    # The verdict stores runner-up - leader; say it leader - runner-up, as "a and b differ by" reads.
    low, high = -_nan(seeds["diff_ci_high"]), -_nan(seeds["diff_ci_low"])
    interval = "" if math.isnan(low) else (
        f" (its {record['statistics']['confidence']:.0%} CI [{shown(metric, low, True)}, {shown(metric, high, True)}] {unit(metric, True)})"
    )
    return (
        f"{seeds['first']} and {seeds['second']} differ by {shown(metric, -_nan(seeds['diff_mean']), signed=True)} "
        f"{unit(metric, True)} ({seeds['first']} − {seeds['second']}) over {seeds['n_pairs']} shared seeds{interval}, less than the smallest difference worth "
        f"detecting (comparison.smallest_difference = {shown(metric, smallest)} {unit(metric, True)}): the difference is "
        f"negligible, so more seeds would not change the choice. Treat them as equivalent on {metric} and choose by cost."
    ).replace("  ", " ")


PER_CELL = (
    "One answer per data cell: your labels, transfer set, label noise and student are your situation, not a "
    "choice, so each arm is ranked and tested only against the arms of its own cell. What more labels or "
    "cleaner labels would buy is compared across cells in the data-factor sections, outside these rankings."
)


def cell_records(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each cell's answer with the shared keys (metric, constraints, statistics) merged in: the shape of
    one ``Recommendation.to_dict()``, which the per-candidate texts read. A one-cell record is itself."""
    if "cells" not in record:
        return [dict(record)]
    shared = {k: v for k, v in record.items() if k != "cells"}
    return [{**shared, **cell} for cell in record["cells"]]


def recommendation_markdown(record: r.Recommendation | r.StudyRecommendation | Mapping[str, Any], heading: bool = False) -> str:
    """The recommendation as Markdown, one ``###`` answer per data cell headed by the cell's description;
    ``heading`` puts its title on top as ``##`` (standalone use)."""
    record = record.to_dict() if isinstance(record, (r.Recommendation, r.StudyRecommendation)) else record
    limits = {k: v for k, v in record["constraints"].items() if k in (*r.COST_LIMITS, "min_accuracy") and v is not None}
    lines = [f"## {title(record)}", ""] if heading else []
    lines += ["Constraints: " + (", ".join(f"{k} = {number(v)}" for k, v in limits.items()) if limits else "none") + ".", ""]
    if "cells" not in record:
        return "\n".join(lines + cell_markdown(record))
    lines += [PER_CELL, ""]
    if not record["cells"]:
        lines += ["No arm was evaluated, so there is nothing to recommend.", ""]
    for cell in cell_records(record):
        lines += [f"### {cell.get('description') or cell_description(cell['cell'])}", "", *cell_markdown(cell)]
    return "\n".join(lines)


def cell_markdown(record: Mapping[str, Any]) -> list[str]:
    """One cell's answer (a ``Recommendation.to_dict()`` shape): ranks, the family, seeds, exclusions."""
    statistics = record["statistics"]
    lines: list[str] = []
    failed = [e for e in record["excluded"] if any(v["key"] == r.FAILED for v in e["violations"])]
    constrained = [e for e in record["excluded"] if e not in failed]
    if not record["ranked"]:
        lines += [
            "No candidate is usable: every arm failed its training (see below) or broke a constraint, so nothing is ranked."
            if failed
            else "No candidate meets the constraints.",
            "",
        ]
    for entry in record["ranked"]:
        lines += [f"{entry['rank_label']}. **{entry['candidate']}**: {candidate_text(record, entry)}", ""]
    if record["ranked"]:
        where = " of this data cell" if "cell" in record else ""
        lines += [
            "A candidate shares its rank group's leader's rank when their paired difference (candidate − leader, over "
            f"shared seeds) is not significant at {statistics['significance']} after {statistics['correction']} "
            f"correction over the {record['comparisons']} pairwise comparison(s) of {record['metric']}{where}: the "
            "comparison table's family, so both give the same verdict.",
            "",
        ]
    lines += [f"**Enough seeds:** {'yes' if record['enough_seeds'] else 'no'}. {seeds_text(record)}", ""]
    for heading, entries in (("**Failed training (never ranked):**", failed), ("**Excluded by the constraints:**", constrained)):
        if entries:
            lines += [heading, ""]
            lines += [f"- **{e['candidate']}**: {'; '.join(violation_text(v) for v in e['violations'])}" for e in entries]
            lines.append("")
    return lines
