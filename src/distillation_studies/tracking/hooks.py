"""Kedro hooks: track the study in MLflow.

Nodes stay pure; these hooks log what they produced (models, histories, metrics, the report). The
driver's pipeline hooks open and close the study run and put its :class:`~tracking.StudyRun` into the
catalog (``study_run``). Node and dataset hooks run in whichever process runs the node (the driver,
or a Dask worker that received the catalog): they read the study from the catalog, open the arm's
nested run when its training starts, subscribe it to the epochs the node publishes
(``common.epochs``), and close the run once the node's outputs are saved. What these hooks hold in
the process while a node or a study runs is listed, with why, in ``tracking/__init__.py``.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from kedro.framework.hooks import hook_impl

from distillation_studies.common.records import RunLabels
from distillation_studies.analysis.metrics import SELECTION_METRIC
from distillation_studies.common import epochs
from distillation_studies.common.config import parse_dataclass
from distillation_studies.config_loader import session_config_loader
from distillation_studies.guards.preflight import check_writable, nearest_folder
from distillation_studies.provenance import config_hash, git_commit, package_versions
from distillation_studies.learning.export import first_images
from distillation_studies.learning.training import TrainConfig
from distillation_studies.tracking.inputs import split_inputs
from distillation_studies.tracking.models import log_classifier, recommended_alias, register_recommended, registry_runs
from distillation_studies.study.identity import ArmRun
from distillation_studies.study.schema import TrackingConfig
from distillation_studies.tracking.runs import (
    NestedRun,
    StudyLog,
    StudyRun,
    SearchTracking,
    StudyTracker,
    arm_runs,
    check_store,
    end_study,
    metric_name,
    resolve_uri,
)

log = logging.getLogger(__name__)

STUDY_RUN = "study_run"  # the catalog entry holding the StudyRun; absent when tracking is off
# A node input (catalog: an empty MemoryDataset) given the StudyRun when tracking is on: the search's
# nodes train many models each and open their nested runs themselves (through tracking.runs.SearchTracking).
SEARCH_TRACKING = "search_tracking"
EXAMPLE_IMAGES = 8
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
    "search_trials": "search_trials.csv",
    "search_events": "search_events.csv",
    "search_finalists": "search_finalists.json",
}


def protocol_tags(card: dict[str, Any]) -> dict[str, str]:
    """The protocol card's scalar facts as ``protocol.*`` tags, searchable in the MLflow UI."""
    keys = ("dataset", "split_seed", "seeds", "augmentation", "selection_rule", "training_budget", "teacher_checkpoint_sha256", "config_hash", "git_commit")
    return {f"protocol.{key}": str(card[key])[:5000] for key in keys if key in card}


class ArmDataset(NamedTuple):
    key: str  # the nested run's name: "teacher" or "<arm>/seed_<n>"
    kind: str  # model, last_model, history, metrics
    seed: int | None


def arm_of(dataset: str) -> ArmDataset | None:
    """The arm a dataset belongs to: ``students.kd.seed_1.history`` -> ("kd/seed_1", "history", 1),
    parsed by the one identity type (``study.identity.ArmRun``) that builds those names."""
    parsed = ArmRun.parse(dataset)
    if parsed is None:
        return None
    run, kind = parsed
    return ArmDataset(run.key, kind, run.seed)


def _trained_arm(node) -> ArmDataset | None:
    """The arm whose training this node is (it writes the arm's history), if any."""
    for output in node.outputs:
        arm = arm_of(output)
        if arm is not None and arm.kind == "history":
            return arm
    return None


def _study_of(catalog) -> StudyRun | None:
    return catalog.load(STUDY_RUN) if STUDY_RUN in catalog else None


@dataclass
class _NodeTracking:
    """What one running node logs into: looked up by node name by the dataset hooks of the same process."""

    study: StudyRun
    arm: NestedRun | None = None
    key: str = ""
    data_summary: dict[str, Any] | None = None  # for the logged MLflow model: its input normalisation
    examples: Any = None  # a few validation images: the logged model's input example
    catalog: Any = None  # the node's catalog: where its plots were saved (logged as saved, not drawn again)
    unsaved: set[str] = field(default_factory=set)
    # The arm's best model, logged as an MLflow model once every output is saved: by then the run has its
    # history's params too, and the model is created with all of them and its labels (no later writes).
    model: Any = None


_running: dict[str, _NodeTracking] = {}  # by node name, while the node runs: see the module docstring
_running_lock = threading.Lock()


class StudyHooks:
    """Keeps nothing between sessions: the study's parameters, folder and environment are read per run, and
    the study run travels in the catalog (so a Dask worker's copy of these hooks tracks the same study)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        # Raw parameters (with --env and --params applied), as the pipelines were built from: ``context.params``
        # would validate them against the nodes' type hints (and change the config hash).
        params = session_config_loader()["parameters"]
        project_path, env = Path(run_params.get("project_path") or Path.cwd()), run_params.get("env") or "local"
        started = _start_study(params, project_path, env, run_params)
        if started is None:
            return
        tracker, study = started
        catalog[STUDY_RUN] = study
        _close_on_exit(study)
        if run_params.get("only_missing_outputs"):  # outputs reused from earlier runs (run_guard pinned them) keep their runs
            adopted = tracker.earlier_arm_runs(study)
            tracker.adopt(study, adopted)
            log.info("Resuming: %d nested runs of earlier runs of this config are reused: %s", len(adopted), sorted(adopted))

    @hook_impl
    def before_node_run(self, node, catalog, inputs: dict[str, Any]) -> dict[str, Any] | None:
        study = _study_of(catalog)
        if study is None:
            return None
        tracking = _NodeTracking(study, unsaved=set(node.outputs), catalog=catalog)
        arm = _trained_arm(node)
        if arm is not None:
            tracking.arm, tracking.key = NestedRun.open(study, arm.key, arm.seed, _run_params(arm, inputs)), arm.key
            tracking.data_summary, tracking.examples = _export_inputs(inputs)
            _log_datasets(tracking.arm, inputs, catalog)
            epochs.subscribe(arm.key, tracking.arm.log_epoch)
        with _running_lock:
            _running[node.name] = tracking
        injected: dict[str, Any] = {}
        if "mlflow_run_ids" in inputs:  # the recommendation's evidence: every arm's run, found by its tags
            injected["mlflow_run_ids"] = {k: v for k, v in arm_runs(study).items() if not ArmRun.from_key(k).is_teacher}
        if SEARCH_TRACKING in inputs:  # the search nodes open one nested run per job themselves
            injected[SEARCH_TRACKING] = SearchTracking(study)
        return injected or None

    @hook_impl
    def on_node_error(self, error: Exception, node, catalog, inputs: dict[str, Any]) -> None:
        tracking = _pop(node.name)
        if tracking is not None and tracking.arm is not None:
            epochs.unsubscribe(tracking.key, tracking.arm.log_epoch)
            tracking.arm.fail(error)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node) -> None:
        with _running_lock:
            tracking = _running.get(node.name)
        if tracking is None:
            return
        _log_saved(tracking, dataset_name, data)
        tracking.unsaved.discard(dataset_name)
        if not tracking.unsaved:  # every output saved: the node is done, and so is its arm's run
            _pop(node.name)
            if tracking.arm is not None:
                epochs.unsubscribe(tracking.key, tracking.arm.log_epoch)
                if tracking.model is not None:
                    _log_mlflow_model(tracking.arm, tracking.model, tracking, ArmRun.from_key(tracking.key).model_name)
                tracking.arm.finish()

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], run_result, pipeline, catalog) -> None:
        study = _study_of(catalog)
        if study is not None:
            _end_study(study, "FINISHED")

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline, catalog) -> None:
        study = _study_of(catalog)
        if study is not None:
            _end_study(study, "FAILED", error)


def _start_study(params: dict[str, Any], project_path: Path, env: str, run_params: dict[str, Any]) -> tuple[StudyTracker, StudyRun] | None:
    """Open the study run (None with tracking off), after checking the store and closing orphans."""
    tracking = parse_dataclass(TrackingConfig, params.get("tracking"), "tracking")
    if not tracking.enabled:
        return None
    uri = resolve_uri(tracking.uri, project_path)
    check_store(uri)
    tracker = StudyTracker(uri, tracking.experiment, project_path)
    artifacts = tracker.artifact_folder()
    if artifacts is not None:  # models and reports go there: a full or read-only mlruns/ is named now
        check_writable({nearest_folder(artifacts)})
    orphans = tracker.close_orphans()
    if orphans:
        log.warning("Closed %d MLflow runs left RUNNING by earlier runs whose process is gone: %s", len(orphans), orphans)
    save_version = str(run_params.get("run_id") or run_params.get("session_id") or "")
    name = f"study-{env}-{time.strftime('%Y%m%d-%H%M%S')}"
    study = replace(
        tracker.start(name, params, _study_tags(params, project_path, env, save_version), save_version),
        register=tracking.register,
        system_metrics=tracking.system_metrics,
        system_metrics_interval_s=tracking.system_metrics_interval_s,
    )
    log.info("MLflow study run %s (%s) at %s", name, study.run_id, uri)
    return tracker, study


def _study_tags(params: dict[str, Any], project_path: Path, env: str, save_version: str) -> dict[str, str]:
    return {
        "git_commit": git_commit(project_path),
        "config_hash": config_hash(params),
        "kedro_env": env,
        "kedro_run_id": save_version,
        **{f"version.{name}": version for name, version in package_versions().items()},
    }


def _run_params(arm: ArmDataset, inputs: dict[str, Any]) -> dict[str, Any]:
    """How the arm is trained, every setting with its default filled in, so a run alone says it; the
    teacher has ``method=teacher`` and ``arm=teacher``, its own group when the MLflow UI groups by either.
    No ``role`` param: the tag ``role`` (``arm``/``study``) already names the run's place in the tree, and
    the UI's Group-by menu lists tags and params side by side."""
    if arm.key != ArmRun.teacher().key:
        return {"training": _effective_training(inputs.get("params:student.training"), "student.training")}
    teacher = dict(inputs.get("params:teacher") or {})
    training = _effective_training(teacher.pop("training", None), "teacher.training")
    return {"method": "teacher", "arm": "teacher", **teacher, "training": training}


def _effective_training(raw: Any, where: str) -> dict[str, Any]:
    config = raw if isinstance(raw, TrainConfig) else parse_dataclass(TrainConfig, raw, where)
    return dataclasses.asdict(config)


def _pop(node_name: str) -> _NodeTracking | None:
    with _running_lock:
        return _running.pop(node_name, None)


def _log_saved(tracking: _NodeTracking, dataset: str, value: Any) -> None:
    """Log one saved output: report artifacts into the study run, an arm's outputs into its run."""
    if dataset in REPORT_ARTIFACTS:
        saved = _saved_file(tracking.catalog, dataset) if dataset in PLOTS else None
        _log_report(StudyLog(tracking.study), dataset, value, saved)
        if dataset == "recommendation" and tracking.study.register:
            _register(tracking.study, value)
        return
    arm = arm_of(dataset)
    if arm is None:
        return
    run = tracking.arm if tracking.arm is not None and tracking.key == arm.key else NestedRun.find(tracking.study, arm.key)
    if run is None:
        log.warning("No MLflow run of %s in study %s: %s not logged", arm.key, tracking.study.run_id, dataset)
        return
    if arm.kind == "history":
        run.log_params(_arm_params(arm.key, value))
        run.log_history(value)
        failure = (value.get("summary") or {}).get("failure")
        if failure:
            run.set_tags({"failure": str(failure)})
    elif arm.kind == "metrics":
        run.log_metrics(value)
    elif arm.kind in ARTIFACTS:
        run.log_model(value, ARTIFACTS[arm.kind])
        if arm.kind == "model" and tracking.data_summary is not None:
            if run is tracking.arm:
                tracking.model = value  # logged when the node's outputs are all saved
            else:
                _log_mlflow_model(run, value, tracking, ArmRun.from_key(arm.key).model_name)


def _register(study: StudyRun, recommendation: dict[str, Any]) -> None:
    """tracking.register: every ranked candidate of every data cell (its best-validation seed) becomes a
    version of the registered model; each cell's pick gets its alias, ``recommended`` in a study of one
    cell, else ``recommended_<cell key>`` (no pick across cells: a user's data is their situation)."""
    client = study.client()
    cells = recommendation.get("cells", [])
    runs = [run_id for cell in cells for candidate in cell.get("ranked", []) for run_id in candidate.get("run_ids", [])]
    selection = metric_name(SELECTION_METRIC)
    best_val = {run_id: client.get_run(run_id).data.metrics.get(selection, float("-inf")) for run_id in runs}
    if not best_val:
        log.warning("tracking.register: no ranked candidate has an MLflow run, nothing registered")
        return
    for cell in cells:
        if not any(candidate.get("run_ids") for candidate in cell.get("ranked", [])):
            continue
        recommended, candidates = registry_runs(cell, best_val)
        alias = recommended_alias(cell.get("key", ""))
        versions = register_recommended(client, study.register, recommended, candidates, alias=alias)
        log.info("Registered %d version(s) of %s (%s); models:/%s@%s is run %s", len(versions), study.register,
                 cell.get("description", "one cell"), study.register, alias, recommended)


def _model_input(inputs: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(catalog name, splits) of the data cell a training node reads, if it reads one."""
    for name, value in inputs.items():
        if name.split(".")[-1].startswith("model_input") and isinstance(value, dict) and "val" in value:
            return name, value
    return None


def _export_inputs(inputs: dict[str, Any]) -> tuple[dict[str, Any] | None, Any]:
    """The data summary and a few validation images of a training node's inputs (its model_input)."""
    summary, cell = inputs.get("data_summary"), _model_input(inputs)
    if summary is None or cell is None:
        return None, None
    return summary, first_images(cell[1]["val"], EXAMPLE_IMAGES)


def _log_datasets(run: NestedRun, inputs: dict[str, Any], catalog) -> None:
    """The arm's train, validation and test splits as MLflow datasets, sourced at the file they were loaded from."""
    summary, cell = inputs.get("data_summary"), _model_input(inputs)
    if summary is None or cell is None:
        return
    name, splits = cell
    run.log_inputs(split_inputs(name, splits, summary, _saved_path(catalog, name)))


def _saved_file(catalog, name: str) -> Path | None:
    """The file (or folder) this run saved a versioned catalog entry to, under its save version; None when
    it is not versioned or not there. Not the latest version on disk: that may be another run's."""
    try:
        dataset = catalog.get(name)
        path = Path(str(dataset._get_versioned_path(dataset.resolve_save_version())))
        return path if path.exists() else None
    except Exception:  # noqa: BLE001 - the plot is then drawn again for MLflow
        return None


def _saved_path(catalog, name: str) -> str | None:
    """The file a catalog entry was loaded from (its latest version), or None (in memory, or unknown)."""
    try:
        dataset = catalog.get(name)
        loader = getattr(dataset, "_get_load_path", None)
        path = loader() if loader is not None else getattr(dataset, "_filepath", None)
        return str(Path(str(path)).resolve()) if path is not None else None
    except Exception:  # noqa: BLE001 - the source is a pointer for the reader; never fail an arm for it
        return None


def _log_mlflow_model(run: NestedRun, model: Any, tracking: _NodeTracking, name: str) -> None:
    """The best-on-validation model as an MLflow model on raw pixels; a model torch.export cannot
    trace is only warned about: its checkpoint is logged all the same."""
    try:
        known = (run.study.experiment_id, run.params, run.study.run_id) if run.params is not None else None
        log_classifier(run.client, run.run_id, model, tracking.data_summary, tracking.examples, name=name, known=known)
    except Exception as error:  # noqa: BLE001 - logging a model never fails a trained arm
        log.warning("%s: not logged as an MLflow model (%s: %s); its checkpoint is in model/", tracking.key, type(error).__name__, error)


def _arm_params(key: str, history: dict[str, Any]) -> dict[str, Any]:
    """Parameters of a nested run, from the history its node wrote (what really ran)."""
    summary = history.get("summary", {})
    run = ArmRun.from_key(key)
    if run.is_teacher:
        return {"model": summary.get("model")}
    labels = RunLabels.from_summary({"arm": run.arm, **summary}).params()  # the data cell included
    return {**labels, **{k: summary[k] for k in ("hyperparameters", "model") if k in summary}}


PLOTS = ("comparison_plot", "study_plots")


def _log_report(study: StudyLog, dataset: str, value: Any, saved: Path | None = None) -> None:
    """One report output into the study run; plots as the PNGs the catalog wrote (``saved``), drawn again
    only when those are not where this run saved them (a dataset that is not versioned, other names)."""
    if dataset == "comparison_table":
        study.log_text(value.to_csv(index=False), "report/comparison_table.csv")
        study.log_metrics({f"{metric_name('test_accuracy')}_mean/{row['arm']}": row["test_accuracy_mean"] for _, row in value.iterrows()})
    elif dataset in ("paired_tests", "sensitivity_table", "reproduced_vs_published", "search_trials", "search_events"):
        study.log_text(value.to_csv(index=False), f"report/{dataset}.csv")
    elif dataset == "comparison_plot":
        if saved is not None and saved.is_file() and saved.name == "comparison_plot.png":
            study.log_file(saved, "report")
        else:
            study.log_figure(value, "report/comparison_plot.png")
    elif dataset == "study_plots":
        if saved is not None and saved.is_dir() and {path.name for path in saved.iterdir()} == set(value):
            study.log_folder(saved, "report/plots")
        else:
            for name, plot in value.items():
                study.log_figure(getattr(plot, "figure", plot), f"report/plots/{name}")
    elif dataset in ("study_report_md", "study_report_html"):
        study.log_text(value, f"report/{REPORT_ARTIFACTS[dataset]}")
    else:  # JSON records: protocol card, capacity report, recommendation
        study.log_text(json.dumps(value, indent=1, default=str), f"report/{dataset}.json")
        if dataset == "protocol_card":
            study.set_tags(protocol_tags(value))
        elif dataset == "recommendation":
            # Imported here: the report's text brings SciPy's statistics, which a Dask worker never needs.
            from distillation_studies.report.recommendation import recommendation_markdown

            study.set_tags({DESCRIPTION_TAG: description(recommendation_markdown(value, heading=True))})


DESCRIPTION_TAG = "mlflow.note.content"  # what the MLflow UI shows as a run's description
MAX_DESCRIPTION = 7900  # MLflow keeps at most 8,000 characters of a tag value


def description(markdown: str) -> str:
    """The study run's description: the recommendation, cut at a line when MLflow's limit would be passed."""
    if len(markdown) <= MAX_DESCRIPTION:
        return markdown
    more = "\n\n(continued in report/recommendation.json and report/study_report.md)"
    return markdown[: markdown.rfind("\n", 0, MAX_DESCRIPTION - len(more))] + more


# ---- the end of a study: normal, failed, or interrupted (SIGINT, SIGTERM) --------------------------------

_exit_handlers: dict[str, Any] = {}


class StudyInterrupted(Exception):
    """Why a study ended without finishing: the signal it received (SIGINT, SIGTERM), or an exit without one."""

    def __init__(self, signal_name: str | None) -> None:
        super().__init__(f"{signal_name} received: study interrupted" if signal_name else "process exited: study interrupted")


def _close_on_exit(study: StudyRun) -> None:
    """Make SIGTERM unwind like Ctrl-C, and close the study's open runs as KILLED at interpreter exit if
    the study did not end normally (``on_pipeline_error`` never sees KeyboardInterrupt or SystemExit)."""
    received: list[str] = []

    def interrupted(signum: int, frame) -> None:
        received.append(signal.Signals(signum).name)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def close_if_open() -> None:
        try:
            if study.client().get_run(study.run_id).info.status == "RUNNING":
                end_study(study, "KILLED", StudyInterrupted(received[0] if received else None))
        except Exception as error:  # exiting anyway: say what is left open
            log.error("Could not close MLflow study run %s: %s", study.run_id, error)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, interrupted)
    atexit.register(close_if_open)
    _exit_handlers[study.run_id] = (close_if_open, previous)


def _end_study(study: StudyRun, status: str, error: BaseException | None = None) -> None:
    close_if_open, previous = _exit_handlers.pop(study.run_id, (None, {}))
    if close_if_open is not None:
        atexit.unregister(close_if_open)
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    end_study(study, status, error)
