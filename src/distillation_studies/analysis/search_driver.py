"""The budgeted search as a pure state machine: which trainings to run next, given what has been recorded.

Two stages, both selecting on validation accuracy only (the test split is for the confirmation runs).

1. Successive halving within each method (Jamieson & Talwalkar 2016; Li et al., "Hyperband", 2018):
   every planned trial of a method trains ``rungs()[0]`` epochs on ``race_seeds[0]``; the best
   ``ceil(n / eta)`` non-failed trials (ties: the lower trial number) train again, from scratch, at the
   next rung, until ``max_epochs``; the best trial there is the method's champion. A single remaining
   trial goes straight to ``max_epochs``, so a fixed method trains once. Proposals come in ``waves``:
   a method's next wave is proposed only after the rung-0 results of the previous one were told.
2. A race among the champions over seeds (Maron & Moore, "Hoeffding races", 1994, with a t-test):
   after each further race seed every arm is compared with the leader (highest mean so far) by a
   one-sided paired t-test on the seeds they share; an arm whose p-value is below the per-look level
   is dropped. The race ends when one arm is left or the planned seeds are spent. The survivors,
   ranked by mean, are the finalists (at most ``finalists``).

Error control of the race (``per_look_level``): Bonferroni over every comparison the race may make,
``race_alpha / (looks * (arms - 1))`` with ``looks = race seeds - 1`` and ``arms`` the champions at the
start. The truly best arm b is dropped only if, at some look j, its test against the current leader
L rejects. Whatever the leader is, {drop b at look j} lies in the union over every other arm a of
{test of b against a rejects at look j}, and each of those events has probability at most the level
when b is truly no worse than a (the null of the one-sided paired t-test, under its normal-differences
assumption). The union bound over the looks x (arms - 1) events gives P(b is ever dropped) <=
race_alpha, whatever the data-dependent choice of leader and however the looks are correlated. Bonferroni
is conservative, but it needs no independence between looks, which share seeds, and the race seldom has
more than a handful of looks. A zero-variance difference (identical accuracy differences on every
shared seed, to 1e-9, common when accuracies are counts over a small validation split) gives no t statistic and
is treated as no evidence (p = 1): the arm stays.

Budget: ``SearchConfig.plan()`` sizes the search for its worst case (no failure, nobody dropped), so the
epochs recorded never exceed ``budget_epochs``. The driver is a function of its recorded outcomes: a new
driver fed the same outcomes (a resumed search) proposes the same trials and returns the same jobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

MIN_RACE_SEEDS = 2  # a paired test needs two seeds
# Accuracy differences this close are equal: accuracies arrive as float32 (resolution ~6e-8 in [0, 1]),
# so -1/180 on two seeds differs by ~1e-7 after rounding; below 1e-6 it is the same count of images
# for any validation split under a million samples, and a t-test on it would see no variance.
SAME_DIFFERENCE = 1e-6
STATUSES = ("promoted", "stopped_early", "dropped_by_race", "finalist", "cut_by_finalists", "failed", "not_run_budget")


@dataclass(frozen=True)
class TrialSpec:
    """One proposed configuration of one method."""

    method_key: str
    number: int  # per-method trial index 0, 1, ...
    setting: dict[str, Any] = field(default_factory=dict)  # hyperparameter values ({} for a fixed method)

    @property
    def trial_id(self) -> str:
        return f"{self.method_key}__t{self.number}"

    def __hash__(self) -> int:  # the setting is a dict: the id stands for the trial in sets and dict keys
        return hash(self.trial_id)


@dataclass(frozen=True)
class Job:
    """One training from scratch: a trial for ``epochs`` epochs on ``seed``."""

    trial: TrialSpec
    epochs: int
    seed: int
    stage: str  # "rung" or "race"

    @property
    def key(self) -> str:
        """Unique, filesystem- and namespace-safe."""
        return f"{self.trial.trial_id}__e{self.epochs}__s{self.seed}"

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class Outcome:
    job: Job
    val_accuracy: float  # best validation accuracy over the job's epochs (the selection metric)
    optimizer_steps: int
    train_seconds: float
    failed: bool = False  # diverged / chance level: never promoted, never a finalist


@dataclass(frozen=True)
class Event:
    """What happened to a trial, for MLflow status and the report."""

    trial_id: str
    method_key: str
    status: str  # one of STATUSES
    stage: str  # "rung" or "race"
    epochs: int
    seeds: int  # seeds seen at the look
    leader: str | None = None
    diff: float = math.nan  # mean paired difference trial - leader (race)
    p_value: float = math.nan
    threshold: float = math.nan  # the per-look level the p-value was compared with


class SearchSpaceLike(Protocol):
    method_key: str

    @property
    def fixed(self) -> bool: ...


class SearchPlan(Protocol):
    """What the driver reads of ``study.search.SearchConfig`` (the study layer sits above this one)."""

    spaces: Sequence[SearchSpaceLike]
    trials_per_method: int
    max_epochs: int
    eta: int
    race_seeds: tuple[int, ...]
    finalists: int
    race_alpha: float
    waves: int

    def rungs(self) -> tuple[int, ...]: ...

    def plan(self) -> tuple[int, int]: ...


def rung_epochs(min_epochs: int, max_epochs: int, eta: int) -> tuple[int, ...]:
    """``min_epochs * eta**k`` for every k that stays below ``max_epochs``, then ``max_epochs``."""
    rungs, epochs = [], min_epochs
    while epochs < max_epochs:
        rungs.append(epochs)
        epochs *= eta
    return (*rungs, max_epochs)


def halving_schedule(trials: int, rungs: Sequence[int], eta: int) -> tuple[tuple[int, int], ...]:
    """(epochs, trials trained) at each rung a method with ``trials`` trials visits when none fails.

    Each rung keeps the best ``ceil(n / eta)``; once one trial is left it goes straight to the last
    rung (there is nothing to compare it with), so a single trial trains once, fully.
    """
    if trials <= 1:
        return ((rungs[-1], 1),)
    plan, count = [], trials
    for epochs in rungs:
        plan.append((epochs, count))
        count = math.ceil(count / eta)
        if epochs < rungs[-1] and count == 1:
            plan.append((rungs[-1], 1))
            break
    return tuple(plan)


def worst_case_epochs(trials: Sequence[int], rungs: Sequence[int], eta: int, race_seeds: int) -> float:
    """Epochs of every rung of every method (``trials`` each) plus a race that drops nobody."""
    halving = sum(count * epochs for n in trials for epochs, count in halving_schedule(n, rungs, eta))
    race = (race_seeds - 1) * rungs[-1] * len(trials) if len(trials) > 1 else 0
    return float(halving + race)


def fit_budget(
    cost: Callable[[int, int], float], budget: float, max_trials: int, max_seeds: int
) -> tuple[int, int] | None:
    """(trials, race seeds) with ``cost(trials, seeds) <= budget``: the full race first, then the most trials.

    Seeds are given up (down to two) only when one trial per method with the full race does not fit;
    None when even that smallest search does not.
    """
    for seeds in range(max_seeds, MIN_RACE_SEEDS - 1, -1):
        for trials in range(max_trials, 0, -1):
            if cost(trials, seeds) <= budget:
                return trials, seeds
    return None


def per_look_level(race_alpha: float, looks: int, arms: int) -> float:
    """Bonferroni level of one comparison at one look: ``race_alpha / (looks * (arms - 1))`` (module doc)."""
    return race_alpha / (max(looks, 1) * max(arms - 1, 1))


def paired_p_value(differences: Sequence[float]) -> float:
    """One-sided p-value of a paired t-test that the mean difference is below 0; 1 without variance."""
    values = np.asarray(differences, dtype=float)
    if len(values) < MIN_RACE_SEEDS or np.ptp(values) <= SAME_DIFFERENCE:
        return 1.0
    from scipy import stats  # here: every process reading a study's schema imports this module, few race

    return float(stats.ttest_1samp(values, 0.0, alternative="less").pvalue)


def race_look(scores: Mapping[str, Mapping[int, float]], level: float) -> tuple[str, dict[str, tuple[float, float]]]:
    """(leader, {dropped arm: (mean paired diff vs leader, one-sided p)}) over the seeds shared with the leader.

    The leader has the highest mean over its seeds (ties: the first in ``scores``); an arm is dropped
    when its p-value is below ``level``.
    """
    means = {arm: float(np.mean(list(by_seed.values()))) for arm, by_seed in scores.items()}
    leader = max(means, key=means.__getitem__)
    dropped = {}
    for arm, by_seed in scores.items():
        shared = [seed for seed in by_seed if seed in scores[leader]]
        if arm == leader or len(shared) < MIN_RACE_SEEDS:
            continue
        differences = [by_seed[seed] - scores[leader][seed] for seed in shared]
        p_value = paired_p_value(differences)
        if p_value < level:
            dropped[arm] = (float(np.mean(differences)), p_value)
    return leader, dropped


@dataclass
class _State:
    """Everything derived from the recorded outcomes: rebuilt after each ``record``."""

    jobs: list[Job] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    champions: dict[str, TrialSpec] = field(default_factory=dict)
    finalists: list[TrialSpec] = field(default_factory=list)


class SearchDriver:
    """Successive halving per method, then a race over seeds; a pure function of the recorded outcomes.

    ``propose(method_key, number)`` returns a trial's setting (the shell asks Optuna; it must return the
    same setting when asked again for a number it already gave, as a resumed driver asks again);
    ``tell(trial, value)`` gets each trial's first (rung-0) validation accuracy, NaN for a failed one,
    once its wave is complete. A resumed driver tells recorded trials again: the shell ignores a trial
    it has already told.
    """

    def __init__(
        self,
        config: SearchPlan,
        propose: Callable[[str, int], dict[str, Any]],
        tell: Callable[[TrialSpec, float], None] | None = None,
    ) -> None:
        self.config = config
        self._propose, self._tell = propose, tell
        self._trials_planned, race_seed_count = config.plan()
        self._race_seeds = tuple(config.race_seeds[:race_seed_count])
        self._proposed: dict[str, list[TrialSpec]] = {space.method_key: [] for space in config.spaces}
        self._told: set[str] = set()
        self._outcomes: dict[str, Outcome] = {}  # by job key, in the order recorded
        self._settings: dict[str, dict[str, Any]] = {}  # trial id -> setting, as recorded
        self._state = self._advance()

    # --- public interface -------------------------------------------------------------------------
    def next_jobs(self) -> list[Job]:
        """Independent jobs that can run in parallel now; [] when the search is finished."""
        return list(self._state.jobs)

    def record(self, outcomes: Iterable[Outcome]) -> None:
        """Take outcomes (of any jobs, in any order: a resume records everything at once); a job
        recorded twice keeps its first outcome."""
        for outcome in outcomes:
            trial = outcome.job.trial
            if trial.method_key not in self._proposed:
                raise ValueError(f"{outcome.job.key}: {trial.method_key!r} is not a method of this search {list(self._proposed)}")
            self._check_setting(trial.trial_id, trial.setting, self._proposed_setting(trial))
            self._settings.setdefault(trial.trial_id, dict(trial.setting))
            self._outcomes.setdefault(outcome.job.key, outcome)
        self._state = self._advance()

    @property
    def finished(self) -> bool:
        return not self._state.jobs

    def finalists(self) -> list[TrialSpec]:
        """The race's survivors ranked by mean race validation accuracy, at most ``finalists``."""
        return list(self._state.finalists)

    def champions(self) -> dict[str, TrialSpec]:
        """Each method's trial that reached the race (methods whose every trial failed are absent)."""
        return dict(self._state.champions)

    def events(self) -> list[Event]:
        return list(self._state.events)

    def spent(self) -> tuple[float, int, float]:
        """(epochs, optimizer steps, train seconds) of every recorded outcome, failed ones included."""
        outcomes = self._outcomes.values()
        return (
            float(sum(o.job.epochs for o in outcomes)),
            int(sum(o.optimizer_steps for o in outcomes)),
            float(sum(o.train_seconds for o in outcomes)),
        )

    def anytime(self) -> list[tuple[str, float, float]]:
        """(method_key, cumulative epochs when recorded, that method's best validation accuracy so far)
        for each outcome in recording order; NaN until the method has a non-failed outcome."""
        curve, spent, best = [], 0.0, {}
        for outcome in self._outcomes.values():
            key = outcome.job.trial.method_key
            spent += outcome.job.epochs
            if not outcome.failed:
                best[key] = max(best.get(key, -math.inf), outcome.val_accuracy)
            curve.append((key, spent, best.get(key, math.nan)))
        return curve

    def grid_cost_epochs(self) -> float:
        """What the search replaces: every planned trial trained fully on every race seed."""
        trials = sum(self._trial_count(space) for space in self.config.spaces)
        return float(trials * self.config.max_epochs * len(self.config.race_seeds))

    # --- the state machine ------------------------------------------------------------------------
    def _advance(self) -> _State:
        state = _State()
        for space in self.config.spaces:
            self._not_run_events(space, state)
            trials = self._rung_zero(space, state)
            if trials is not None:
                self._halve(space, trials, state)
        if not state.jobs:
            self._race(state)
        return state

    def _trial_count(self, space: SearchSpaceLike) -> int:
        return 1 if space.fixed else self._trials_planned

    def _not_run_events(self, space: SearchSpaceLike, state: _State) -> None:
        """The trials the budget fit took away from a tunable method."""
        if space.fixed:
            return
        for number in range(self._trials_planned, self.config.trials_per_method):
            trial_id = TrialSpec(space.method_key, number).trial_id
            state.events.append(Event(trial_id, space.method_key, "not_run_budget", "rung", 0, 0))

    def _waves(self, trials: int) -> list[range]:
        """Trial numbers of each wave, as even as possible (earlier waves one larger)."""
        waves = min(self.config.waves, trials)
        sizes = [trials // waves + (1 if i < trials % waves else 0) for i in range(waves)]
        starts = [sum(sizes[:i]) for i in range(waves)]
        return [range(start, start + size) for start, size in zip(starts, sizes)]

    def _rung_zero(self, space: SearchSpaceLike, state: _State) -> list[TrialSpec] | None:
        """Propose wave after wave, telling each wave's results first; None while a wave is pending."""
        count = self._trial_count(space)
        epochs = halving_schedule(count, self.config.rungs(), self.config.eta)[0][0]
        trials: list[TrialSpec] = []
        for wave in self._waves(count):
            batch = [self._trial(space, number) for number in wave]
            jobs = [self._rung_job(trial, epochs) for trial in batch]
            missing = [job for job in jobs if job.key not in self._outcomes]
            if missing:
                state.jobs.extend(missing)
                return None
            self._tell_wave(space, jobs)
            trials.extend(batch)
        return trials

    def _halve(self, space: SearchSpaceLike, trials: list[TrialSpec], state: _State) -> None:
        """Promote the best ceil(n / eta) at each rung until a champion at ``max_epochs``."""
        rungs, candidates = self.config.rungs(), trials
        epochs = halving_schedule(len(trials), rungs, self.config.eta)[0][0]
        while True:
            jobs = [self._rung_job(trial, epochs) for trial in candidates]
            missing = [job for job in jobs if job.key not in self._outcomes]
            if missing:
                state.jobs.extend(missing)
                return
            outcomes = [self._outcomes[job.key] for job in jobs]
            alive = [o for o in outcomes if not o.failed]
            state.events.extend(self._event(o, "failed") for o in outcomes if o.failed)
            if not alive:
                return
            ranked = sorted(alive, key=lambda o: (-o.val_accuracy, o.job.trial.number))
            keep = 1 if epochs == rungs[-1] else math.ceil(len(ranked) / self.config.eta)
            state.events.extend(self._event(o, "promoted") for o in ranked[:keep])
            state.events.extend(self._event(o, "stopped_early") for o in ranked[keep:])
            if epochs == rungs[-1]:
                state.champions[space.method_key] = ranked[0].job.trial
                return
            candidates = [o.job.trial for o in ranked[:keep]]
            epochs = rungs[-1] if keep == 1 else rungs[rungs.index(epochs) + 1]

    def _race(self, state: _State) -> None:
        """Champions on further race seeds, a look after each; the survivors become the finalists."""
        arms = list(state.champions.values())
        first, max_epochs = self._race_seeds[0], self.config.max_epochs
        scores = {arm.trial_id: {first: self._outcomes[self._rung_job(arm, max_epochs).key].val_accuracy} for arm in arms}
        level = per_look_level(self.config.race_alpha, len(self._race_seeds) - 1, len(arms))
        active = arms
        for seed in self._race_seeds[1:] if len(arms) > 1 else ():
            jobs = [Job(arm, max_epochs, seed, "race") for arm in active]
            missing = [job for job in jobs if job.key not in self._outcomes]
            if missing:
                state.jobs.extend(missing)
                return
            outcomes = [self._outcomes[job.key] for job in jobs]
            state.events.extend(self._event(o, "failed", len(scores[o.job.trial.trial_id]) + 1) for o in outcomes if o.failed)
            active = [o.job.trial for o in outcomes if not o.failed]
            for outcome in outcomes:
                scores[outcome.job.trial.trial_id][seed] = outcome.val_accuracy
            if len(active) <= 1:
                break
            leader, dropped = race_look({arm.trial_id: scores[arm.trial_id] for arm in active}, level)
            for arm in active:
                if arm.trial_id in dropped:
                    diff, p_value = dropped[arm.trial_id]
                    state.events.append(
                        Event(arm.trial_id, arm.method_key, "dropped_by_race", "race", max_epochs,
                              len(scores[arm.trial_id]), leader, diff, p_value, level)
                    )
            active = [arm for arm in active if arm.trial_id not in dropped]
            if len(active) == 1:
                break
        self._finalise(active, scores, state)

    def _finalise(self, active: list[TrialSpec], scores: dict[str, dict[int, float]], state: _State) -> None:
        """Survivors ranked by mean race accuracy (ties: study order); the first ``finalists`` go on."""
        means = {arm.trial_id: float(np.mean(list(scores[arm.trial_id].values()))) for arm in active}
        ranked = sorted(active, key=lambda arm: -means[arm.trial_id])
        state.finalists = ranked[: self.config.finalists]
        for rank, arm in enumerate(ranked):
            leader = ranked[0].trial_id
            shared = [s for s in scores[arm.trial_id] if s in scores[leader]]
            diff = float(np.mean([scores[arm.trial_id][s] - scores[leader][s] for s in shared]))
            status = "finalist" if rank < self.config.finalists else "cut_by_finalists"
            state.events.append(
                Event(arm.trial_id, arm.method_key, status, "race", self.config.max_epochs,
                      len(scores[arm.trial_id]), leader, diff)
            )

    # --- helpers ----------------------------------------------------------------------------------
    def _rung_job(self, trial: TrialSpec, epochs: int) -> Job:
        """Rungs train on the first race seed."""
        return Job(trial, epochs, self._race_seeds[0], "rung")

    def _trial(self, space: SearchSpaceLike, number: int) -> TrialSpec:
        """Trial ``number`` of a method, proposed once per driver (in order)."""
        proposed = self._proposed[space.method_key]
        if number < len(proposed):
            return proposed[number]
        setting = {} if space.fixed else dict(self._propose(space.method_key, number))
        trial = TrialSpec(space.method_key, number, setting)
        self._check_setting(trial.trial_id, self._settings.get(trial.trial_id), setting)
        proposed.append(trial)
        return trial

    def _check_setting(self, trial_id: str, recorded: Mapping[str, Any] | None, proposed: Mapping[str, Any] | None) -> None:
        """A replayed outcome must belong to the trial proposed now: propose is deterministic on replay."""
        if recorded is not None and proposed is not None and dict(recorded) != dict(proposed):
            raise ValueError(
                f"{trial_id}: recorded with setting {dict(recorded)} but proposed with {dict(proposed)}; "
                "propose must give the same setting when a search is replayed"
            )

    def _proposed_setting(self, trial: TrialSpec) -> dict[str, Any] | None:
        proposed = self._proposed.get(trial.method_key, [])
        return proposed[trial.number].setting if trial.number < len(proposed) else None

    def _tell_wave(self, space: SearchSpaceLike, jobs: list[Job]) -> None:
        if space.fixed or self._tell is None:
            return
        for job in jobs:
            if job.trial.trial_id in self._told:
                continue
            outcome = self._outcomes[job.key]
            self._tell(job.trial, math.nan if outcome.failed else outcome.val_accuracy)
            self._told.add(job.trial.trial_id)

    def _event(self, outcome: Outcome, status: str, seeds: int = 1) -> Event:
        job = outcome.job
        return Event(job.trial.trial_id, job.trial.method_key, status, job.stage, job.epochs, seeds)
