from functools import partial, update_wrapper
from typing import Iterable

from kedro.pipeline import Pipeline, node

from distillation_studies.pipelines.validated_params import with_validated_params
from distillation_studies.common.records import DataCell
from distillation_studies.study.schema import StudyConfig

from .nodes import label_subset, load_images, noisy_input, split_images, transfer_input


def _bound(function, **kwargs):
    return update_wrapper(partial(function, **kwargs), function)


def derived_cells(cells: Iterable[DataCell]) -> list[DataCell]:
    """Every cell with splits of its own and the cells they are derived from, sources first."""
    derived: set[DataCell] = set()
    for cell in cells:
        while cell.source is not None:
            derived.add(cell)
            cell = cell.source
    return sorted(derived, key=lambda c: (c.source.source is not None, c.sort_key()))


def create_pipeline(study: StudyConfig) -> Pipeline:
    """The splits, then one derived split set per data cell of the grid: noisy labels first (shared by
    every fraction at that rate), then the label fraction, with or without its transfer set."""
    nodes = [
        node(load_images, "params:data", "raw_images", name="load_images"),
        node(split_images, ["raw_images", "params:data"], ["model_input", "data_summary"], name="split_images"),
    ]
    for cell in derived_cells(arm.cell for arm in study.arms):
        if cell.label_fraction < 1.0:  # a label fraction of its rate's splits, with or without its transfer set
            make = _bound(transfer_input if cell.transfer_set else label_subset, fraction=cell.label_fraction)
            inputs = [cell.source.dataset, "params:data"]
        else:  # a noise rate: relabel the plain splits
            make, inputs = _bound(noisy_input, rate=cell.label_noise), [cell.source.dataset, "data_summary", "params:data"]
        nodes.append(node(make, inputs, cell.dataset, name=f"make_{cell.dataset}"))
    return with_validated_params(Pipeline(nodes, tags="data"), study)
