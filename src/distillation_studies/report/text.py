"""Numbers as people read them: counts, metrics in their shown units, p-values and verdict words."""

from __future__ import annotations

import math

from distillation_studies.common.records import DataCell
from distillation_studies.analysis.comparison import CELL_DEFAULTS, BASELINE, BETTER, NO_BASELINE, NOT_TESTABLE, WITHIN_NOISE, WORSE
from distillation_studies.analysis.metrics import reported_metric

VERDICT_WORDS = {
    BASELINE: "baseline",
    NO_BASELINE: "no baseline in its cell",
    NOT_TESTABLE: "not testable (fewer than 2 paired seeds)",
    WITHIN_NOISE: "within noise",
    BETTER: "better",
    WORSE: "worse",
}


def human(count: float) -> str:
    """1234567 -> '1.23M': counts readable at a glance."""
    if math.isnan(count):
        return "–"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:.4g}"


def number(value: float) -> str:
    """A limit or measured value in a sentence: counts abbreviated, others to 4 significant digits."""
    return human(value) if abs(value) >= 1e3 else f"{value:.4g}"


def shown(metric: str, value: float, signed: bool = False) -> str:
    """``value`` of ``metric`` in its shown unit and precision (no unit sign): 0.8512 -> '85.12'."""
    if value is None or math.isnan(value):
        return "–"
    spec = reported_metric(metric)
    if spec.kind == "cost" and spec.unit == "":
        return ("+" if signed and value > 0 else "") + human(value)
    return f"{spec.scale * value:{'+' if signed else ''}.{spec.digits}f}"


def unit(metric: str, difference: bool = False) -> str:
    """The shown unit; differences of percentages are percentage points."""
    spec = reported_metric(metric)
    return "pp" if difference and spec.unit == "%" else spec.unit


NO_INTERVAL = "n/a"
NO_INTERVAL_WHY = (
    "± n/a: the interval spans every value the metric can take (0 to 100%; for a difference, -100 to +100 pp), "
    "so it rules nothing out and is not shown; with 2 seeds the 95% t quantile is 12.7 standard errors, "
    "and more seeds narrow it"
)


def spans_whole_range(metric: str, mean: float, low: float, difference: bool = False) -> bool:
    """Whether ``mean ± (mean - low)`` covers every value a percentage metric can take (0..1, or -1..1 for a
    difference): such an interval, common with 2 seeds, says nothing, and printing '58.47 ± 167.65' misleads."""
    if reported_metric(metric).unit != "%":
        return False
    half, (bottom, top) = mean - low, ((-1.0, 1.0) if difference else (0.0, 1.0))
    return mean - half <= bottom and mean + half >= top


def with_ci(metric: str, mean: float, low: float, signed: bool = False) -> str:
    """'85.12 ± 0.40' (half-width of the interval), the mean alone without an interval, or '58.47 ± n/a'
    when the interval spans the metric's whole range (``signed``: a difference)."""
    if low is None or math.isnan(low):
        return shown(metric, mean, signed)
    if spans_whole_range(metric, mean, low, difference=signed):
        return f"{shown(metric, mean, signed)} ± {NO_INTERVAL}"
    return f"{shown(metric, mean, signed)} ± {shown(metric, mean - low)}"


def p_value(p: float) -> str:
    """Three decimals, '<0.001' below that, '–' when undefined."""
    if p is None or math.isnan(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def verdict(code: str, p_adjusted: float | None = None) -> str:
    """Verdict words, with the adjusted p-value when the pair was tested."""
    words = VERDICT_WORDS[code]
    if code in (WITHIN_NOISE, BETTER, WORSE) and p_adjusted is not None:
        return f"{words} (adj. p {p_value(p_adjusted)})"
    return words


def cell_description(cell: dict) -> str:
    """A data cell as a user names their situation: 'all labels', '10% labels + transfer set',
    '10% labels, no transfer set, 20% label noise, student wide' (the default student unnamed)."""
    student = cell.get("student", CELL_DEFAULTS["student"])
    return DataCell.from_row(cell).description() + (f", student {student}" if student != CELL_DEFAULTS["student"] else "")
