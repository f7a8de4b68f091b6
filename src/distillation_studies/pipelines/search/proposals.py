"""Optuna behind the search driver: one study per method proposes settings (TPE) and keeps, in the same
SQLite storage, every finished job's outcome, so a rerun replays them instead of training again.

Storage layout (one file, ``search_storage`` in the catalog): an Optuna study per method named
``<fingerprint>-<method key>``, where the fingerprint hashes everything a job's result depends on
(search section, methods, student, data, teacher weights): a changed study starts afresh, a rerun of the
same study resumes. Trial ``n`` of a method's study is the driver's trial ``n`` of that method; each
finished job is a study user attribute keyed by its ``Job.key``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from distillation_studies.analysis.search_driver import Job, Outcome, TrialSpec
from distillation_studies.study.search import Hyperparameter, SearchConfig, SearchSpace

OUTCOME_FIELDS = ("val_accuracy", "optimizer_steps", "train_seconds", "failed")


def fingerprint(*parts: Any) -> str:
    """A short digest of what the search's results depend on (dataclasses and tensors' bytes included)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=repr).encode())
    return digest.hexdigest()[:12]


def distribution(hyperparameter: Hyperparameter) -> BaseDistribution:
    """The Optuna distribution of one searched hyperparameter."""
    h = hyperparameter
    if h.choices is not None:
        return CategoricalDistribution(list(h.choices))
    if h.integer:
        return IntDistribution(int(h.low), int(h.high), log=h.log)
    return FloatDistribution(float(h.low), float(h.high), log=h.log)


class OptunaProposals:
    """``propose``/``tell`` for :class:`~distillation_studies.analysis.search_driver.SearchDriver`, and the
    store of finished jobs' outcomes."""

    def __init__(self, config: SearchConfig, storage: str | None, study_fingerprint: str) -> None:
        """``storage``: an Optuna storage URL (None: in memory, nothing kept). TPE samples the first wave
        at random (its startup trials) and models the told results from the second wave on."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spaces: dict[str, SearchSpace] = {space.method_key: space for space in config.spaces}
        first_wave = max(1, math.ceil(config.plan()[0] / config.waves))
        self.studies = {
            space.method_key: optuna.create_study(
                storage=storage,
                study_name=f"{study_fingerprint}-{space.method_key}",
                sampler=optuna.samplers.TPESampler(seed=config.sampler_seed + index, n_startup_trials=first_wave),
                direction="maximize",
                load_if_exists=True,
            )
            for index, space in enumerate(config.spaces)
        }

    def propose(self, method_key: str, number: int) -> dict[str, Any]:
        """Trial ``number``'s setting: the stored one when the storage has it (resume), else a new ask."""
        space = self.spaces[method_key]
        if not space.hyperparameters:
            return {}
        study = self.studies[method_key]
        trials = study.get_trials(deepcopy=False)
        while len(trials) <= number:
            study.ask({h.name: distribution(h) for h in space.hyperparameters})
            trials = study.get_trials(deepcopy=False)
        return dict(trials[number].params)

    def tell(self, trial: TrialSpec, value: float) -> None:
        """The trial's first-rung validation accuracy, so the next wave's proposals learn from it."""
        if self.spaces[trial.method_key].hyperparameters:
            self.studies[trial.method_key].tell(trial.number, value, skip_if_finished=True)

    def save(self, outcome: Outcome) -> None:
        """Keep a finished job's outcome, as soon as it is known (a rerun does not train it again)."""
        record = {name: getattr(outcome, name) for name in OUTCOME_FIELDS}
        self.studies[outcome.job.trial.method_key].set_user_attr(outcome.job.key, record)

    def saved(self, job: Job) -> Outcome | None:
        """The stored outcome of ``job``, or None when it has not finished in any run."""
        record = self.studies[job.trial.method_key].user_attrs.get(job.key)
        return None if record is None else Outcome(job=job, **record)
