"""Kedro hooks: record the study parameters for the registry, and track the study in MLflow.

Nodes stay pure; these hooks read what they produced (models, histories, metrics, the report)
and log it, one nested MLflow run per arm (``teacher`` and ``<method>/seed_<n>``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from distillation_studies import study_params
from distillation_studies.provenance import config_hash, git_commit, package_versions
from distillation_studies.tracking import StudyTracker, resolve_uri

log = logging.getLogger(__name__)

ARTIFACTS = {"model": "model", "last_model": "last_model"}


def arm_of(dataset: str) -> tuple[str, str] | None:
    """(arm, kind) for datasets that belong to an arm: ``teacher_metrics`` -> ("teacher", "metrics")."""
    if dataset.startswith("teacher_"):
        return "teacher", dataset[len("teacher_") :]
    parts = dataset.split(".")
    if len(parts) == 4 and parts[0] == "students":
        return f"{parts[1]}/{parts[2]}", parts[3]
    return None


class StudyHooks:
    def __init__(self) -> None:
        self.tracker: StudyTracker | None = None
        self.params: dict[str, Any] = {}
        self.project_path = Path.cwd()
        self.env = "local"

    @hook_impl
    def after_context_created(self, context) -> None:
        # Raw parameters (with --env and --params applied): ``context.params`` would load the pipelines.
        self.params = context.config_loader["parameters"]
        self.project_path = Path(context.project_path)
        self.env = context.env or "local"
        study_params.remember(self.params)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        tracking = self.params.get("tracking") or {}
        self.tracker = None
        if not tracking.get("enabled", True):
            return
        uri = resolve_uri(tracking.get("uri", "sqlite:///mlflow.db"), self.project_path)
        # Artifacts live beside the database under the project, whatever the working directory.
        artifact_root = self.project_path / "mlruns"
        self.tracker = StudyTracker(uri, tracking.get("experiment", "distillation-studies"), artifact_root)
        tags = {
            "git_commit": git_commit(self.project_path),
            "config_hash": config_hash(self.params),
            "kedro_env": self.env,
            "kedro_run_id": str(run_params.get("run_id") or run_params.get("session_id") or ""),
            **{f"version.{name}": version for name, version in package_versions().items()},
        }
        name = f"study-{self.env}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_id = self.tracker.start(name, self.params, tags)
        log.info("MLflow study run %s (%s) at %s", name, run_id, uri)

    @hook_impl
    def after_node_run(self, node, catalog, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        if self.tracker is None:
            return
        for dataset, value in outputs.items():
            if dataset in ("comparison_report", "comparison_table", "comparison_plot"):
                self._log_report(dataset, value)
                continue
            arm = arm_of(dataset)
            if arm is None:
                continue
            key, kind = arm
            run_id = self.tracker.child(key, self._arm_params(key))
            if kind == "history":
                self.tracker.log_history(run_id, value)
            elif kind == "metrics":
                self.tracker.log_metrics(run_id, value)
            elif kind in ARTIFACTS:
                self.tracker.log_model(run_id, value, ARTIFACTS[kind])

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], run_result, pipeline, catalog) -> None:
        if self.tracker is not None:
            self.tracker.finish("FINISHED")

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline, catalog) -> None:
        if self.tracker is not None:
            self.tracker.set_tags(self.tracker.parent_id, {"error": f"{type(error).__name__}: {error}"[:5000]})
            self.tracker.finish("FAILED")

    def _arm_params(self, key: str) -> dict[str, Any]:
        if key == "teacher":
            return {"role": "teacher", **(self.params.get("teacher") or {})}
        method, seed = key.split("/")
        return {
            "role": "student",
            "method": method,
            "seed": int(seed.removeprefix("seed_")),
            "hyperparameters": (self.params.get("methods") or {}).get(method) or {},
            "student": self.params.get("student") or {},
        }

    def _log_report(self, dataset: str, value: Any) -> None:
        parent = self.tracker.parent_id
        if dataset == "comparison_report":
            self.tracker.log_text(parent, value, "report/comparison_report.md")
        elif dataset == "comparison_table":
            self.tracker.log_text(parent, value.to_csv(index=False), "report/comparison_table.csv")
            self._log_headline(value)
        else:
            self.tracker.log_figure(parent, value, "report/comparison_plot.png")

    def _log_headline(self, table) -> None:
        """Per-method mean accuracy on the parent run, so the study run alone shows the outcome."""
        metrics = {f"{row['method']}.test_accuracy_mean": row["test_accuracy_mean"] for _, row in table.iterrows()}
        self.tracker.log_metrics(self.tracker.parent_id, metrics)
