"""The comparison pipeline reads the published reference only for CIFAR-100 studies."""

from __future__ import annotations

from distillation_studies.pipelines import comparison
from distillation_studies.study.schema import validate_study
from tests.study.test_schema import env_params


def test_cifar100_study_sets_its_results_against_the_published_numbers():
    pipeline = comparison.create_pipeline(validate_study(env_params("cifar100_smoke")))
    assert "published_reference" in pipeline.inputs()
    report = next(n for n in pipeline.nodes if n.name == "build_report")
    assert report.inputs[-1] == "reproduced_vs_published"
    published = next(n for n in pipeline.nodes if n.name == "compare_with_published")
    assert published.outputs == ["reproduced_vs_published"]


def test_other_studies_do_not_read_the_reference():
    pipeline = comparison.create_pipeline(validate_study(env_params("tiny")))
    assert "published_reference" not in pipeline.all_inputs()
    assert "compare_with_published" not in {n.name for n in pipeline.nodes}
    report = next(n for n in pipeline.nodes if n.name == "build_report")
    assert report.inputs[-2:] == ["params:comparison", "params:tracking"]  # tracking: run ids link to the MLflow UI
