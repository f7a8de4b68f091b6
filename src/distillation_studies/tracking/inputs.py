"""The splits an arm trains on, as MLflow datasets: the UI's *Dataset* column then says which data each
run saw, and two runs with the same digest saw the same images, labels and labelled mask.

The digest covers every pixel, every label and the transfer-set mask, so a label fraction, a noisy
copy or a transfer set is a dataset of its own; the source is the saved split file the arm loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from torch import Tensor

from distillation_studies.learning.streaming import labels_of

SPLIT_CONTEXTS = {"train": "train", "val": "validation", "test": "test"}  # split -> MLflow's context tag
DIGEST_SIZE = 8  # bytes: 16 hex characters, as short as MLflow's own digests and without collisions in practice
CELL_PREFIX = "model_input"


def split_digest(split: Any, labelled: Tensor | None = None) -> str:
    """A digest of a split's images, labels and labelled mask (in-memory tensors), or of its labels,
    size and reader (a split read from disk, whose images are files named by the source)."""
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    labels = labels_of(split).contiguous()
    digest.update(labels.numpy().tobytes())
    if isinstance(split, Mapping) and isinstance(split.get("x"), Tensor):
        images = split["x"].contiguous()
        digest.update(str(tuple(images.shape)).encode())
        digest.update(images.numpy().data)  # every pixel, without copying
    else:
        digest.update(f"{type(split).__name__}:{len(labels)}".encode())
    if labelled is not None:
        digest.update(labelled.to(dtype=labels.dtype).contiguous().numpy().tobytes())
    return digest.hexdigest()


def dataset_name(dataset: str, cell: str, split: str) -> str:
    """``digits.train`` for the full-label splits, ``digits.train.labels_10_transfer`` for a data cell."""
    suffix = cell.removeprefix(CELL_PREFIX).lstrip("_")
    return f"{dataset}.{split}" + (f".{suffix}" if suffix else "")


def split_inputs(cell: str, model_input: Mapping[str, Any], data_summary: Mapping[str, Any], source: str | None) -> list[DatasetInput]:
    """The train, validation and test splits of one data cell (``model_input`` catalog entry ``cell``),
    tagged with their MLflow context; ``source`` is the saved file they were loaded from, if any."""
    labelled = model_input.get("labelled")
    source_type, source_text = ("local", json.dumps({"uri": source})) if source else ("code", json.dumps({"tags": {"kedro_dataset": cell}}))
    inputs = []
    for split, context in SPLIT_CONTEXTS.items():
        data = model_input[split]
        mask = labelled if split == "train" else None
        profile = {
            "samples": len(labels_of(data)),
            "labelled": int(mask.sum()) if mask is not None else len(labels_of(data)),
            "classes": data_summary.get("num_classes"),
            "input_shape": data_summary.get("input_shape"),
            "kedro_dataset": cell,
        }
        entity = Dataset(
            name=dataset_name(str(data_summary["dataset"]), cell, split),
            digest=split_digest(data, mask),
            source_type=source_type,
            source=source_text,
            profile=json.dumps(profile),
        )
        inputs.append(DatasetInput(entity, [InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return inputs
