"""Verdicts recomputed from the saved per-seed metrics, independently of analysis/: scipy's paired t-test,
Holm applied by hand, and the comparison's documented rules, for the e2e tests to hold the report against."""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy import stats


def paired_p(values: list[float], reference: list[float]) -> float:
    """Two-sided paired t-test; a constant shift (no variance) gets the exact sign test 2 * 0.5**n, none p = 1."""
    diff = np.array(values) - np.array(reference)
    if np.allclose(diff, diff[0], rtol=1e-4, atol=1e-6):
        return 1.0 if np.allclose(diff, 0.0, atol=1e-6) else 2 * 0.5 ** len(diff)
    return float(stats.ttest_rel(values, reference).pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm step-down by hand: the k-th smallest of m times (m - k), made monotone, capped at 1; input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p_values) - rank) * p_values[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def cell_verdicts(accuracy: dict[str, list[float]], significance: float = 0.05) -> dict[tuple[str, str], tuple[str, float]]:
    """(arm, reference) -> (verdict words, Holm-adjusted p) for every ordered pair of one cell's arms, the
    family being every unordered pair of the cell; accuracy lists are per seed, in the same seed order."""
    pairs = list(combinations(sorted(accuracy), 2))
    adjusted = holm([paired_p(accuracy[a], accuracy[b]) for a, b in pairs])
    verdicts = {}
    for (a, b), p in zip(pairs, adjusted):
        diff = float(np.mean(np.array(accuracy[a]) - np.array(accuracy[b])))
        for arm, reference, sign in ((a, b, 1), (b, a, -1)):
            words = "within noise" if p >= significance else ("better" if sign * diff > 0 else "worse")
            verdicts[(arm, reference)] = (words, p)
    return verdicts


def markdown_table(markdown: str, heading: str) -> list[dict[str, str]]:
    """The first pipe table after ``heading``, as one dict per row keyed by its header cells."""
    lines = markdown.split(heading, 1)[1].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        block.append([c.strip() for c in line.strip().strip("|").split("|")])
    header, body = block[0], block[2:]  # block[1] is the |:---| rule
    return [dict(zip(header, row)) for row in body]

