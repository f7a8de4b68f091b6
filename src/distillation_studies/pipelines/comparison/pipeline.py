from kedro.pipeline import Pipeline, node

from distillation_studies.analysis.reference import PUBLISHED_DATASET
from distillation_studies.pipelines.validated_params import with_validated_params
from distillation_studies.study.identity import student_runs
from distillation_studies.study.schema import StudyConfig

from .nodes import build_report, build_search_report, collect_histories, collect_runs, compare_methods, compare_with_published, recommend_method

SEARCH_OUTPUTS = ["search_trials", "search_events", "search_finalists"]


def create_pipeline(study: StudyConfig) -> Pipeline:
    runs = student_runs(study.arms, study.seeds)
    # CIFAR-100 studies are set against the published numbers (data/01_raw/reference/published_cifar100.csv);
    # other studies do not read that file at all.
    published = study.data.dataset == PUBLISHED_DATASET
    searched = study.search is not None  # the report gains a "Search" section, read from the search's outputs
    # The collect nodes read every arm's datasets, so they sit in the ``students`` namespace (node
    # namespace only: dataset names are unchanged). Collapsed in kedro-viz, ``students`` then emits the
    # three study-level tables instead of every arm's metrics and history.
    collect = Pipeline(
        [
            node(collect_runs, [run.dataset("metrics") for run in runs], ["study_runs", "run_details"], name="collect_runs", namespace="students"),
            node(collect_histories, [run.dataset("history") for run in runs], "study_histories", name="collect_histories", namespace="students"),
        ],
        tags="students",
    )
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
                    *(["reproduced_vs_published"] if published else []),
                ],
                ["study_report_md", "study_report_html", "study_plots"],
                name="build_report",
            ),
        ],
        tags="report",
    )
    return with_validated_params(collect + report, study)
