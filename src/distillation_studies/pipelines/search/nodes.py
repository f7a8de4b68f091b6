"""Search the methods and their hyperparameters on validation, then confirm the finalists on fresh seeds.

The search (``analysis.search_driver.SearchDriver``) decides which jobs to train; this shell proposes
settings with Optuna, trains each job through the study arms' own code, keeps every finished job in the
search's storage (a rerun trains only what is missing) and tags each job's MLflow run with its trial's
fate. The confirmation trains the finalists and the comparison's baselines at full length on
``search.confirmation_seeds`` and evaluates test once: the comparison and recommendation read only these.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from torch import nn

from distillation_studies.analysis.search_driver import Event, Job, Outcome, SearchDriver, TrialSpec
from distillation_studies.pipelines.comparison.nodes import collect_histories, collect_runs
from distillation_studies.pipelines.teacher.nodes import weights_digest
from distillation_studies.learning.training import TrainConfig
from distillation_studies.study.schema import ComparisonConfig, EvaluationConfig, MethodEntry
from distillation_studies.study.search import SearchConfig

from .jobs import JobTracking, Shared, run_all, run_confirmation, run_search_job
from .proposals import OUTCOME_FIELDS, OptunaProposals, fingerprint

log = logging.getLogger(__name__)
# A trial's fate (its jobs' MLflow ``status`` tag), in this order of precedence; a trial with none of
# these (e.g. promoted at every rung, then still racing when the seeds ran out) is "completed".
FATES = ("finalist", "cut_by_finalists", "dropped_by_race", "stopped_early", "failed")
CONFIRMATION = "confirmation"  # the stage of the confirmation's jobs


def search_methods(
    teacher_model: nn.Module,
    model_input: dict,
    data_summary: dict,
    student_model: dict[str, Any],
    student_training: TrainConfig,
    methods: tuple[MethodEntry, ...],
    search: SearchConfig,
    search_storage: str,
    search_tracking: JobTracking | dict,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(one row per job, the search's events, its finalists and spend). ``search_storage`` is the SQLite
    URL of the Optuna studies and finished jobs; ``search_tracking`` opens the jobs' MLflow runs ({}: tracking off)."""
    tracking = search_tracking or None
    shared = Shared(teacher_model, model_input, data_summary, student_model, student_training, {e.key: e for e in methods}, tracking)
    digest = fingerprint(repr(search), [repr(e) for e in methods], student_model, repr(student_training), data_summary, weights_digest(teacher_model))
    proposals = OptunaProposals(search, search_storage, digest)
    driver = SearchDriver(search, proposals.propose, proposals.tell)
    outcomes: list[Outcome] = []
    while jobs := driver.next_jobs():
        batch = _run_batch(jobs, proposals, shared)
        driver.record(batch)
        outcomes.extend(batch)
    fates = trial_fates(driver.events())
    if tracking is not None:
        tracking.tag_jobs({o.job.key: fates.get(o.job.trial.trial_id, "completed") for o in outcomes})
    trials = pd.DataFrame([{**job_record(o), "status": fates.get(o.job.trial.trial_id, "completed")} for o in outcomes])
    return trials, events_table(driver.events()), finalists_record(driver, search)


def _run_batch(jobs: list[Job], proposals: OptunaProposals, shared: Shared) -> list[Outcome]:
    """The batch's outcomes in the driver's order: saved ones replayed, the others trained (and saved at once)."""
    saved = {job.key: proposals.saved(job) for job in jobs}
    todo = [job for job in jobs if saved[job.key] is None]
    log.info("Search: %d job(s) to train, %d replayed from the storage: %s", len(todo), len(jobs) - len(todo), [j.key for j in todo])
    trained = run_all(run_search_job, todo, shared, on_result=lambda job, outcome: proposals.save(outcome))
    fresh = {outcome.job.key: outcome for outcome in trained}
    return [saved[job.key] or fresh[job.key] for job in jobs]


def trial_fates(events: list[Event]) -> dict[str, str]:
    """Each trial's fate (``FATES``); a trial with none is absent: its jobs are 'completed'."""
    fates: dict[str, str] = {}
    for event in events:
        if event.status in FATES:
            current = fates.get(event.trial_id)
            if current is None or FATES.index(event.status) < FATES.index(current):
                fates[event.trial_id] = event.status
    return fates


def events_table(events: list[Event]) -> pd.DataFrame:
    columns = ["trial_id", "method_key", "status", "stage", "epochs", "seeds", "leader", "diff", "p_value", "threshold"]
    return pd.DataFrame([{name: getattr(event, name) for name in columns} for event in events], columns=columns)


def _trial(trial: TrialSpec) -> dict[str, Any]:
    return {"trial_id": trial.trial_id, "method_key": trial.method_key, "number": trial.number, "setting": dict(trial.setting)}


def finalists_record(driver: SearchDriver, search: SearchConfig) -> dict[str, Any]:
    """What the confirmation and the report read: the finalists (best first), each method's champion,
    the compute spent, the full grid's cost and the anytime curve."""
    epochs, steps, seconds = driver.spent()
    return {
        "finalists": [_trial(t) for t in driver.finalists()],
        "champions": {method: _trial(t) for method, t in driver.champions().items()},
        "spent": {"epochs": epochs, "optimizer_steps": steps, "train_seconds": seconds},
        "grid_cost_epochs": driver.grid_cost_epochs(),
        "budget_epochs": search.budget_epochs,
        "rungs": list(search.rungs()),
        "confirmation_seeds": list(search.confirmation_seeds),
        "anytime": [{"method": m, "epochs": e, "best_val_accuracy": a} for m, e, a in driver.anytime()],
    }


def confirmation_trials(finalists: dict[str, Any], baselines: tuple[str, ...]) -> list[TrialSpec]:
    """The finalists, then each baseline method's champion that is not already one: one trial per method."""
    chosen = list(finalists["finalists"])
    chosen += [finalists["champions"][b] for b in baselines if b in finalists["champions"] and all(t["method_key"] != b for t in chosen)]
    return [TrialSpec(t["method_key"], int(t["number"]), dict(t["setting"])) for t in chosen]


def confirm_finalists(
    teacher_model: nn.Module,
    model_input: dict,
    data_summary: dict,
    student_model: dict[str, Any],
    student_training: TrainConfig,
    methods: tuple[MethodEntry, ...],
    search: SearchConfig,
    comparison: ComparisonConfig,
    evaluation: EvaluationConfig,
    search_finalists: dict[str, Any],
    search_tracking: JobTracking | dict,
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """The finalists and baselines trained for ``search.max_epochs`` on every confirmation seed, each one arm named
    by its method, evaluated on test once: ``study_runs``, ``run_details`` and ``study_histories`` as the
    comparison reads them (column ``search_trial`` names the trial each arm confirms)."""
    shared = Shared(teacher_model, model_input, data_summary, student_model, student_training, {e.key: e for e in methods}, search_tracking or None)
    trials = confirmation_trials(search_finalists, tuple(comparison.baselines))
    items = [Job(trial, search.max_epochs, seed, CONFIRMATION) for trial in trials for seed in search.confirmation_seeds]
    log.info("Confirmation: %d trial(s) x %d seed(s): %s", len(trials), len(search.confirmation_seeds), [t.trial_id for t in trials])
    results = run_all(run_confirmation, items, shared, evaluation)
    runs, details = collect_runs(*(metrics for metrics, _ in results))
    runs["search_trial"] = runs["arm"].map({t.method_key: t.trial_id for t in trials})
    return runs, details, collect_histories(*(history for _, history in results))


def job_record(outcome: Outcome) -> dict[str, Any]:
    """One row of the trials table."""
    job = outcome.job
    return {
        "job": job.key,
        "trial": job.trial.trial_id,
        "method": job.trial.method_key,
        "setting": ", ".join(f"{k}={_short(v)}" for k, v in job.trial.setting.items()) or "default",
        **{f"hp_{k}": v for k, v in job.trial.setting.items()},
        "epochs": job.epochs,
        "seed": job.seed,
        "stage": job.stage,
        **{name: getattr(outcome, name) for name in OUTCOME_FIELDS},
    }


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
