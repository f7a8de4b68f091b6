"""Nodes receive their ``params:`` inputs as the study's validated sections, parsed once at build time."""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path

import cloudpickle
import pytest
from kedro.io import MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner
from kedro.validation.type_extractor import TypeExtractor

from distillation_studies.common.errors import ConfigError
from distillation_studies.pipeline_registry import PIPELINES
from distillation_studies.pipelines.validated_params import with_validated_params
from distillation_studies.study.schema import DataConfig, MethodEntry, validate_study
from tests.pipelines.test_study_slice import catalog_for, tiny_params


@pytest.fixture(scope="module")
def study():
    return validate_study(tiny_params())


def _received(*values):
    return values


def test_a_node_reads_the_raw_params_and_its_function_gets_the_validated_sections(study):
    pipeline = with_validated_params(
        Pipeline([node(_received, ["model_input", "params:data", "params:methods.kd"], "received", name="spy")]), study
    )
    assert pipeline.nodes[0].inputs == ["model_input", "params:data", "params:methods.kd"]  # what kedro-viz draws
    catalog = catalog_for(study.params)
    catalog["params:methods.kd"] = MemoryDataset(study.params["methods"]["kd"], copy_mode="assign")
    catalog["model_input"] = MemoryDataset("splits", copy_mode="assign")
    catalog["received"] = MemoryDataset(copy_mode="assign")
    SequentialRunner().run(pipeline, catalog)
    splits, data, kd = catalog["received"].load()
    assert splits == "splits"
    assert data is study.data and isinstance(data, DataConfig)
    assert kd is study.section("methods.kd") and isinstance(kd, MethodEntry) and kd.config.temperature == 4.0


def test_a_pipeline_built_for_another_config_fails_naming_the_key(study):
    spy = with_validated_params(Pipeline([node(_received, "params:data", "received", name="spy")]), study).nodes[0]
    assert spy.func(study.params["data"]) == (study.data,)
    with pytest.raises(ConfigError, match=r"^data: differs from the value the pipelines were built and validated for"):
        spy.func({**study.params["data"], "split_seed": 7})


def test_every_params_input_of_the_study_is_a_validated_section_that_kedro_leaves_alone(study):
    pipelines = {name: module.create_pipeline(study) for name, module in PIPELINES.items()}
    wired = {i for p in pipelines.values() for n in p.nodes for i in n.inputs if i.startswith("params:")}
    assert wired >= {"params:data", "params:teacher", "params:student.training", "params:methods.kd", "params:evaluation"}
    readers = [n for p in pipelines.values() for n in p.nodes if any(i.startswith("params:") for i in n.inputs)]
    for reader in readers:  # each one swaps its params for sections: a value not validated never reaches it
        with pytest.raises(ConfigError, match="differs from the value the pipelines were built and validated for"):
            reader.func(*(object() if i.startswith("params:") else None for i in reader.inputs))
    # Kedro 1.7 would otherwise build DataConfig(**raw) itself and rewrite the `parameters` tree.
    assert TypeExtractor(pipelines).extract_types_from_pipelines() == {}


def test_a_node_shipped_to_a_dask_worker_keeps_its_sections(study):
    distil = next(n for n in PIPELINES["distillation"].create_pipeline(study).nodes if n.name == "students.kd.seed_0.distil_student")
    shipped = cloudpickle.loads(cloudpickle.dumps(distil))
    assert shipped.inputs == distil.inputs and shipped.func.__wrapped__.__name__ == "distil_student"
    evaluate = next(n for n in PIPELINES["evaluation"].create_pipeline(study).nodes if n.name == "evaluate_teacher")
    with pytest.raises(ConfigError, match=r"^evaluation: differs"):  # the shipped sections still guard their values
        cloudpickle.loads(cloudpickle.dumps(evaluate)).func(None, None, None, None, {"ece_bins": 3})


def _fails(data):
    raise ValueError(data.split_seed)


def test_kedro_viz_and_tracebacks_place_a_wrapped_node_at_its_own_function(study):
    """kedro-viz's node panel takes the file from ``inspect.getfile(node.func)`` and the code from
    ``__wrapped__``: both must be the node function's, not validated_params.py (issue 23)."""
    pipelines = {name: module.create_pipeline(study) for name, module in PIPELINES.items()}
    readers = [n for p in pipelines.values() for n in p.nodes if any(i.startswith("params:") for i in n.inputs)]
    for reader in readers:
        own = inspect.unwrap(reader.func)
        assert inspect.getfile(reader.func) == inspect.getfile(own) and inspect.getfile(own).endswith("nodes.py")
        assert inspect.getsource(reader.func.__wrapped__).startswith(f"def {own.__name__}(")
    spy = with_validated_params(Pipeline([node(_fails, "params:data", "received", name="spy")]), study).nodes[0]
    with pytest.raises(ValueError) as raised:
        spy.func(study.params["data"])
    frames = [(Path(f.filename).name, f.lineno, f.name) for f in traceback.extract_tb(raised.value.__traceback__)]
    def_line = _fails.__code__.co_firstlineno
    assert frames[-2:] == [("test_validated_params.py", def_line, "_fails"), ("test_validated_params.py", def_line + 1, "_fails")]
