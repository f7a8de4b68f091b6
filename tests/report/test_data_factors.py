"""report/data_factors.py: the sections a reader sees, from hand-made numbers."""

from __future__ import annotations

import re

from distillation_studies.report.data_factors import data_factor_figures, data_factor_sections
from tests.analysis.test_data_factors import TABLE, TESTS


def test_sections_show_curves_and_where_distillation_helps():
    sections = dict(data_factor_sections(TABLE, TESTS, ["ce", "kd"], 0.95, "holm", 0.05))
    quality = re.sub(r" +", " ", sections["Data size and quality"])
    assert "| kd + transfer set | 92.50 ± 1.00 | 90.00 ± 1.00 |" in quality
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
    assert "- `ce` + transfer set: 5% -> 100% labels: +14.00 pp [" in text
    assert "- `kd` + transfer set: 5% -> 100% labels: +2.50 pp [" in text and "(5 vs 5 seeds, p = " in text
    # kd at 5% + transfer set (90.0) against ce with every label (92.0), across cells; ce's own line has no such part.
    assert "; against `ce_1.0_False_0.0` (100% labels): -2.00 pp [" in text
    assert text.count("; against `ce_1.0_False_0.0`") == 1
    assert "adjusted" not in text.replace("unadjusted", "")


def test_figures_plot_both_factors_with_the_transfer_series():
    figures = data_factor_figures(TABLE)
    assert set(figures) == {"data_size.png", "label_noise.png"}
    legend = [t.get_text() for t in figures["data_size.png"].axes[0].get_legend().get_texts()]
    assert "kd + transfer set" in legend
