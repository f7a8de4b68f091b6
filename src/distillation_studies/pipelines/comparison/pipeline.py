from kedro.pipeline import Pipeline, node

from distillation_studies.study import student_namespace, study_config

from .nodes import collect_runs, compare_methods


def create_pipeline(**kwargs) -> Pipeline:
    study = study_config()
    metrics = [f"{student_namespace(arm.key, seed)}.metrics" for arm in study.arms for seed in study.seeds]
    return Pipeline(
        [
            node(collect_runs, metrics, "study_runs", name="collect_runs"),
            node(
                compare_methods,
                ["study_runs", "teacher_metrics", "data_summary", "params:comparison"],
                ["comparison_table", "comparison_report", "comparison_plot"],
                name="compare_methods",
            ),
        ]
    )
