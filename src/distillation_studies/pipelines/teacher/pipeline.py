from kedro.pipeline import Pipeline, node

from .nodes import protocol_card, train_teacher


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                train_teacher,
                ["model_input", "data_summary", "params:teacher"],
                ["teacher_model", "teacher_last_model", "teacher_history"],
                name="train_teacher",
            ),
            node(protocol_card, ["data_summary", "teacher_model", "parameters"], "protocol_card", name="protocol_card"),
        ],
        tags="teacher",
    )
