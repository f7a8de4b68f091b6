"""Per-run details (reliability bins, per-class accuracy) pooled over an arm's seeds.

Every seed of a study is evaluated on the same test split, so pooling the bins' counts (and averaging
per-class accuracies) gives what all seeds' predictions together would show.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def _values(items: Sequence[Any]) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in items])


def pool_reliability(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One reliability-bin dict from several of the same bins: counts summed, accuracy and confidence
    count-weighted; empty pooled bins stay None. ValueError when the bin edges differ."""
    first = per_seed[0]
    for bins in per_seed[1:]:
        if list(bins["lower"]) != list(first["lower"]) or list(bins["upper"]) != list(first["upper"]):
            raise ValueError("reliability bins of different seeds have different edges; they cannot be pooled")
    counts = np.array([np.asarray(b["count"], dtype=float) for b in per_seed])
    total = counts.sum(axis=0)

    def weighted(key: str) -> list[float | None]:
        values = np.nan_to_num(np.array([_values(b[key]) for b in per_seed]))
        sums = (counts * values).sum(axis=0)
        return [float(s / t) if t > 0 else None for s, t in zip(sums, total)]

    return {
        "bins": first.get("bins", len(first["lower"])),
        "lower": list(first["lower"]),
        "upper": list(first["upper"]),
        "count": [int(c) for c in total],
        "accuracy": weighted("accuracy"),
        "confidence": weighted("confidence"),
    }


def mean_per_class(per_seed: Sequence[Sequence[float | None]]) -> list[float | None]:
    """Per-class accuracy averaged over seeds; a class absent from every seed stays None."""
    width = max(len(v) for v in per_seed)
    values = np.full((len(per_seed), width), np.nan)
    for i, seed_values in enumerate(per_seed):
        values[i, : len(seed_values)] = _values(seed_values)
    present = ~np.isnan(values)
    sums = np.nansum(values, axis=0)
    counts = present.sum(axis=0)
    return [float(s / c) if c else None for s, c in zip(sums, counts)]
