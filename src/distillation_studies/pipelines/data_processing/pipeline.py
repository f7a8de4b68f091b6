from kedro.pipeline import Pipeline, node

from .nodes import load_images, split_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(load_images, "params:data", "raw_images", name="load_images"),
            node(split_images, ["raw_images", "params:data"], ["model_input", "data_summary"], name="split_images"),
        ]
    )
