"""report/data_factors.py: the sections a reader sees, from hand-made numbers."""

from __future__ import annotations

import re

from distillation_studies.report.data_factors import data_factor_figures, data_factor_sections
from tests.analysis.test_data_factors import TABLE, TESTS


def test_sections_show_curves_and_where_distillation_helps():
    sections = dict(data_factor_sections(TABLE, TESTS, ["ce", "kd"], 0.95, "holm", 0.05))
    quality = re.sub(r" +", " ", sections["Data size and quality"])
    # One column per cell (the 100% cell once), one row per method: no "ce + transfer set" row.
    assert "| method | all labels | 5% labels + transfer set |" in quality
    assert "| kd | 92.50 ± 1.00 | 90.00 ± 1.00 |" in quality and "| ce | 92.00 ± 1.00 | 78.00 ± 1.00 |" in quality
    assert "+ transfer set |" not in quality.replace("| 5% labels + transfer set |", "") and quality.count("all labels") == 1
    assert "| method | noise 0% | noise 40% |" in quality
    assert "| ce | 92.00 ± 1.00 | 80.00 ± 1.00 |" in quality  # the noise table
    assert "40% requested -> 40.00% changed" in quality
    helps = sections["Where distillation helps"]
    assert "p is holm-adjusted over the pairs of arms of the cell (the recommendation's family)" in helps
    assert "- **all labels**: no method beats `ce` beyond noise" in helps
    assert "  - `kd`: +0.50 pp [-0.50, +1.50] over 5 seeds, adj. p = 0.6 (within noise)" in helps
    assert "- **5% labels + transfer set**: distillation helps: `kd`" in helps
    assert "adj. p = 0.001 (helps)" in helps


def test_no_ce_baseline_no_gain_section():
    titles = [title for title, _ in data_factor_sections(TABLE, TESTS, ["kd"], 0.95, "holm", 0.05)]
    assert titles == ["Data size and quality", "What more labels would buy (across cells)"]


def test_what_more_labels_buy_says_it_compares_across_cells():
    sections = dict(data_factor_sections(TABLE, TESTS, ["ce", "kd"], 0.95, "holm", 0.05))
    text = sections["What more labels would buy (across cells)"]
    assert text.startswith("Across data cells:") and "not in the per-cell families" in text
    # kd at 5% + transfer set (92.5 ± std 0.01, 5 seeds) against kd at 100% (92.5): 0 points; ce: 92 - 78 = +14.
    assert "- `ce`: 5% labels + transfer set -> 100% labels: +14.00 pp [" in text
    assert "- `kd`: 5% labels + transfer set -> 100% labels: +2.50 pp [" in text and "(5 vs 5 seeds, p = " in text
    # kd at 5% + transfer set (90.0) against ce with every label (92.0), across cells; ce's own line has no such part.
    assert "; against `ce_1.0_False_0.0` (100% labels): -2.00 pp [" in text
    assert text.count("; against `ce_1.0_False_0.0`") == 1
    assert "adjusted" not in text.replace("unadjusted", "")


def test_figures_plot_both_factors_each_arm_once():
    figures = data_factor_figures(TABLE)
    assert set(figures) == {"data_size.png", "label_noise.png"}
    axis = figures["data_size.png"].axes[0]
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert legend == ["ce", "kd", "hollow: cell with a transfer set"]  # colour per method, one marker key
    # One error bar per arm at noise 0 (2 cells x 2 methods), the 100% arms once; no line: each method has
    # one point per kind of cell, and a transfer-set cell is never joined to a full-label one.
    bars = [c for c in axis.containers]
    points = sorted((round(x / 5) * 5, round(y, 2)) for c in bars for x, y in zip(*c.lines[0].get_data()))
    assert points == [(5, 78.0), (5, 90.0), (100, 92.0), (100, 92.5)]
    assert all(c.lines[0].get_linestyle() == "None" for c in bars)
    hollow = {round(float(c.lines[0].get_ydata()[0]), 2): c.lines[0].get_markerfacecolor() for c in bars}
    assert hollow[78.0] == hollow[90.0] == "white" and hollow[92.0] != "white"
