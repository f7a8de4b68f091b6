from kedro.pipeline import Node, Pipeline, node

from distillation_studies.analysis.reference import PUBLISHED_DATASET
from distillation_studies.pipelines.validated_params import with_validated_params
from distillation_studies.study.identity import ArmRun, arm_namespace, arm_seeds_dataset
from distillation_studies.study.schema import StudyConfig

from .nodes import (
    build_report,
    build_search_report,
    collect_study_histories,
    collect_study_runs,
    compare_methods,
    compare_with_published,
    gather_seeds,
    recommend_method,
)

SEARCH_OUTPUTS = ["search_trials", "search_events", "search_finalists"]


def gather_arm(arm: str, seeds: tuple[int, ...]) -> Node:
    """One arm's seeds gathered inside the arm's namespace: opened in kedro-viz, ``students`` shows one
    node per arm and nothing else, and ``students.<arm>`` its seeds and this node."""
    runs = [ArmRun(arm, seed) for seed in seeds]
    inputs = [run.dataset("metrics") for run in runs] + [run.dataset("history") for run in runs]
    return node(gather_seeds, inputs, arm_seeds_dataset(arm), name="gather_seeds", namespace=arm_namespace(arm))


def study_collection(study: StudyConfig) -> list[Node]:
    """The study-level tables, one dataset per arm in: outside ``students``, so the collapsed ``students``
    node emits one dataset per arm and the 2 x arms x seeds per-seed datasets stay inside their arms."""
    arms = [arm_seeds_dataset(arm.key) for arm in study.arms]
    return [
        node(collect_study_runs, arms, ["study_runs", "run_details"], name="collect_runs"),
        node(collect_study_histories, arms, "study_histories", name="collect_histories"),
    ]


def create_pipeline(study: StudyConfig) -> Pipeline:
    # CIFAR-100 studies are set against the published numbers (data/01_raw/reference/published_cifar100.csv);
    # other studies do not read that file at all.
    published = study.data.dataset == PUBLISHED_DATASET
    searched = study.search is not None  # the report gains a "Search" section, read from the search's outputs
    collect = Pipeline([*(gather_arm(arm.key, study.seeds) for arm in study.arms), *study_collection(study)], tags="students")
    report = Pipeline(
        [
            node(
                compare_methods,
                ["study_runs", "teacher_metrics", "params:comparison"],
                ["comparison_table", "paired_tests", "sensitivity_table", "comparison_plot"],
                name="compare_methods",
            ),
            node(
                recommend_method,
                ["comparison_table", "study_runs", "params:recommendation", "mlflow_run_ids", "params:comparison", "paired_tests"],
                "recommendation",
                name="recommend_method",
            ),
            *(
                [
                    node(
                        compare_with_published,
                        [
                            "comparison_table",
                            "teacher_metrics",
                            "published_reference",
                            "params:data",
                            "params:teacher",
                            "params:student",
                        ],
                        "reproduced_vs_published",
                        name="compare_with_published",
                    )
                ]
                if published
                else []
            ),
            node(
                build_search_report if searched else build_report,
                [
                    *(SEARCH_OUTPUTS if searched else []),
                    "comparison_table",
                    "paired_tests",
                    "sensitivity_table",
                    "recommendation",
                    "capacity_report",
                    "protocol_card",
                    "study_histories",
                    "run_details",
                    "teacher_metrics",
                    "data_summary",
                    "params:comparison",
                    "params:tracking",
                    *(["reproduced_vs_published"] if published else []),
                ],
                ["study_report_md", "study_report_html", "study_plots"],
                name="build_report",
            ),
        ],
        tags="report",
    )
    return with_validated_params(collect + report, study)
