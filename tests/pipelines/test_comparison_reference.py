"""The comparison pipeline reads the published reference only for CIFAR-100 studies."""

from __future__ import annotations

import pytest

from distillation_studies import study_params
from distillation_studies.pipelines import comparison
from tests.study.test_schema import env_params


@pytest.fixture
def remember():
    yield study_params.remember
    study_params.remember(None)


def test_cifar100_study_sets_its_results_against_the_published_numbers(remember):
    remember(env_params("cifar100_smoke"))
    pipeline = comparison.create_pipeline()
    assert "published_reference" in pipeline.inputs()
    report = next(n for n in pipeline.nodes if n.name == "build_report")
    assert report.inputs[-1] == "reproduced_vs_published"
    published = next(n for n in pipeline.nodes if n.name == "compare_with_published")
    assert published.outputs == ["reproduced_vs_published"]


def test_other_studies_do_not_read_the_reference(remember):
    remember(env_params("tiny"))
    pipeline = comparison.create_pipeline()
    assert "published_reference" not in pipeline.all_inputs()
    assert "compare_with_published" not in {n.name for n in pipeline.nodes}
    report = next(n for n in pipeline.nodes if n.name == "build_report")
    assert report.inputs[-1] == "params:comparison"
