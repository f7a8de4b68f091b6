"""What a study prints while it runs: arms done out of all, elapsed and estimated time left, and at
the end the recommendation again with where the report and the MLflow study run are.

Display only: the counts are this process's view of the run (the sequential runner's). Nothing a
result depends on is kept here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from distillation_studies import terminal
from distillation_studies.tracking.hooks import STUDY_RUN
from distillation_studies.tracking.runs import StudyRun

log = logging.getLogger("distillation_studies.progress")

ARM_NODE = "distil_student"  # the node that trains one (arm, seed); its namespace names the arm
REPORT_DATASETS = ("study_report_md", "study_report_html")
MLFLOW_UI_PORT = 5000
EPOCH_LINE_EVERY_S = 10.0  # a long training prints at most one epoch line this often (and always its last)


def clock(seconds: float) -> str:
    """Seconds as ``1 h 02 min``, ``3 min 05 s`` or ``42 s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


@dataclass
class StudyProgress:
    """Arms trained so far and a time-left estimate from the mean time per arm."""

    total: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    arm_seconds: float = 0.0

    def arm_finished(self, seconds: float) -> None:
        self.done += 1
        self.arm_seconds += seconds

    def time_left(self) -> float | None:
        if not self.done:
            return None
        return (self.total - self.done) * self.arm_seconds / self.done

    def line(self, arm: str) -> str:
        left = self.time_left()
        estimate = "" if left is None else f", about {clock(left)} left"
        return f"Study progress: {self.done}/{self.total} students trained ({arm} done), {clock(time.monotonic() - self.started)} elapsed{estimate}"


def epoch_lines(label: str, epochs: int, every_s: float = EPOCH_LINE_EVERY_S, now=time.monotonic):
    """A ``train(on_epoch=...)`` callback printing ``teacher: epoch 2/3, val accuracy 0.8123, 1 min 02 s
    elapsed, about 31 s left``, at most once per ``every_s`` seconds, and the last epoch always."""
    started, last = now(), [float("-inf")]

    def print_epoch(row: dict[str, float]) -> None:
        moment = now()
        if moment - last[0] < every_s and row["epoch"] < epochs:
            return
        last[0] = moment
        elapsed = moment - started
        left = elapsed / row["epoch"] * (epochs - row["epoch"])
        estimate = f", about {clock(left)} left" if row["epoch"] < epochs else ""
        log.info("%s: epoch %d/%d, val accuracy %.4f, %s elapsed%s", label, row["epoch"], epochs, row["val_accuracy"], clock(elapsed), estimate)

    return print_epoch


def arm_name(node_namespace: str | None) -> str:
    """``students.kd.seed_0`` -> ``kd/seed_0`` (the run key users see in MLflow)."""
    parts = (node_namespace or "").split(".")
    return "/".join(parts[1:]) if len(parts) >= 3 else node_namespace or "?"


def report_paths(catalog, names: tuple[str, ...] = REPORT_DATASETS) -> list[str]:
    """Where the report files of this run's config are: the version just written, or the one a resumed
    run reused (``run_guard`` pins both as the version to load); files that do not exist are left out."""
    paths = []
    for name in names:
        try:
            dataset = catalog.get(name)
            path = dataset._get_load_path() if getattr(dataset, "_version", None) is not None else dataset._filepath
            if Path(str(path)).exists():
                paths.append(str(Path(str(path)).resolve()))
        except Exception:  # noqa: BLE001 - a display helper never fails a study
            continue
    return paths


def mlflow_lines(study: StudyRun | None, port: int = MLFLOW_UI_PORT) -> list[str]:
    """Where the study's MLflow run is, and the command that shows it."""
    if study is None:
        return []
    page = f"#/experiments/{study.experiment_id}/runs/{study.run_id}"
    where = f"MLflow study run: {study.run_id} (experiment {study.experiment_id}) in {study.tracking_uri}"
    if study.tracking_uri.startswith(("http://", "https://")):  # a tracking server serves its own UI
        return [where, f"  see it: {study.tracking_uri.rstrip('/')}/{page}"]
    return [
        where,
        f"  see it: mlflow ui --backend-store-uri {study.tracking_uri} --port {port}",
        f"  then open http://127.0.0.1:{port}/{page}",
    ]


class ProgressHooks:
    def __init__(self) -> None:
        self.progress: StudyProgress | None = None
        self.arm_started: dict[str, float] = {}
        self.recommendation: str | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        """Short terminal lines from here on (``terminal.install``; ``kedro run -v`` shows every line)."""
        terminal.install()

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        arms = [node for node in pipeline.nodes if node.name.split(".")[-1] == ARM_NODE]
        self.progress = StudyProgress(total=len(arms))
        self.arm_started.clear()
        self.recommendation = None
        if arms:
            log.info("Study: %d students to train (arms x seeds)", len(arms))

    @hook_impl
    def before_node_run(self, node) -> None:
        if node.name.split(".")[-1] == ARM_NODE:
            self.arm_started[node.name] = time.monotonic()

    @hook_impl
    def after_node_run(self, node, outputs: dict[str, Any]) -> None:
        if node.name in self.arm_started and self.progress is not None:
            self.progress.arm_finished(time.monotonic() - self.arm_started.pop(node.name))
            log.info(self.progress.line(arm_name(node.namespace)))
        recommendation = outputs.get("recommendation")
        if isinstance(recommendation, dict) and isinstance(recommendation.get("markdown"), str):
            self.recommendation = recommendation["markdown"]

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        """The last lines of a run: the answer, and where to look next."""
        lines = []
        if self.recommendation:
            lines += [self.recommendation.strip(), ""]
        paths = report_paths(catalog) if "build_report" in {n.name for n in pipeline.nodes} else []
        lines += [f"Report: {path}" for path in paths]
        lines += mlflow_lines(catalog.load(STUDY_RUN) if STUDY_RUN in catalog else None)
        if lines:
            log.info("\n".join(lines))
