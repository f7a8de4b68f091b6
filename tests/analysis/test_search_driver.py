"""The search driver on hand-computed cases: rungs, promotions, race looks, budget, replay, failures.

Paired t p-values are computed here from the closed forms of Student's t distribution with 1 and 2
degrees of freedom (2 and 3 seeds), not with the code's helper or scipy:
    df = 1: P(T < t) = 1/2 + arctan(t) / pi
    df = 2: P(T < t) = 1/2 + t / (2 sqrt(2 + t^2))
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Any, Callable

import pytest

from distillation_studies.analysis.search_driver import (
    Event,
    Job,
    Outcome,
    SearchDriver,
    TrialSpec,
    halving_schedule,
    per_look_level,
    race_look,
    rung_epochs,
)
from distillation_studies.study.search import Hyperparameter, SearchConfig, SearchSpace

TEMPERATURE = (Hyperparameter("temperature", 1.0, 8.0, log=True),)


def tuned(key: str) -> SearchSpace:
    return SearchSpace(key, "kd", TEMPERATURE)


def fixed(key: str) -> SearchSpace:
    return SearchSpace(key, "ce", ())


def config(*spaces: SearchSpace, **settings: Any) -> SearchConfig:
    values = dict(budget_epochs=10_000, trials_per_method=6, min_epochs=1, max_epochs=9, eta=3, race_seeds=(0, 1, 2),
                  waves=1, finalists=3)
    return SearchConfig(tuple(spaces), **{**values, **settings})


def t_p_value(differences: list[float]) -> float:
    """One-sided paired t p-value (mean below 0) from the closed-form t CDF, 2 or 3 seeds."""
    n = len(differences)
    t = statistics.mean(differences) / (statistics.stdev(differences) / math.sqrt(n))
    if n == 2:
        return 0.5 + math.atan(t) / math.pi
    assert n == 3
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


class Log:
    """Records propose and tell calls in order; proposes a setting from the trial number."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def propose(self, method_key: str, number: int) -> dict[str, Any]:
        self.calls.append(("propose", f"{method_key}__t{number}", None))
        return {"temperature": 1.0 + number}

    def tell(self, trial: TrialSpec, value: float) -> None:
        self.calls.append(("tell", trial.trial_id, value))


def outcome(job: Job, accuracy: float, failed: bool = False) -> Outcome:
    """10 optimizer steps and half a second per epoch."""
    return Outcome(job, accuracy, optimizer_steps=10 * job.epochs, train_seconds=0.5 * job.epochs, failed=failed)


def run(driver: SearchDriver, accuracy: Callable[[Job], float | None]) -> list[list[str]]:
    """Drive to the end; ``accuracy`` None marks a failed job. Returns each batch's job keys."""
    batches = []
    while not driver.finished:
        jobs = driver.next_jobs()
        batches.append([job.key for job in jobs])
        driver.record(outcome(job, accuracy(job) or 0.0, accuracy(job) is None) for job in jobs)
        assert len(batches) < 50
    return batches


def statuses(driver: SearchDriver) -> list[tuple[str, str, int]]:
    return [(e.trial_id, e.status, e.epochs) for e in driver.events()]


@pytest.mark.parametrize(
    "low, high, eta, expected",
    [(5, 45, 3, (5, 15, 45)), (5, 40, 3, (5, 15, 40)), (2, 16, 2, (2, 4, 8, 16)), (5, 5, 3, (5,)), (1, 9, 3, (1, 3, 9))],
)
def test_rungs_for_min_max_eta(low, high, eta, expected):
    assert rung_epochs(low, high, eta) == expected
    assert config(fixed("ce"), min_epochs=low, max_epochs=high, eta=eta).rungs() == expected


@pytest.mark.parametrize(
    "trials, expected",
    [(27, ((1, 27), (3, 9), (9, 3))), (10, ((1, 10), (3, 4), (9, 2))), (6, ((1, 6), (3, 2), (9, 1))),
     (3, ((1, 3), (9, 1))), (2, ((1, 2), (9, 1))), (1, ((9, 1),))],
)
def test_halving_schedule_keeps_a_third_and_sends_a_lone_trial_to_the_end(trials, expected):
    assert halving_schedule(trials, (1, 3, 9), 3) == expected


RUNG_ONE = {0: 0.5, 1: 0.7, 2: 0.7, 3: 0.6, 4: 0.2, 5: 0.7}


def tie_accuracy(job: Job) -> float:
    if job.epochs == 1:
        return RUNG_ONE[job.trial.number]
    return {3: {1: 0.8, 2: 0.9}, 9: {2: 0.95}}[job.epochs][job.trial.number]


def test_promotion_keeps_the_best_third_and_breaks_ties_by_trial_number():
    # 6 trials at 1 epoch: keep ceil(6/3) = 2 of t1, t2, t5 (all 0.7): t1 and t2, the lower numbers.
    # At 3 epochs keep ceil(2/3) = 1: t2 (0.9), which goes straight to 9 epochs as the champion.
    driver = SearchDriver(config(tuned("kd")), Log().propose)
    batches = run(driver, tie_accuracy)
    assert batches == [
        [f"kd__t{n}__e1__s0" for n in range(6)],
        ["kd__t1__e3__s0", "kd__t2__e3__s0"],
        ["kd__t2__e9__s0"],
    ]
    assert statuses(driver) == [
        ("kd__t1", "promoted", 1), ("kd__t2", "promoted", 1), ("kd__t5", "stopped_early", 1),
        ("kd__t3", "stopped_early", 1), ("kd__t0", "stopped_early", 1), ("kd__t4", "stopped_early", 1),
        ("kd__t2", "promoted", 3), ("kd__t1", "stopped_early", 3),
        ("kd__t2", "promoted", 9),
        ("kd__t2", "finalist", 9),  # alone: no race
    ]
    assert driver.champions() == {"kd": TrialSpec("kd", 2, {"temperature": 3.0})}
    assert driver.finalists() == [TrialSpec("kd", 2, {"temperature": 3.0})]
    assert driver.next_jobs() == []


def test_a_lone_promoted_trial_skips_to_the_last_rung():
    # 3 trials: ceil(3/3) = 1 is kept after 1 epoch (t1: 0.7 ties t2, the lower number wins) and
    # trains at 9 directly, not at 3
    driver = SearchDriver(config(tuned("kd"), trials_per_method=3), Log().propose)
    batches = run(driver, lambda job: RUNG_ONE[job.trial.number] if job.epochs == 1 else 0.9)
    assert batches == [[f"kd__t{n}__e1__s0" for n in range(3)], ["kd__t1__e9__s0"]]


@pytest.mark.parametrize("trials", range(1, 11))
def test_without_failures_or_drops_the_driver_spends_the_planned_worst_case(trials):
    search = config(tuned("kd"), fixed("ce"), trials_per_method=trials)
    driver = SearchDriver(search, Log().propose)
    # every arm scores the same on every seed: zero-variance differences drop nobody
    run(driver, lambda job: 0.5 if job.epochs == 9 else 0.5 + 0.01 * job.trial.number)
    assert driver.spent()[0] == search.worst_case_epochs(trials, 3)


def test_budget_accounting_sums_and_anytime_curve():
    driver = SearchDriver(config(tuned("kd")), Log().propose)
    run(driver, tie_accuracy)
    # 6 x 1 + 2 x 3 + 1 x 9 = 21 epochs; 10 steps and 0.5 s per epoch
    assert driver.spent() == (21.0, 210, 10.5)
    # every trial fully on every race seed: 6 trials x 9 epochs x 3 seeds
    assert driver.grid_cost_epochs() == 162.0
    best = [0.5, 0.7, 0.7, 0.7, 0.7, 0.7, 0.8, 0.9, 0.95]
    spent = [1, 2, 3, 4, 5, 6, 9, 12, 21]
    assert driver.anytime() == [("kd", float(s), b) for s, b in zip(spent, best)]


def race_driver(scores: dict[str, list[float]], race_seeds: tuple[int, ...], **settings: Any) -> SearchDriver:
    """Fixed methods raced on ``scores[method][i]`` at race_seeds[i]."""
    driver = SearchDriver(config(*(fixed(key) for key in scores), race_seeds=race_seeds, **settings), Log().propose)
    run(driver, lambda job: scores[job.trial.method_key][race_seeds.index(job.seed)])
    return driver


def test_race_drops_an_arm_whose_paired_test_falls_below_the_corrected_level():
    scores = {"a": [0.90, 0.91, 0.90], "b": [0.80, 0.808, 0.5], "c": [0.89, 0.85, 0.86]}
    driver = SearchDriver(config(*(fixed(k) for k in scores), finalists=1), Log().propose)
    batches = run(driver, lambda job: scores[job.trial.method_key][job.seed])
    # 3 arms, 2 looks (seeds 1 and 2): Bonferroni level 0.05 / (2 x 2)
    level = 0.05 / 4
    b_diff, c_diff = [0.80 - 0.90, 0.808 - 0.91], [0.89 - 0.90, 0.85 - 0.91]
    b_p, c_p = t_p_value(b_diff), t_p_value(c_diff)
    assert b_p == pytest.approx(math.atan(1 / 101) / math.pi)  # t = -0.101 / 0.001 = -101
    assert b_p < level < c_p
    assert batches == [
        ["a__t0__e9__s0", "b__t0__e9__s0", "c__t0__e9__s0"],
        ["a__t0__e9__s1", "b__t0__e9__s1", "c__t0__e9__s1"],
        ["a__t0__e9__s2", "c__t0__e9__s2"],  # b dropped after the first look: never trained on seed 2
    ]
    dropped = [e for e in driver.events() if e.status == "dropped_by_race"]
    assert len(dropped) == 1
    assert (dropped[0].trial_id, dropped[0].leader, dropped[0].seeds) == ("b__t0", "a__t0", 2)
    assert (dropped[0].diff, dropped[0].p_value, dropped[0].threshold) == (
        pytest.approx(statistics.mean(b_diff)), pytest.approx(b_p), pytest.approx(level))
    # c survives the second look too: three paired differences
    c_p3 = t_p_value([*c_diff, 0.86 - 0.90])
    assert c_p3 > level
    assert [t.trial_id for t in driver.finalists()] == ["a__t0"]  # finalists: 1
    assert [(e.trial_id, e.status) for e in driver.events() if e.stage == "race"] == [
        ("b__t0", "dropped_by_race"), ("a__t0", "finalist"), ("c__t0", "cut_by_finalists")]
    assert driver.spent()[0] == 9 * 3 + 9 * 3 + 9 * 2


def test_race_look_and_level_by_hand():
    assert per_look_level(0.05, 4, 3) == pytest.approx(0.05 / 8)
    scores = {"x": {0: 0.7, 1: 0.8}, "y": {0: 0.6, 1: 0.69}, "z": {0: 0.7, 1: 0.7}}
    # leader x (mean 0.75); y's differences -0.1, -0.11: t = -0.105 / 0.005 = -21
    leader, dropped = race_look(scores, 0.05)
    assert leader == "x" and set(dropped) == {"y"}
    assert dropped["y"] == (pytest.approx(-0.105), pytest.approx(math.atan(1 / 21) / math.pi))
    # z's differences 0, -0.1: t = -1, p = 1/4, kept; identical differences carry no variance: kept
    assert race_look({"x": {0: 0.7, 1: 0.8}, "y": {0: 0.6, 1: 0.7}}, 0.5) == ("x", {})
    # ties for the lead go to the first arm
    assert race_look({"p": {0: 0.5, 1: 0.7}, "q": {0: 0.7, 1: 0.5}}, 0.05)[0] == "p"


def test_the_same_count_of_validation_images_on_every_seed_is_no_evidence_even_in_float32():
    """Seen in a real search_tiny run: fitnet one image (of 180) behind ce on both seeds. The float32
    accuracies make the two differences 1e-7 apart, which a t-test reads as a near-zero variance and a
    p far below any level; it is the same count, so the arm stays in the race."""
    import numpy as np

    f32 = lambda count: float(np.float32(count / 180))  # what accuracy(...).item() returns
    scores = {"ce": {0: f32(119), 1: f32(138)}, "fitnet": {0: f32(118), 1: f32(137)}}
    differences = [scores["fitnet"][s] - scores["ce"][s] for s in (0, 1)]
    assert differences[0] != differences[1]  # the float32 rounding the rule must see through
    assert race_look(scores, 0.0125) == ("ce", {})


def test_a_lucky_early_lead_does_not_eliminate_the_true_best_arm():
    # "best" is truly better, but "lucky" leads on the first two seeds by 0.05 and 0.045.
    scores = {"best": [0.80, 0.81, 0.91, 0.91, 0.90], "lucky": [0.85, 0.855, 0.80, 0.79, 0.81]}
    # first look: t = -0.0475 / 0.0025 = -19, p = arctan(1/19) / pi = 0.0167: below an uncorrected 0.05,
    # above the race's level 0.05 / (4 looks x 1 comparison) = 0.0125
    early_p = t_p_value([0.80 - 0.85, 0.81 - 0.855])
    assert early_p == pytest.approx(math.atan(1 / 19) / math.pi)
    assert per_look_level(0.05, 4, 2) < early_p < 0.05
    driver = race_driver(scores, (0, 1, 2, 3, 4))
    assert [e.status for e in driver.events() if e.status == "dropped_by_race"] == []
    assert [t.trial_id for t in driver.finalists()] == ["best__t0", "lucky__t0"]


def test_budget_fit_reduces_the_trials_per_method():
    # two tuned methods, rungs (1, 3, 9), race over 3 seeds (2 x 9 x 2 = 36 epochs):
    # n = 9: 9 + 9 + 9 = 27 per method -> 90; n = 4: 4 + 6 + 9 = 19 -> 74; n = 5: 5 + 6 + 9 = 20 -> 76
    log = Log()
    search = config(tuned("kd"), tuned("dkd"), trials_per_method=9, budget_epochs=75)
    assert search.plan() == (4, 3)
    driver = SearchDriver(search, log.propose)
    run(driver, lambda job: 0.5 + 0.01 * job.trial.number + (0.1 if job.trial.method_key == "kd" else 0.0))
    assert [c[1] for c in log.calls] == [f"{m}__t{n}" for m in ("kd", "dkd") for n in range(4)]
    assert [(e.trial_id, e.epochs, e.seeds) for e in driver.events() if e.status == "not_run_budget"] == [
        (f"{m}__t{n}", 0, 0) for m in ("kd", "dkd") for n in range(4, 9)]
    assert driver.spent()[0] <= 75
    assert driver.grid_cost_epochs() == 2 * 4 * 9 * 3


def test_waves_tell_rung_zero_results_before_the_next_proposals():
    log = Log()
    driver = SearchDriver(config(tuned("kd"), waves=2), log.propose, log.tell)
    assert [job.key for job in driver.next_jobs()] == [f"kd__t{n}__e1__s0" for n in range(3)]
    run(driver, tie_accuracy)
    assert log.calls == [
        *(("propose", f"kd__t{n}", None) for n in range(3)),
        *(("tell", f"kd__t{n}", RUNG_ONE[n]) for n in range(3)),
        *(("propose", f"kd__t{n}", None) for n in range(3, 6)),
        *(("tell", f"kd__t{n}", RUNG_ONE[n]) for n in range(3, 6)),
    ]
    assert driver.champions()["kd"].number == 2  # the same halving as in one wave


def noisy_accuracy(job: Job) -> float:
    """A deterministic pseudo-random accuracy per job."""
    return random.Random(job.key).uniform(0.6, 0.9)


def test_replay_gives_the_same_jobs_and_state():
    search = config(tuned("kd"), fixed("ce"), tuned("dkd"), waves=2, race_seeds=(0, 1, 2, 3))
    original_log = Log()
    original = SearchDriver(search, original_log.propose, original_log.tell)
    history: list[tuple[list[Job], list[Outcome]]] = []
    while not original.finished:
        jobs = original.next_jobs()
        outcomes = [outcome(job, noisy_accuracy(job)) for job in jobs]
        history.append((jobs, outcomes))
        original.record(outcomes)
    recorded = [o for _, batch in history for o in batch]
    # resumed half way: the recorded outcomes at once give the jobs the original asked for next
    for cut in range(len(history)):
        resumed = SearchDriver(search, Log().propose)
        resumed.record(o for _, batch in history[:cut] for o in batch)
        assert resumed.next_jobs() == history[cut][0]
    replay_log = Log()
    replayed = SearchDriver(search, replay_log.propose, replay_log.tell)
    replayed.record(reversed(recorded))  # any order
    assert replayed.finished and replayed.next_jobs() == []
    assert replayed.events() == original.events() and replayed.finalists() == original.finalists()
    assert replayed.champions() == original.champions()
    assert sorted(replay_log.calls) == sorted(original_log.calls)  # same proposals, same values told
    assert replayed.spent()[0] == original.spent()[0]


def test_replay_refuses_a_setting_that_changed():
    search = config(tuned("kd"))
    driver = SearchDriver(search, Log().propose)
    jobs = driver.next_jobs()
    moved = SearchDriver(search, lambda key, number: {"temperature": 7.5})
    with pytest.raises(ValueError, match=r"^kd__t0: recorded with setting \{'temperature': 1\.0\} but proposed with"):
        moved.record([outcome(jobs[0], 0.5)])


def test_replay_refuses_a_proposal_that_differs_from_a_recorded_outcome():
    # a resumed two-wave search records wave 1 before it proposes it; the new proposal must match
    search = config(tuned("kd"), waves=2)
    original = SearchDriver(search, Log().propose)
    first = [outcome(job, 0.5) for job in original.next_jobs()]
    original.record(first)
    second = [outcome(job, 0.6) for job in original.next_jobs()]
    assert [o.job.trial.number for o in second] == [3, 4, 5]
    drifting = SearchDriver(search, lambda key, number: {"temperature": 1.0 + number if number < 3 else 9.0})
    with pytest.raises(ValueError, match=r"^kd__t3: recorded with setting \{'temperature': 4\.0\} but proposed with \{'temperature': 9\.0\}"):
        drifting.record([*second, *first])


def test_outcomes_of_another_search_are_refused_and_a_repeated_job_keeps_its_first_outcome():
    driver = SearchDriver(config(fixed("ce"), fixed("kd")), Log().propose)
    job = driver.next_jobs()[0]
    with pytest.raises(ValueError, match=r"^dkd__t0__e9__s0: 'dkd' is not a method of this search \['ce', 'kd'\]$"):
        driver.record([outcome(Job(TrialSpec("dkd", 0), 9, 0, "rung"), 0.5)])
    driver.record([outcome(job, 0.5), outcome(job, 0.9)])
    assert driver.anytime() == [("ce", 9.0, 0.5)]


def test_failed_outcomes_are_never_promoted_nor_finalists():
    # kd's t5 has the best rung-1 accuracy but fails; t3 and t4 are promoted instead.
    # dkd fails everywhere: no champion, not raced. ce fails on race seed 1: dropped from the race.
    def accuracy(job: Job) -> float | None:
        key, number = job.trial.method_key, job.trial.number
        if key == "dkd" or (key == "kd" and number == 5) or (key == "ce" and job.seed == 1):
            return None
        return 0.5 + 0.01 * number + 0.001 * job.epochs

    log = Log()
    driver = SearchDriver(config(fixed("ce"), tuned("kd"), tuned("dkd")), log.propose, log.tell)
    batches = run(driver, accuracy)
    kd_rung_one = [(e.trial_id, e.status) for e in driver.events() if e.method_key == "kd" and e.epochs == 1]
    assert kd_rung_one[:3] == [("kd__t5", "failed"), ("kd__t4", "promoted"), ("kd__t3", "promoted")]
    assert set(driver.champions()) == {"ce", "kd"}
    assert ("tell", "kd__t5", pytest.approx(math.nan, nan_ok=True)) in log.calls
    assert ("dkd__t0", "failed", 1) in statuses(driver)
    assert ("ce__t0", "failed", 9) in statuses(driver)
    assert [t.trial_id for t in driver.finalists()] == ["kd__t4"]
    dkd_jobs = [key for batch in batches for key in batch if key.startswith("dkd")]
    assert dkd_jobs == [f"dkd__t{n}__e1__s0" for n in range(6)]  # failed at the first rung, never trained again


def test_trial_and_job_identities():
    trial = TrialSpec("kd", 3, {"temperature": 2.5})
    job = Job(trial, 15, 1, "race")
    assert (trial.trial_id, job.key) == ("kd__t3", "kd__t3__e15__s1")
    assert len({trial, TrialSpec("kd", 3, {"temperature": 2.5}), TrialSpec("kd", 4)}) == 2  # hashable despite the dict
    assert {job: 1}[Job(TrialSpec("kd", 3, {"temperature": 2.5}), 15, 1, "race")] == 1


def test_event_defaults_are_not_a_number():
    event = Event("kd__t0", "kd", "promoted", "rung", 1, 1)
    assert event.leader is None and all(math.isnan(v) for v in (event.diff, event.p_value, event.threshold))
