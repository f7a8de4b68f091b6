"""Does the budgeted search pick what the full grid picks, and for what share of the grid's compute?

The grid: every method x every point of a grid over its search space (``--points`` values per range:
ends and evenly spaced in between, log-spaced for log ranges; every choice) x every race seed, trained
for ``max_epochs`` and evaluated on test; per method the setting with the best mean validation accuracy,
then the comparison and recommendation as a study runs them. The search: ``SearchDriver`` with Optuna
(in memory) over the same methods and budget, then its confirmation (finalists + baselines on the
confirmation seeds), compared and recommended the same way. Both train through the same code as the
pipeline (``pipelines/search/jobs.train``, ``distil_student``), sequentially, tracking off.

The last line says whether the search's recommended rank-1 group (the methods tied at rank 1) equals
the grid's, and the search's compute (search + confirmation) as a fraction of the grid's, in training
seconds and optimiser steps.

Run: .venv/bin/python benchmarks/search_vs_grid.py --env search_tiny                 # seconds
     .venv/bin/python benchmarks/search_vs_grid.py --env search --methods ce kd dkd fitnet --max-epochs 9
     .venv/bin/python benchmarks/search_vs_grid.py --env search --finalists all     # every method: long
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import yaml

from distillation_studies.analysis.search_driver import Job, SearchDriver, TrialSpec
from distillation_studies.pipelines.comparison.nodes import collect_runs, compare_methods, recommend_method
from distillation_studies.pipelines.data_processing.nodes import load_images, split_images
from distillation_studies.pipelines.evaluation.nodes import evaluate_student, evaluate_teacher
from distillation_studies.pipelines.search.jobs import Shared, job_outcome, train
from distillation_studies.pipelines.search.nodes import confirmation_trials, finalists_record
from distillation_studies.pipelines.search.proposals import OptunaProposals
from distillation_studies.pipelines.teacher.nodes import train_teacher
from distillation_studies.study.schema import StudyConfig, validate_study
from distillation_studies.study.search import Hyperparameter

CONF = Path(__file__).resolve().parents[1] / "conf"


def load_study(env: str, methods: list[str] | None, max_epochs: int | None, finalists: str | None = None) -> StudyConfig:
    """conf/base with conf/<env> on top (top-level keys replaced, as Kedro merges parameters)."""
    params: dict[str, Any] = {}
    for path in [*sorted((CONF / "base").glob("parameters*.yml")), *sorted((CONF / env).glob("parameters*.yml"))]:
        params.update(yaml.safe_load(path.read_text()) or {})
    if methods:
        params["methods"] = {key: params["methods"][key] for key in methods}
        params["comparison"] = {**params.get("comparison", {}), "baselines": [b for b in params["comparison"]["baselines"] if b in methods] or methods[:1]}
    if max_epochs:
        params["student"]["training"]["epochs"] = max_epochs
        params["search"]["max_epochs"] = max_epochs
        params["search"]["min_epochs"] = min(params["search"]["min_epochs"], max_epochs)
    if finalists:
        params["search"]["finalists"] = finalists if finalists == "all" else int(finalists)
    return validate_study(params)


def grid_values(h: Hyperparameter, points: int) -> list[Any]:
    if h.choices is not None:
        return list(h.choices)
    values = np.geomspace(h.low, h.high, points) if h.log else np.linspace(h.low, h.high, points)
    return sorted({int(round(v)) for v in values}) if h.integer else [float(v) for v in values]


def grid_settings(study: StudyConfig, points: int) -> list[TrialSpec]:
    trials = []
    for space in study.search.spaces:
        names = [h.name for h in space.hyperparameters]
        for number, values in enumerate(itertools.product(*(grid_values(h, points) for h in space.hyperparameters))):
            trials.append(TrialSpec(space.method_key, number, dict(zip(names, values))))
    return trials


class Trainer:
    """Trains (and optionally tests) one trial on one seed; adds up the compute it spent."""

    def __init__(self, shared: Shared, study: StudyConfig) -> None:
        self.shared, self.study = shared, study
        self.seconds, self.steps = 0.0, 0

    def run(self, trial: TrialSpec, epochs: int, seed: int, arm_key: str, test: bool) -> tuple[Any, dict | None]:
        started = time.perf_counter()
        model, last, history = train(self.shared, trial, epochs, seed, arm_key)
        outcome = job_outcome(Job(trial, epochs, seed, "benchmark"), history, self.shared.student_training.batch_size, time.perf_counter() - started)
        self.seconds += outcome.train_seconds
        self.steps += outcome.optimizer_steps
        metrics = evaluate_student(model, last, self.shared.teacher_model, self.shared.model_input, history, self.study.evaluation) if test else None
        return outcome, metrics


def rank_one(study: StudyConfig, metrics: list[dict], teacher_metrics: dict, arm_method: dict[str, str]) -> set[str]:
    """The methods the recommendation puts at rank 1 (ties included), from per-run test metrics."""
    runs, _ = collect_runs(*metrics)
    table, tests, _, figure = compare_methods(runs, teacher_metrics, study.comparison)
    plt.close(figure)
    record = recommend_method(table, runs, study.constraints, {}, study.comparison, tests)
    (cell,) = record["cells"]  # a search study has one data cell
    return {arm_method[c["candidate"]] for c in cell["ranked"] if c["rank"] == 1}


def run_grid(trainer: Trainer, study: StudyConfig, points: int, teacher_metrics: dict) -> set[str]:
    search = study.search
    trials = grid_settings(study, points)
    print(f"grid: {len(trials)} settings x {len(search.race_seeds)} seeds at {search.max_epochs} epochs", flush=True)
    metrics = [trainer.run(t, search.max_epochs, s, t.trial_id, test=True)[1] for t in trials for s in search.race_seeds]
    return rank_one(study, metrics, teacher_metrics, {t.trial_id: t.method_key for t in trials})


def run_search(trainer: Trainer, study: StudyConfig, teacher_metrics: dict) -> set[str]:
    search = study.search
    proposals = OptunaProposals(search, None, "benchmark")  # Optuna's in-memory storage
    driver = SearchDriver(search, proposals.propose, proposals.tell)
    while jobs := driver.next_jobs():
        driver.record([trainer.run(j.trial, j.epochs, j.seed, j.trial.trial_id, test=False)[0] for j in jobs])
    record = finalists_record(driver, search)
    print(f"search: {record['spent']['epochs']:g} epochs (grid cost {record['grid_cost_epochs']:g}); finalists {[t['trial_id'] for t in record['finalists']]}", flush=True)
    trials = confirmation_trials(record, tuple(study.comparison.baselines))
    metrics = [trainer.run(t, search.max_epochs, s, t.method_key, test=True)[1] for t in trials for s in search.confirmation_seeds]
    return rank_one(study, metrics, teacher_metrics, {t.method_key: t.method_key for t in trials})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="search", help="a conf/ folder with a search: section")
    parser.add_argument("--methods", nargs="*", help="a subset of the env's methods (default: all)")
    parser.add_argument("--max-epochs", type=int, help="override search.max_epochs and student.training.epochs")
    parser.add_argument("--points", type=int, default=3, help="grid values per searched range")
    parser.add_argument("--finalists", help="override search.finalists: a count or 'all' (every race survivor)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    study = load_study(args.env, args.methods, args.max_epochs, args.finalists)
    model_input, summary = split_images(load_images(study.data), study.data)
    teacher, teacher_last, history = train_teacher(model_input, summary, study.teacher)
    teacher_metrics = evaluate_teacher(teacher, teacher_last, model_input, history, study.evaluation)
    shared = Shared(teacher, model_input, summary, study.student.spec, study.student.training, {e.key: e for e in study.methods})
    grid, searched = Trainer(shared, study), Trainer(shared, study)
    grid_group = run_grid(grid, study, args.points, teacher_metrics)
    search_group = run_search(searched, study, teacher_metrics)
    print(f"grid: {grid.seconds:.1f} s, {grid.steps} steps, rank 1: {sorted(grid_group)}")
    print(f"search + confirmation: {searched.seconds:.1f} s, {searched.steps} steps, rank 1: {sorted(search_group)}")
    print(f"search's rank-1 methods in the grid's rank-1 group: {len(search_group & grid_group)} of {len(search_group)}; "
          f"grid's rank-1 methods in the search's: {len(grid_group & search_group)} of {len(grid_group)}")
    same = "yes" if grid_group == search_group else "no"
    print(
        f"same rank-1 group as the grid: {same}; search compute / grid compute: "
        f"{searched.seconds / grid.seconds:.2f} of training seconds, {searched.steps / grid.steps:.2f} of optimiser steps"
    )


if __name__ == "__main__":
    main()
