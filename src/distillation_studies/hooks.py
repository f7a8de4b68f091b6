"""Kedro hooks: record the study parameters for the registry, and track the study in MLflow.

Nodes stay pure; these hooks read what they produced (models, histories, metrics, the report)
and log it, one nested MLflow run per arm (``teacher`` and ``<method>/seed_<n>``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from distillation_studies import study_params
from distillation_studies.common.errors import ConfigError
from distillation_studies.provenance import config_hash, git_commit, package_versions
from distillation_studies.tracking import StudyTracker, resolve_uri

log = logging.getLogger(__name__)

ARTIFACTS = {"model": "model", "last_model": "last_model"}
REPORT_ARTIFACTS = {
    "comparison_table": "comparison_table.csv",
    "paired_tests": "paired_tests.csv",
    "sensitivity_table": "sensitivity_table.csv",
    "comparison_plot": "comparison_plot.png",
    "study_plots": "plots",
    "study_report_md": "study_report.md",
    "study_report_html": "study_report.html",
    "protocol_card": "protocol_card.json",
    "capacity_report": "capacity_report.json",
    "recommendation": "recommendation.json",
    "reproduced_vs_published": "reproduced_vs_published.csv",
}


def protocol_tags(card: dict[str, Any]) -> dict[str, str]:
    """The protocol card's scalar facts as ``protocol.*`` tags, searchable in the MLflow UI."""
    keys = ("dataset", "split_seed", "seeds", "augmentation", "selection_rule", "teacher_checkpoint_sha256", "config_hash", "git_commit")
    return {f"protocol.{key}": str(card[key])[:5000] for key in keys if key in card}


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
        resuming = bool(run_params.get("only_missing_outputs"))
        if resuming:
            self._check_resumable(catalog)
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
        if resuming:  # outputs reused from earlier runs keep their runs, which receive what is still missing
            adopted = self.tracker.adopt(self.tracker.earlier_children(tags["config_hash"]))
            log.info("Resuming: %d nested runs of earlier runs of this config are reused: %s", len(adopted), sorted(adopted))

    @hook_impl
    def before_node_run(self, node, catalog, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """Hand the recommendation the MLflow run id of every (arm, seed), as its evidence."""
        if "mlflow_run_ids" in inputs and self.tracker is not None:
            return {"mlflow_run_ids": {k: v for k, v in self.tracker.children.items() if k != "teacher"}}
        return None

    @hook_impl
    def after_node_run(self, node, catalog, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        if self.tracker is None:
            return
        for dataset, value in outputs.items():
            if dataset in REPORT_ARTIFACTS:
                self._log_report(dataset, value)
                continue
            arm = arm_of(dataset)
            if arm is None:
                continue
            key, kind = arm
            history = outputs.get(dataset.removesuffix(kind) + "history")
            run_id = self.tracker.child(key, self._arm_params(key, history))
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

    def _check_resumable(self, catalog) -> None:
        """``--only-missing-outputs`` reuses saved outputs: refuse, before any work, when they come from
        a different study config, since the report would mix two studies."""
        if "protocol_card" not in catalog or not catalog.exists("protocol_card"):
            return
        saved, current = catalog.load("protocol_card").get("config_hash"), config_hash(self.params)
        if saved != current:
            raise ConfigError(
                f"--only-missing-outputs: the saved outputs come from another study config (protocol_card "
                f"config_hash {saved}, this config {current}); resuming would mix two studies. Run without "
                "--only-missing-outputs to run this config in full, or restore the config of the saved outputs."
            )

    def _arm_params(self, key: str, history: dict[str, Any] | None) -> dict[str, Any]:
        """Parameters of a nested run, from the history its node wrote (what really ran)."""
        summary = (history or {}).get("summary", {})
        if key == "teacher":
            return {"role": "teacher", "model": summary.get("model"), **(self.params.get("teacher") or {})}
        wanted = ("method", "registered_method", "setting", "student", "label_fraction", "train_size", "seed", "hyperparameters", "model")
        return {"role": "student", "arm": key.split("/")[0], **{k: summary[k] for k in wanted if k in summary}}

    def _log_report(self, dataset: str, value: Any) -> None:
        parent = self.tracker.parent_id
        if dataset == "comparison_table":
            self.tracker.log_text(parent, value.to_csv(index=False), "report/comparison_table.csv")
            metrics = {f"{row['arm']}.test_accuracy_mean": row["test_accuracy_mean"] for _, row in value.iterrows()}
            self.tracker.log_metrics(parent, metrics)  # the study run alone shows the outcome
        elif dataset in ("paired_tests", "sensitivity_table", "reproduced_vs_published"):
            self.tracker.log_text(parent, value.to_csv(index=False), f"report/{dataset}.csv")
        elif dataset == "comparison_plot":
            self.tracker.log_figure(parent, value, "report/comparison_plot.png")
        elif dataset == "study_plots":
            for name, figure in value.items():
                self.tracker.log_figure(parent, figure, f"report/plots/{name}")
        elif dataset in ("study_report_md", "study_report_html"):
            self.tracker.log_text(parent, value, f"report/{REPORT_ARTIFACTS[dataset]}")
        else:  # JSON records: protocol card, capacity report, recommendation
            self.tracker.log_text(parent, json.dumps(value, indent=1, default=str), f"report/{dataset}.json")
            if dataset == "protocol_card":
                self.tracker.set_tags(parent, protocol_tags(value))
