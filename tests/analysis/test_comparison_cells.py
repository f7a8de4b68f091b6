"""Cells that differ only in the transfer set (or only in the noise rate) are different situations: never paired."""

from __future__ import annotations

import pandas as pd

from distillation_studies.analysis.comparison import NO_BASELINE, WITHIN_NOISE, BETTER, comparison_table
from distillation_studies.analysis.stats import Statistics

CELLS = {  # arm -> (method, transfer set, noise rate, accuracy per seed)
    "ce_10": ("ce", False, 0.0, [0.70, 0.72, 0.71]),
    "kd_10": ("kd", False, 0.0, [0.74, 0.77, 0.75]),
    "kd_10_transfer": ("kd", True, 0.0, [0.85, 0.86, 0.88]),
    "kd_10_noisy": ("kd", False, 0.2, [0.60, 0.61, 0.65]),
}


def runs() -> pd.DataFrame:
    return pd.DataFrame([
        {"arm": arm, "method": method, "seed": seed, "student": "student", "label_fraction": 0.1,
         "transfer_set": transfer, "label_noise": noise, "test_accuracy": accuracy}
        for arm, (method, transfer, noise, accuracies) in CELLS.items() for seed, accuracy in enumerate(accuracies)
    ])


def test_transfer_set_and_noisy_cells_are_never_paired_with_the_plain_cell():
    """Kills: transfer-set cells paired with no-transfer cells (the cell key losing ``transfer_set``)."""
    table, tests = comparison_table(runs(), Statistics(baselines=("ce",), correction="none"))
    assert list(zip(tests["arm"], tests["reference"])) == [("kd_10", "ce_10")]
    verdicts = table.set_index("arm")["test_accuracy_verdict_vs_ce"]
    # kd_10 - ce_10 = 0.04, 0.05, 0.04: t = 0.04333 / (0.005774 / sqrt 3) = 13.0 with 2 df, p = 0.0059
    assert verdicts["kd_10"] == BETTER
    assert verdicts["kd_10_transfer"] == NO_BASELINE and verdicts["kd_10_noisy"] == NO_BASELINE
    assert WITHIN_NOISE not in set(verdicts)
