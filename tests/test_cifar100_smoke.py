"""The `cifar100_smoke` study, in process, on tiny CIFAR-100 files in the real on-disk format.

The files go through torchvision's own CIFAR100 reader; only its MD5 comparison is patched (the
hand-written pickles cannot match the published sums), as in tests/learning/test_vision_data.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from distillation_studies.analysis.reference import reproduced_vs_published
from distillation_studies.common.config import parse_dataclass
from distillation_studies.pipelines.comparison.nodes import build_report
from distillation_studies.study.schema import ComparisonConfig
from tests.cifar_files import FINE_NAMES, skip_cifar_md5, write_cifar100
from tests.conftest import ROOT, copy_project

pytestmark = pytest.mark.e2e
ENV = "cifar100_smoke"
NO_TRACKING = {"tracking": {"enabled": False}}
REFERENCE = Path("data") / "01_raw" / "reference" / "published_cifar100.csv"
OUTPUTS = [
    "comparison_table", "data_summary", "reproduced_vs_published", "study_report_md", "study_report_html",
    "teacher_model", "students.kd.seed_0.history", "paired_tests", "sensitivity_table", "recommendation",
    "capacity_report", "protocol_card", "study_histories", "run_details", "teacher_metrics",
]


def _run_smoke(tmp_path_factory, runtime_params: dict) -> dict:
    """Run the smoke study once in a project copy whose data/01_raw holds 200 train / 100 test images."""
    project = copy_project(tmp_path_factory.mktemp("cifar100_smoke"))
    write_cifar100(project / "data" / "01_raw", train=200, test=100, used_classes=10)
    (project / REFERENCE).parent.mkdir(parents=True)
    shutil.copy(ROOT / REFERENCE, project / REFERENCE)  # tracked in the repo; copy_project copies conf only
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        skip_cifar_md5(patch)  # DataLoader workers are forked, so they inherit the patch
        patch.chdir(project)  # data.root is relative to where kedro runs, as with `kedro run`
        try:
            torch.set_num_threads(1)  # tiny batches: extra threads only contend (5x slower on 2 busy cores)
            bootstrap_project(project)
            # MLflow is covered by tests/test_end_to_end.py; here it would only add its start-up time.
            with KedroSession.create(project_path=project, env=ENV, runtime_params=runtime_params) as session:
                session.run()
            with KedroSession.create(project_path=project, env=ENV, runtime_params=runtime_params) as session:
                catalog = session.load_context().catalog
                loaded = {name: catalog.load(name) for name in OUTPUTS}
                loaded["params:comparison"] = catalog.load("params:comparison")
                loaded["model_input_file"] = project / "data" / "05_model_input" / "cifar100_smoke" / "model_input.pt"
        finally:
            torch.set_num_threads(threads)
    return loaded


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    return _run_smoke(tmp_path_factory, NO_TRACKING)


@pytest.fixture(scope="module")
def streamed_smoke(tmp_path_factory) -> dict:
    """The same study with images read from disk batch by batch, by two DataLoader workers per loop."""
    workers = {"training": {"workers": 2}}
    return _run_smoke(tmp_path_factory, {**NO_TRACKING, "data": {"in_memory": False}, "teacher": workers, "student": workers})


def test_smoke_study_compares_its_methods_on_cifar100(smoke):
    table = smoke["comparison_table"]
    assert set(table["method"]) == {"ce", "kd", "fitnet"} and (table["seeds"] == 1).all()
    summary = smoke["data_summary"]
    assert summary["dataset"] == "cifar100" and summary["num_classes"] == 100 and summary["classes"] == FINE_NAMES
    assert summary["sizes"] == {"train": 160, "val": 40, "test": 100}
    assert summary["normalisation_source"] == "standard"
    assert smoke["teacher_model"].spec["in_shape"] == [3, 32, 32] and smoke["teacher_model"].spec["num_classes"] == 100
    assert [row["epoch"] for row in smoke["students.kd.seed_0.history"]["epochs"]] == [1, 2]


def test_unpublished_pair_has_no_reproduced_section(smoke):
    assert smoke["reproduced_vs_published"].empty  # resnet14 -> resnet8 is not a published pair
    report = smoke["study_report_md"]
    assert "## Recommendation" in report and "## Comparison" in report and "## Protocol" in report
    assert "Reproduced vs published" not in report and "Reproduced vs published" not in smoke["study_report_html"]


def test_report_gains_the_section_when_the_pair_is_published(smoke):
    """build_report with the smoke results set against a (hand-made) published row for its pair."""
    reference = pd.DataFrame([
        {"teacher": "resnet14", "student": "resnet8", "method": "kd", "top1": 50.0, "source": "hand-made", "protocol": "test"},
    ])
    table = smoke["comparison_table"]
    matched = reproduced_vs_published(table, reference, "resnet14", "resnet8", "cifar100")
    assert list(matched["arm"]) == ["kd"]
    kd_mean = 100 * table.loc[table["arm"] == "kd", "test_accuracy_mean"].iloc[0]
    assert matched["delta_pp"].iloc[0] == pytest.approx(kd_mean - 50.0)
    inputs = [smoke[name] for name in (
        "comparison_table", "paired_tests", "sensitivity_table", "recommendation", "capacity_report", "protocol_card",
        "study_histories", "run_details", "teacher_metrics", "data_summary",
    )]
    comparison = parse_dataclass(ComparisonConfig, smoke["params:comparison"], "comparison")  # as the node receives it
    markdown, page, _ = build_report(*inputs, comparison, reproduced_vs_published=matched)
    assert "## Reproduced vs published" in markdown and "hand-made" in markdown
    assert markdown.index("## Comparison") < markdown.index("## Reproduced vs published") < markdown.index("## Capacity gap")
    assert "Reproduced vs published" in page


def test_streamed_study_reproduces_the_in_memory_study(smoke, streamed_smoke):
    """Same splits, same batch order, same augmentation draws: the same numbers, from a few-kB model_input."""
    assert streamed_smoke["data_summary"]["in_memory"] is False
    assert {k: v for k, v in streamed_smoke["data_summary"].items() if k != "in_memory"} == {
        k: v for k, v in smoke["data_summary"].items() if k != "in_memory"
    }
    columns = ["arm", "test_accuracy_mean", "last_test_accuracy_mean", "test_nll_mean", "test_kl_to_teacher_mean"]
    pd.testing.assert_frame_equal(
        streamed_smoke["comparison_table"][columns], smoke["comparison_table"][columns], rtol=1e-6
    )
    streamed_rows = streamed_smoke["students.kd.seed_0.history"]["epochs"]
    for row, other in zip(streamed_rows, smoke["students.kd.seed_0.history"]["epochs"]):
        assert row == pytest.approx(other, rel=1e-5)
    sizes = {name: max(p.stat().st_size for p in data["model_input_file"].glob("*/model_input.pt")) for name, data in (
        ("streamed", streamed_smoke), ("in_memory", smoke))}
    assert sizes["streamed"] < 20_000 < sizes["in_memory"]
