from kedro.pipeline import Pipeline, node

from distillation_studies.pipelines.validated_params import with_validated_params
from distillation_studies.common.records import DataCell
from distillation_studies.study.schema import StudyConfig, teacher_label_noise

from .nodes import protocol_card, train_teacher


def create_pipeline(study: StudyConfig) -> Pipeline:
    teacher_input = DataCell(label_noise=teacher_label_noise(study)).dataset  # data.teacher_labels
    return with_validated_params(
        Pipeline(
            [
                node(
                    train_teacher,
                    [teacher_input, "data_summary", "params:teacher"],
                    ["teacher_model", "teacher_last_model", "teacher_history"],
                    name="train_teacher",
                ),
                node(protocol_card, ["data_summary", "teacher_model", "parameters"], "protocol_card", name="protocol_card"),
            ],
            tags="teacher",
        ),
        study,
    )
