"""The comparison nodes end to end on a hand-made study: one verdict per pair in every output, plots that
say what they show, and report links that resolve on disk and in MLflow's layout."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from kedro.io.core import Version  # noqa: E402

from distillation_studies.analysis.comparison import WITHIN_NOISE  # noqa: E402
from distillation_studies.analysis.recommend import Constraints  # noqa: E402
from distillation_studies.common.config import parse_dataclass  # noqa: E402
from distillation_studies.datasets import MarkdownReportDataset, PlotFolderDataset  # noqa: E402
from distillation_studies.pipelines.comparison.nodes import build_report, compare_methods, recommend_method  # noqa: E402
from distillation_studies.report.plots import PARETO_FRONT_GID  # noqa: E402
from distillation_studies.study.schema import ComparisonConfig  # noqa: E402
from tests.analysis.test_comparison import DISAGREEING  # noqa: E402

COMPARISON = ComparisonConfig(baselines=("ce", "kd"), confidence=0.95, significance=0.05, correction="holm")
NO_CONSTRAINTS = Constraints()
# Latency and parameters per arm: the Pareto front over latency is ce (fastest, most accurate) alone;
# over training time it is at (fastest) and ce.
COSTS = {
    "ce": {"latency_ms": 1.0, "train_time_s": 20.0},
    "kd": {"latency_ms": 2.0, "train_time_s": 30.0},
    "rkd": {"latency_ms": 3.0, "train_time_s": 25.0},
    "at": {"latency_ms": 4.0, "train_time_s": 10.0},
}
BINS = {"bins": 2, "lower": [0.0, 0.5], "upper": [0.5, 1.0]}


def study_runs() -> pd.DataFrame:
    rows = []
    for arm, accuracies in DISAGREEING.items():
        for seed, accuracy in enumerate(accuracies):
            rows.append({
                "arm": arm, "method": arm, "registered_method": arm, "setting": "{}", "student": "student",
                "label_fraction": 1.0, "train_size": 100, "seed": seed, "test_accuracy": accuracy,
                "last_test_accuracy": accuracy - 0.01, "best_val_accuracy": accuracy, "test_nll": 1 - accuracy,
                "test_ece": 0.05, "test_teacher_agreement": accuracy, "test_kl_to_teacher": 0.1,
                "parameters": 1000.0, "training_parameters": 1000.0, "flops": 2000.0, "throughput_per_s": 100.0,
                "latency_ms": COSTS[arm]["latency_ms"], "train_time_s": COSTS[arm]["train_time_s"] + seed,
            })
    return pd.DataFrame(rows)


TEACHER = {"test_accuracy": 0.9, "parameters": 5000, "flops": 9000, "latency_ms": 5.0}
CAPACITY = {
    "teacher": {
        "model": {"name": "cnn"}, "parameters": 5000, "flops": 9000, "test_accuracy": 0.9, "test_ece": 0.02,
        "test_nll": 0.3, "layer_shapes": {},
        "logits": {"logit_std_mean": 2.0, "logit_gap_top2_mean": 1.5, "soft_targets": {"4": {"entropy_nats": 1.0, "normalised_entropy": 0.5}}},
    },
    "students": {"student": {"model": {"name": "mlp"}, "parameters": 1000, "flops": 2000, "parameter_ratio": 5.0, "flop_ratio": 4.5, "layer_shapes": {}}},
}
DATA = {"dataset": "digits", "sizes": {"train": 100, "val": 20, "test": 30}}
PROTOCOL = {"dataset": "digits", "package_versions": {"torch": "2"}}


def details(seed: int) -> dict:
    # Seed 0 puts 2 samples in the high bin (both right), seed 1 puts 6 there (3 right).
    high = (2, 1.0, 0.9) if seed == 0 else (6, 0.5, 0.7)
    return {
        "reliability": {**BINS, "count": [0, high[0]], "accuracy": [None, high[1]], "confidence": [None, high[2]]},
        "per_class_accuracy": [0.5 + 0.25 * seed, 1.0],
    }


@pytest.fixture(scope="module")
def outputs():
    runs = study_runs()
    table, tests, sensitivity, _ = compare_methods(runs, TEACHER, COMPARISON)
    record = recommend_method(table, runs, NO_CONSTRAINTS, {}, COMPARISON, tests)
    histories = {f"{a}/seed_{s}": {"epochs": [{"epoch": 1, "val_accuracy": 0.5, "loss_total": 1.0}]} for a in DISAGREEING for s in (0, 1)}
    run_details = {f"{a}/seed_{s}": details(s) for a in DISAGREEING for s in (0, 1)}
    markdown, page, figures = build_report(
        table, tests, sensitivity, record, CAPACITY, PROTOCOL, histories, run_details, TEACHER, DATA, COMPARISON
    )
    return table, tests, record, markdown, page, figures


def test_one_pair_one_signed_difference_and_one_verdict_in_every_output(outputs):
    table, tests, record, markdown, page, _ = outputs
    row = table.set_index("arm").loc["rkd"]
    test = tests.set_index(["metric", "arm", "reference"]).loc[("test_accuracy", "rkd", "ce")]
    [cell] = record["cells"]  # one data cell: one answer
    versus = next(c for c in cell["ranked"] if c["candidate"] == "rkd")["versus"]
    # The table, the paired tests and the recommendation: rkd - ce, the same adjusted p, within noise.
    assert versus["leader"] == "ce"
    assert row["test_accuracy_diff_vs_ce"] == test["diff_mean"] == versus["diff_mean"] < 0
    assert row["test_accuracy_p_adjusted_vs_ce"] == test["p_adjusted"] == versus["p_adjusted"] == pytest.approx(0.0504, abs=1e-4)
    assert row["test_accuracy_verdict_vs_ce"] == test["verdict"] == WITHIN_NOISE and versus["within_noise"]
    # ... and in words, in every section of the Markdown report and the HTML page.
    difference = f"{100 * test['diff_mean']:+.2f}"
    comparison_row = next(line for line in markdown.splitlines() if line.startswith("| rkd ") and "vs" not in line[:12])
    assert difference in comparison_row and "within noise (adj. p 0.050)" in comparison_row
    paired_row = next(line for line in markdown.splitlines() if re.match(r"\| test acc \(best val epoch\)\s*\| rkd\s*\| ce ", line))
    assert f"{difference} pp" in paired_row and "within noise" in paired_row and "0.050" in paired_row
    assert f"within noise of ce (paired difference {difference} pp over 5 shared seed(s), Holm-adjusted p 0.050)" in markdown
    assert "worse" not in comparison_row and "worse" not in paired_row
    assert f"within noise of ce (paired difference {difference} pp" in page


def test_recommendation_respects_the_configured_correction():
    runs = study_runs()
    uncorrected = replace(COMPARISON, correction="none")
    table, tests, *_ = compare_methods(runs, TEACHER, uncorrected)
    record = recommend_method(table, runs, NO_CONSTRAINTS, {}, uncorrected, tests)
    versus = next(c for c in record["cells"][0]["ranked"] if c["candidate"] == "rkd")["versus"]
    assert record["statistics"]["correction"] == "none"
    assert versus["p_adjusted"] == table.set_index("arm").loc["rkd", "test_accuracy_p_vs_ce"] < 0.05
    assert not versus["within_noise"] and table.set_index("arm").loc["rkd", "test_accuracy_verdict_vs_ce"] == "worse"


def test_deprecated_recommendation_significance_still_works_with_a_message_naming_the_new_key():
    runs = study_runs()
    table, tests, *_ = compare_methods(runs, TEACHER, COMPARISON)
    with pytest.warns(FutureWarning, match=r"recommendation\.significance is deprecated.*comparison\.significance"):
        constraints = parse_dataclass(Constraints, {"significance": 0.2}, "recommendation")  # once, at validation
    record = recommend_method(table, runs, constraints, {}, COMPARISON, tests)
    assert record["statistics"]["significance"] == 0.2
    versus = next(c for c in record["cells"][0]["ranked"] if c["candidate"] == "rkd")["versus"]
    assert versus["p_adjusted"] == pytest.approx(0.0504, abs=1e-4) and not versus["within_noise"]  # 0.0504 < 0.2


def test_the_recommender_reads_the_paired_tests_it_is_given():
    """The family comes from ``paired_tests`` (the comparison's output): a doctored p-value shows through,
    which a recommender recomputing its own tests would never show."""
    runs = study_runs()
    table, tests, *_ = compare_methods(runs, TEACHER, COMPARISON)
    doctored = tests.copy()
    rkd_ce = (doctored["metric"] == "test_accuracy") & (doctored["arm"] == "rkd") & (doctored["reference"] == "ce")
    assert rkd_ce.sum() == 1
    doctored.loc[rkd_ce, ["p_adjusted", "within_noise", "verdict"]] = [0.001, False, "worse"]
    record = recommend_method(table, runs, NO_CONSTRAINTS, {}, COMPARISON, doctored)
    versus = next(c for c in record["cells"][0]["ranked"] if c["candidate"] == "rkd")["versus"]
    assert versus["leader"] == "ce" and versus["p_adjusted"] == 0.001 and not versus["within_noise"]
    assert "behind ce beyond noise" in record["markdown"] and "Holm-adjusted p 0.001" in record["markdown"]


def test_headings_have_one_level_each_and_no_title_repeats(outputs):
    markdown, page = outputs[3], outputs[4]
    assert page.count("<h1 ") == 1 and page.count('">Recommendation') == 2  # its heading and its contents entry
    # title, recommendation, its one cell's answer, comparison, its first table
    assert re.findall(r"<h(\d) ", page)[:5] == ["1", "2", "3", "2", "3"]
    assert '<h3 id="all-labels">all labels</h3>' in page
    headings = [line for line in markdown.splitlines() if line.startswith("#")]
    assert [h for h in headings if h.startswith("# ")] == ["# Distillation study report"]
    assert headings[0] == "# Distillation study report"
    assert sum("Recommendation" in h for h in headings) == 1
    levels = [len(h.split()[0]) for h in headings]
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:]))  # never skips a level down
    assert len(headings) == len(set(headings))


def test_pareto_plots_label_every_arm_and_draw_the_front(outputs):
    table, _, _, _, _, figures = outputs
    means = table.set_index("arm")["test_accuracy_mean"]
    # Every arm trains and deploys the same network: no plot against its parameters or FLOPs, one line instead.
    assert set(n for n in figures if n.startswith("pareto_")) == {"pareto_latency_ms.png", "pareto_train_time_s.png"}
    assert "Not plotted, because every arm has the same value: trained parameters (incl. adapters) is 1k; forward FLOPs per image is 2k." in outputs[3]
    axis = figures["pareto_train_time_s.png"].figure.axes[0]
    assert sorted(t.get_text() for t in axis.texts) == sorted(DISAGREEING)  # plain arm names, no Series repr
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert set(DISAGREEING) <= set(legend) and "Pareto front" in legend
    # Mean training time over seeds 0-4 (+0..4 s): at 12 s, ce 22 s, rkd 27 s, kd 32 s; ce is the most accurate, at the fastest.
    front = next(line for line in axis.get_lines() if line.get_gid() == PARETO_FRONT_GID)
    assert list(front.get_xdata()) == pytest.approx([12.0, 22.0])
    assert list(front.get_ydata()) == pytest.approx([100 * means["at"], 100 * means["ce"]])
    # One network: its latency differences (1-4 ms) are run-to-run noise, so the front is the most accurate arm.
    latency = next(line for line in figures["pareto_latency_ms.png"].figure.axes[0].get_lines() if line.get_gid() == PARETO_FRONT_GID)
    assert list(latency.get_xdata()) == pytest.approx([1.0]) and means.idxmax() == "ce"
    assert "every arm within run-to-run noise" in figures["pareto_latency_ms.png"].figure.axes[0].get_title()


def test_per_seed_figures_say_they_pool_all_seeds(outputs):
    figures = outputs[5]
    reliability = figures["reliability.png"].figure
    assert "pooled over all seeds of each arm (2 seeds)" in reliability.texts[0].get_text()
    # Pooled high bin: 8 samples, accuracy (2 * 1.0 + 6 * 0.5) / 8 = 0.625, confidence (2 * 0.9 + 6 * 0.7) / 8 = 0.75.
    bar = [p for p in reliability.axes[0].patches if p.get_height() > 0]
    assert len(bar) == 1 and bar[0].get_height() == pytest.approx(0.625)
    assert "ECE 12.50%" in reliability.axes[0].get_title()
    heatmap = figures["per_class_accuracy.png"].figure.axes[0]
    assert "mean over all seeds of each arm (2 seeds)" in heatmap.get_title()
    assert heatmap.images[0].get_array()[0, 0] == pytest.approx(62.5)  # (50 + 75) / 2


def test_plot_links_resolve_on_disk_and_in_the_mlflow_layout(outputs, tmp_path: Path):
    markdown, figures = outputs[3], outputs[5]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(links) == sorted(f"plots/{name}" for name in figures)  # MLflow: report/study_report.md + report/plots/
    version = Version(None, "2026-01-01T00.00.00.000Z")
    PlotFolderDataset(filepath=str(tmp_path / "08_reporting/study_plots"), version=version).save(dict(list(figures.items())[:2]))
    report = MarkdownReportDataset(
        filepath=str(tmp_path / "08_reporting/study_report.md"), plots_filepath=str(tmp_path / "08_reporting/study_plots"), version=version
    )
    report.save(markdown)
    saved = tmp_path / "08_reporting/study_report.md" / version.save / "study_report.md"
    disk_links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", saved.read_text())
    assert disk_links[0].startswith("../../study_plots/")
    for link in disk_links[:2]:
        assert (saved.parent / link).is_file(), link


def test_the_catalog_points_the_report_at_the_plots_it_saves():
    catalog = yaml.safe_load((Path(__file__).resolve().parents[2] / "conf" / "base" / "catalog.yml").read_text())
    report, plots = catalog["study_report_md"], catalog["study_plots"]
    assert report["type"] == "distillation_studies.datasets.MarkdownReportDataset"  # links rewritten, and a preview
    assert report["plots_filepath"] == plots["filepath"] and report["versioned"] and plots["versioned"]
