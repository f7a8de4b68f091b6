"""MLflow bookkeeping for a study: a parent run per ``kedro run`` and nested runs per arm.

Kept out of the nodes: the hooks in ``hooks.py`` call this with what nodes produced. Runs are
created with ``MlflowClient`` and an explicit ``mlflow.parentRunId`` tag, so nesting never depends
on a global "active run".
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from distillation_studies.datasets import model_payload

MAX_PARAM_LENGTH = 6000


def resolve_uri(uri: str, project_path: Path) -> str:
    """``sqlite:///relative.db`` is made absolute under the project, so any working directory works."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((project_path / uri[len(prefix) :]).resolve())
    return uri


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """Nested config as dotted keys, values as strings (MLflow params are strings)."""
    if isinstance(tree, dict):
        items: dict[str, str] = {}
        for key, value in tree.items():
            items.update(flatten(value, f"{prefix}{key}."))
        return items
    return {prefix[:-1]: json.dumps(tree) if isinstance(tree, (list, tuple)) else str(tree)}


class StudyTracker:
    """One parent run and its nested runs, keyed by arm name ("teacher", "kd/seed_0", ...)."""

    def __init__(self, uri: str, experiment: str, artifact_root: Path) -> None:
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id
            if found
            else self.client.create_experiment(experiment, artifact_location=(artifact_root / experiment).as_uri())
        )
        self.parent_id: str | None = None
        self.children: dict[str, str] = {}

    def start(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.parent_id = run.info.run_id
        self.log_params(self.parent_id, flatten(params))
        return self.parent_id

    def earlier_children(self, config_hash: str) -> dict[str, str]:
        """{arm key: run id} of the nested runs of earlier study runs with this config hash, newest first.

        A nested run is created only once its node's outputs are saved, so these are the runs whose
        outputs a resumed ``kedro run --only-missing-outputs`` reuses instead of recomputing.
        """
        parents = self.client.search_runs(
            [self.experiment_id], f"tags.config_hash = '{config_hash}'", order_by=["attributes.start_time DESC"]
        )
        found: dict[str, str] = {}
        for parent in parents:
            if parent.info.run_id == self.parent_id:
                continue
            for run in self.client.search_runs([self.experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent.info.run_id}'"):
                found.setdefault(run.data.tags.get("arm", ""), run.info.run_id)
        found.pop("", None)
        return found

    def adopt(self, runs: dict[str, str]) -> dict[str, str]:
        """Make earlier nested runs this study run's own: later outputs of their arms are logged there,
        and each is tagged with the run that resumed it."""
        for run_id in runs.values():
            self.set_tags(run_id, {"resumed_by": self.parent_id})
        self.set_tags(self.parent_id, {"resumed_runs": ",".join(sorted(runs.values()))[:5000]})
        self.children.update(runs)
        return runs

    def child(self, key: str, params: dict[str, Any]) -> str:
        """The nested run of an arm, created with its parameters on first use."""
        if key not in self.children:
            tags = {MLFLOW_PARENT_RUN_ID: self.parent_id, MLFLOW_RUN_NAME: key, "arm": key}
            run = self.client.create_run(self.experiment_id, run_name=key, tags=tags)
            self.children[key] = run.info.run_id
            self.log_params(run.info.run_id, flatten(params))
        return self.children[key]

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        entries = [Param(k, v[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for start in range(0, len(entries), 100):
            self.client.log_batch(run_id, params=entries[start : start + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, Any], step: int = 0) -> None:
        entries = [
            Metric(k, float(v), 0, step) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        for start in range(0, len(entries), 500):
            self.client.log_batch(run_id, metrics=entries[start : start + 500])

    def log_history(self, run_id: str, history: dict[str, Any]) -> None:
        """Every per-epoch loss term and validation accuracy as a metric series (step = epoch)."""
        entries = [
            Metric(f"epoch_{k}", float(v), 0, int(row["epoch"])) for row in history["epochs"] for k, v in row.items() if k != "epoch"
        ]
        for start in range(0, len(entries), 500):
            self.client.log_batch(run_id, metrics=entries[start : start + 500])
        self.log_text(run_id, json.dumps(history, indent=1), "history.json")

    def log_model(self, run_id: str, model: torch.nn.Module, name: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{name}.pt"
            torch.save(model_payload(model), path)
            self.client.log_artifact(run_id, str(path), artifact_path="model")

    def log_text(self, run_id: str, text: str, file_name: str) -> None:
        self.client.log_text(run_id, text, file_name)

    def log_figure(self, run_id: str, figure: Any, file_name: str) -> None:
        self.client.log_figure(run_id, figure, file_name)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def finish(self, status: str) -> None:
        for run_id in self.children.values():
            self.client.set_terminated(run_id, status)
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status)
