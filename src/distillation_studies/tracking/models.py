"""Trained classifiers as MLflow models that work outside the project, and the registry entry of a study.

A model logged by :func:`log_classifier` is a ``torch.export`` program (MLflow's ``pt2`` format) of the
classifier behind its input normalisation (:class:`~distillation_studies.learning.export.RawImageClassifier`),
so in any Python with torch and mlflow::

    probabilities = mlflow.pyfunc.load_model("models:/<model_id>").predict(raw_images)  # (N, K)
    classes = probabilities.argmax(axis=1)

where ``raw_images`` is a float32 array (N, C, H, W) of the dataset's raw pixels (in [0, 1] for the
embedded datasets, 0..255 for the torchvision ones). No project code is needed to load or predict, and no
unpickling: load with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false`` (the project's sessions set it), so a
model of another flavor planted in the store cannot run code when loaded. A model is as trusted as its store.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import mlflow
import mlflow.pytorch
import torch
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Run
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from distillation_studies.learning.export import RawImageClassifier, for_raw_images, raw_pixel_max, to_raw

RECOMMENDED_ALIAS = "recommended"
EXAMPLE_COUNT = 4  # > 1: torch.export keeps the batch dimension dynamic only for an example batch above 1


@contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to ``uri`` for the calls of MLflow that read it instead of a client's."""
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def log_classifier(
    client: MlflowClient,
    run_id: str,
    model: torch.nn.Module,
    data_summary: dict[str, Any],
    examples: torch.Tensor,
    name: str = "model",
    known: tuple[str, Mapping[str, str], str | None] | None = None,
) -> str:
    """Log ``model`` to run ``run_id`` as an MLflow model reading raw pixels; returns ``models:/<model_id>``.

    ``data_summary`` is the study's ``data_summary`` dataset: its ``normalisation`` (training-split or
    published statistics) goes inside the logged module, ``dataset`` sets the raw pixel scale and
    ``classes`` is recorded in the model's metadata. ``examples`` are a few images of a ``model_input``
    split (normalised, as the model reads them; :func:`~distillation_studies.learning.export.first_images`);
    they are turned back into raw pixels for the input example and the signature.

    Everything goes through ``client`` (its tracking URI, the run's experiment), never through
    MLflow's global tracking URI or active run, so arms logging at once in threads or processes are safe.
    ``known`` is the run's (experiment id, params, study run id) where the caller holds them, saving a query; the model
    gets the run's params and its labels (:func:`model_labels`) when it is created.
    """
    pixel_max = raw_pixel_max(str(data_summary["dataset"]))
    normalisation = data_summary["normalisation"]
    packaged = for_raw_images(model, normalisation, pixel_max)
    raw = to_raw(examples[:EXAMPLE_COUNT], normalisation, pixel_max)
    with torch.no_grad():
        probabilities = packaged(raw)
    example = raw.numpy()
    metadata = _metadata(example.shape[1:], pixel_max, normalisation, data_summary, probabilities.shape[1])
    if known is None:
        run = client.get_run(run_id)
        known = run.info.experiment_id, run.data.params, run.data.tags.get("study_run")
    experiment_id, params, study_run = known
    logged = client.create_logged_model(
        experiment_id, name=name, source_run_id=run_id, params=dict(params), tags=model_labels(params, study_run), model_type="classifier"
    )
    description = Model(artifact_path=logged.artifact_location, run_id=run_id, model_id=logged.model_id, model_uuid=logged.model_id)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model"
            key = _export_key(packaged, example, metadata)
            if not _from_exported(key, packaged, raw, probabilities, path, description):
                _save_exported(packaged, example, probabilities, metadata, path, description)
                _remember_exported(key, path)
            client.log_model_artifacts(logged.model_id, str(path))
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return f"models:/{logged.model_id}"


def _save_exported(
    packaged: RawImageClassifier, example: Any, probabilities: torch.Tensor, metadata: dict, path: Path, description: Model
) -> None:
    """MLflow's pt2 model folder of ``packaged`` at ``path``: ``torch.export`` traces it (most of the cost)."""
    mlflow.pytorch.save_model(
        packaged,
        path,
        mlflow_model=description,
        serialization_format="pt2",
        signature=infer_signature(example, probabilities.numpy()),
        input_example=example,
        metadata=metadata,
        # Given, not inferred: inference would reload the model in a subprocess for every arm.
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
    )
    # The exported weights live on the CPU, and MLflow refuses to load an exported program on another
    # device (its pyfunc default is CUDA when present), so the model predicts on the CPU everywhere.
    description.flavors["python_function"]["model_config"] = {"device": "cpu"}
    description.save(str(path / "MLmodel"))


# Exported programs by architecture (the process state named in ``tracking/__init__.py``): the arms of a
# study share a few architectures, and tracing one with torch.export costs about 0.17 s against 0.03 s
# for writing a traced program with another arm's weights. Nothing a user loads differs (tested).
EXPORTED_KEPT = 2  # the least recently used goes first: the teacher's, once the students' are in
_PROGRAM = Path("data") / "model.pt2"


@dataclass
class _Exported:
    program: torch.export.ExportedProgram
    module: torch.nn.Module  # ``program.module()`` (built once): reads the program's weights, so checks what is written
    files: dict[str, bytes]  # the model folder MLflow wrote, less the program and MLmodel
    mlmodel: dict[str, Any]  # its MLmodel; ids, paths and times are the next model's own
    program_bytes: int


_exported: OrderedDict[str, _Exported] = OrderedDict()
_exported_lock = threading.Lock()


def _export_key(packaged: RawImageClassifier, example: Any, metadata: dict) -> str | None:
    """What the traced program and the folder's other files depend on, or None (no architecture spec)."""
    spec = getattr(packaged.model, "spec", None)
    if spec is None:
        return None
    layout = [(name, list(tensor.shape), str(tensor.dtype)) for name, tensor in packaged.state_dict().items()]
    described = json.dumps([spec, layout, packaged.pixel_max, metadata, str(example.dtype), list(example.shape)], sort_keys=True, default=str)
    return hashlib.sha256(described.encode() + example.tobytes()).hexdigest()


def _remember_exported(key: str | None, path: Path) -> None:
    if key is None:
        return
    files = {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    program_bytes = len(files.pop(str(_PROGRAM)))
    mlmodel = Model.load(str(path / "MLmodel")).to_dict()
    files.pop("MLmodel")
    with _exported_lock:
        program = torch.export.load(str(path / _PROGRAM))
        _exported[key] = _Exported(program, program.module(), files, mlmodel, program_bytes)
        while len(_exported) > EXPORTED_KEPT:
            _exported.popitem(last=False)


def _from_exported(
    key: str | None, packaged: RawImageClassifier, raw: torch.Tensor, probabilities: torch.Tensor, path: Path, description: Model
) -> bool:
    """The model folder at ``path`` from a program traced for an earlier model of the same architecture,
    with ``packaged``'s weights; False (nothing written) when there is none or it predicts otherwise."""
    with _exported_lock:
        exported = _exported.get(key) if key is not None else None
        if exported is None:
            return False
        _exported.move_to_end(key)
        weights = packaged.state_dict()
        with torch.no_grad():
            for name, tensor in exported.program.state_dict.items():
                tensor.copy_(weights[name])
            # The module shares the program's weight tensors; if a torch release stopped sharing them, the
            # old weights' predictions would not match and the arm would be exported afresh.
            if not torch.allclose(exported.module(raw), probabilities, rtol=1e-5, atol=1e-6):
                return False
        for relative, content in exported.files.items():
            (path / relative).parent.mkdir(parents=True, exist_ok=True)
            (path / relative).write_bytes(content)
        (path / _PROGRAM).parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(exported.program, str(path / _PROGRAM))
        mlmodel = Model.from_dict(exported.mlmodel)
    mlmodel.run_id, mlmodel.model_id, mlmodel.model_uuid = description.run_id, description.model_id, description.model_uuid
    mlmodel.artifact_path = description.artifact_path
    mlmodel.utc_time_created = str(datetime.now(timezone.utc).replace(tzinfo=None))
    if exported.mlmodel.get("model_size_bytes") is not None:
        mlmodel.model_size_bytes = exported.mlmodel["model_size_bytes"] - exported.program_bytes + (path / _PROGRAM).stat().st_size
    mlmodel.save(str(path / "MLmodel"))
    return True


def _metadata(
    sample_shape: tuple[int, ...], pixel_max: float, normalisation: dict, data_summary: dict, num_classes: int
) -> dict[str, Any]:
    """What a user of the model needs to call it, recorded in its MLmodel file."""
    return {
        "input": f"raw pixels, float32 (N, {', '.join(map(str, sample_shape))}) in [0, {pixel_max:g}]",
        "output": "class probabilities (N, num_classes); argmax is the predicted class",
        "normalisation": {"mean": list(normalisation["mean"]), "std": list(normalisation["std"])},
        "classes": [str(c) for c in (data_summary.get("classes") or range(num_classes))],
    }


def logged_model_id(client: MlflowClient, run_id: str) -> str:
    """The id of the MLflow model run ``run_id`` logged last (an arm's run logs one: its best on validation)."""
    model_id = newest_model_id(client.get_run(run_id))
    if model_id is None:
        raise MlflowException(f"run {run_id} logged no MLflow model (log it with log_classifier first)")
    return model_id


def newest_model_id(run: Run) -> str | None:
    """The model the run logged last (an arm's run logs one), or None."""
    outputs = run.outputs.model_outputs if run.outputs else []
    return outputs[-1].model_id if outputs else None


def label_model(client: MlflowClient, model_id: str, run: Run) -> None:
    """The run's labels on its logged model, where it lacks them (a model logged before the run's last
    params, or by another process): the params and the tags the registry versions carry, so every model
    of a study is not just ``model``. A model created with them all costs one read."""
    logged = client.get_logged_model(model_id)
    missing = {key: value for key, value in run.data.params.items() if key not in logged.params}
    if missing:
        client.log_model_params(model_id, missing)
    labels = _labels(run)
    if any(logged.tags.get(key) != value for key, value in labels.items()):
        client.set_logged_model_tags(model_id, labels)


def recommended_alias(cell_key: str) -> str:
    """The registry alias of a data cell's pick: ``recommended`` for a study of one cell (key ``''``),
    else ``recommended_<cell key>`` (``recommended_labels_10__transfer``): one answer per cell, none across."""
    return f"{RECOMMENDED_ALIAS}_{cell_key}" if cell_key else RECOMMENDED_ALIAS


def registry_runs(recommendation: dict[str, Any], best_val_accuracy: Mapping[str, float]) -> tuple[str, list[str]]:
    """(recommended run, candidate runs) to register: one run per ranked candidate of ``recommendation``
    (one cell's answer: a ``cells`` entry of ``recommendation.json``).

    A candidate is a method (arm) with one run per seed; the run registered is its seed with the best
    validation accuracy (``best_val_accuracy``: run id -> value), never chosen on test. The recommended
    run is the first ranked candidate's. Raises ValueError when no candidate has a run id (tracking off).
    """
    chosen = [
        max(candidate["run_ids"], key=lambda run_id: best_val_accuracy.get(run_id, float("-inf")))
        for candidate in recommendation.get("ranked", [])
        if candidate.get("run_ids")
    ]
    if not chosen:
        raise ValueError("tracking.register: the recommendation names no MLflow run (is tracking enabled?)")
    return chosen[0], chosen


def register_recommended(
    client: MlflowClient,
    registry_name: str,
    recommended_run_id: str,
    candidate_run_ids: list[str],
    alias: str = RECOMMENDED_ALIAS,
) -> dict[str, str]:
    """Register each candidate run's model as a version of ``registry_name``; alias the recommended one.

    The recommended run is registered too when it is not among the candidates. Returns
    ``{run_id: version}``; ``models:/<registry_name>@<alias>`` then loads the recommended model.
    """
    try:
        client.create_registered_model(registry_name, description="Students of a distillation study; @recommended (or @recommended_<data cell> per cell) is the study's pick.")
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    versions: dict[str, str] = {}
    for run_id in dict.fromkeys([*candidate_run_ids, recommended_run_id]):
        model_id = logged_model_id(client, run_id)
        # MLflow's sqlite registry resolves a ``models:/<id>`` source through the *global* tracking URI.
        with _global_tracking_uri(client.tracking_uri):
            version = client.create_model_version(
                registry_name, f"models:/{model_id}", run_id=run_id, model_id=model_id, **_version_labels(client, run_id)
            )
        versions[run_id] = str(version.version)
    client.set_registered_model_alias(registry_name, alias, versions[recommended_run_id])
    return versions


VERSION_TAGS = ("arm", "method", "seed")  # params of the arm's run, read where the registry lists versions


def _version_labels(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """Tags and a description saying which arm and seed a version is: the registry page shows these, not
    the run's params, and "Version 3" alone does not say it is ``kd`` seed 0."""
    run = client.get_run(run_id)
    study_run = run.data.tags.get("study_run")
    description = (run.info.run_name or run_id) + (f" of study run {study_run}" if study_run else "")
    return {"tags": _labels(run), "description": description}


def _labels(run: Run) -> dict[str, str]:
    return model_labels(run.data.params, run.data.tags.get("study_run"))


def model_labels(params: Mapping[str, str], study_run: str | None) -> dict[str, str]:
    """Which arm, method, seed and study run a run's model is, from the run's params and study run tag."""
    tags = {key: params[key] for key in VERSION_TAGS if key in params}
    if study_run:
        tags["study_run"] = study_run
    return tags
