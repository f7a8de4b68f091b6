from kedro.pipeline import Pipeline, node

from distillation_studies.pipelines.validated_params import with_validated_params
from distillation_studies.study.identity import model_input_name
from distillation_studies.study.schema import StudyConfig, teacher_label_noise

from .nodes import protocol_card, train_teacher


def create_pipeline(study: StudyConfig) -> Pipeline:
    teacher_input = model_input_name(1.0, False, teacher_label_noise(study))  # data.teacher_labels
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
