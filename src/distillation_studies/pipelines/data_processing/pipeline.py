from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from distillation_studies.pipelines.validated_params import with_validated_params
from distillation_studies.study.identity import model_input_name
from distillation_studies.study.schema import StudyConfig

from .nodes import label_subset, load_images, noisy_input, split_images, transfer_input


def _bound(function, **kwargs):
    return update_wrapper(partial(function, **kwargs), function)


def create_pipeline(study: StudyConfig) -> Pipeline:
    """The splits, then one derived split set per data cell of the grid: noisy labels first (shared by
    every fraction at that rate), then the label fraction, with or without its transfer set."""
    nodes = [
        node(load_images, "params:data", "raw_images", name="load_images"),
        node(split_images, ["raw_images", "params:data"], ["model_input", "data_summary"], name="split_images"),
    ]
    for rate in sorted({arm.label_noise for arm in study.arms} - {0.0}):
        name = model_input_name(1.0, False, rate)
        nodes.append(node(_bound(noisy_input, rate=rate), ["model_input", "data_summary", "params:data"], name, name=f"make_{name}"))
    cells = sorted({(arm.label_fraction, arm.transfer_set, arm.label_noise) for arm in study.arms if arm.label_fraction < 1.0})
    for fraction, transfer, rate in cells:
        source, name = model_input_name(1.0, False, rate), model_input_name(fraction, transfer, rate)
        make = _bound(transfer_input if transfer else label_subset, fraction=fraction)
        nodes.append(node(make, [source, "params:data"], name, name=f"make_{name}"))
    return with_validated_params(Pipeline(nodes, tags="data"), study)
