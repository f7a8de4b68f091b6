from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from distillation_studies.study.identity import model_input_name
from distillation_studies.study_params import study_config

from .nodes import label_subset, load_images, split_images


def create_pipeline(**kwargs) -> Pipeline:
    nodes = [
        node(load_images, "params:data", "raw_images", name="load_images"),
        node(split_images, ["raw_images", "params:data"], ["model_input", "data_summary"], name="split_images"),
    ]
    fractions = sorted({arm.label_fraction for arm in study_config().arms} - {1.0})
    for fraction in fractions:
        subset = update_wrapper(partial(label_subset, fraction=fraction), label_subset)
        name = model_input_name(fraction)
        nodes.append(node(subset, ["model_input", "params:data"], name, name=f"make_{name}"))
    return Pipeline(nodes, tags="data")
