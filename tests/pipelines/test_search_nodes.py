"""The search shell's helpers: Optuna proposals that replay on resume, stored outcomes, fates, the
confirmation's trials, a job's cost, a trial's method config and the sequential job runner."""

from __future__ import annotations

import math

import pytest

from distillation_studies.analysis.search_driver import Event, Job, Outcome, SearchDriver, TrialSpec
from distillation_studies.common.errors import ConfigError
from distillation_studies.pipelines.search.jobs import job_outcome, run_all, trial_entry
from distillation_studies.pipelines.search.nodes import confirmation_trials, events_table, trial_fates
from distillation_studies.pipelines.search.proposals import OptunaProposals, fingerprint
from distillation_studies.study.schema import parse_method_entry
from distillation_studies.study.search import parse_search

METHODS = (
    parse_method_entry("ce", {}),
    parse_method_entry("kd", {"temperature": 4.0, "alpha": 0.9, "search": {
        "temperature": {"low": 1.0, "high": 8.0, "log": True}, "alpha": {"choices": [0.5, 0.9]}}}),
)
SEARCH = {"budget_epochs": 100, "trials_per_method": 4, "min_epochs": 1, "max_epochs": 3, "eta": 3, "race_seeds": [0, 1]}


def search(**changes):
    return parse_search({**SEARCH, **changes}, METHODS, 3)


def storage(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def test_proposals_are_in_the_space_and_replayed_by_a_new_instance(tmp_path):
    first = OptunaProposals(search(), storage(tmp_path), "abc")
    settings = [first.propose("kd", n) for n in range(3)]
    for setting in settings:
        assert 1.0 <= setting["temperature"] <= 8.0 and setting["alpha"] in (0.5, 0.9)
    assert first.propose("ce", 0) == {}  # a fixed method has nothing to propose
    again = OptunaProposals(search(), storage(tmp_path), "abc")
    assert [again.propose("kd", n) for n in (2, 0, 1)] == [settings[2], settings[0], settings[1]]
    other = OptunaProposals(search(), storage(tmp_path), "def")  # another study's fingerprint: a fresh Optuna study
    assert other.studies["kd"].trials == []


def test_the_same_sampler_seed_proposes_the_same_settings(tmp_path):
    a = OptunaProposals(search(sampler_seed=3), f"sqlite:///{tmp_path / 'a.db'}", "x")
    b = OptunaProposals(search(sampler_seed=3), f"sqlite:///{tmp_path / 'b.db'}", "x")
    assert [a.propose("kd", n) for n in range(3)] == [b.propose("kd", n) for n in range(3)]


def test_tell_completes_a_trial_once_and_a_repeated_tell_is_ignored(tmp_path):
    proposals = OptunaProposals(search(), storage(tmp_path), "abc")
    setting = proposals.propose("kd", 0)
    trial = TrialSpec("kd", 0, setting)
    proposals.tell(trial, 0.5)
    proposals.tell(trial, 0.9)  # a resumed driver tells recorded trials again
    stored = proposals.studies["kd"].trials[0]
    assert stored.value == 0.5 and stored.state.name == "COMPLETE"
    failed = TrialSpec("kd", 1, proposals.propose("kd", 1))
    proposals.tell(failed, math.nan)  # the driver tells a failed trial NaN: Optuna keeps it as failed
    assert proposals.studies["kd"].trials[1].state.name == "FAIL"
    proposals.tell(TrialSpec("ce", 0, {}), 0.4)  # a fixed method has no Optuna trial to tell
    assert proposals.studies["ce"].trials == []


def test_a_saved_outcome_comes_back_for_the_same_job_only(tmp_path):
    proposals = OptunaProposals(search(), storage(tmp_path), "abc")
    job = Job(TrialSpec("kd", 0, {"temperature": 2.0, "alpha": 0.5}), 1, 0, "rung")
    outcome = Outcome(job, 0.75, 120, 3.5, failed=False)
    proposals.save(outcome)
    assert OptunaProposals(search(), storage(tmp_path), "abc").saved(job) == outcome
    assert proposals.saved(Job(job.trial, 3, 0, "rung")) is None


def test_a_driver_replaying_saved_outcomes_asks_for_no_job_trained_before(tmp_path):
    """What a rerun does: the same proposals and saved outcomes give the same jobs, all of them saved."""
    config = search()
    proposals = OptunaProposals(config, storage(tmp_path), "abc")
    driver = SearchDriver(config, proposals.propose, proposals.tell)
    trained = []
    while jobs := driver.next_jobs():
        outcomes = [Outcome(job, 0.1 * (job.trial.number + 1) + 0.01 * job.seed, 10, 1.0) for job in jobs]
        for outcome in outcomes:
            proposals.save(outcome)
        trained += [job.key for job in jobs]
        driver.record(outcomes)
    replay_proposals = OptunaProposals(config, storage(tmp_path), "abc")
    replay = SearchDriver(config, replay_proposals.propose, replay_proposals.tell)
    replayed = []
    while jobs := replay.next_jobs():
        saved = [replay_proposals.saved(job) for job in jobs]
        assert None not in saved
        replayed += [job.key for job in jobs]
        replay.record(saved)
    assert replayed == trained and replay.finalists() == driver.finalists()


def test_fingerprint_changes_with_any_part():
    assert fingerprint("a", {"x": 1}) == fingerprint("a", {"x": 1})
    assert fingerprint("a", {"x": 1}) != fingerprint("a", {"x": 2}) != fingerprint(b"a", {"x": 2})


def test_a_trial_fate_is_its_strongest_event():
    events = [
        Event("kd__t0", "kd", "promoted", "rung", 1, 1),
        Event("kd__t0", "kd", "dropped_by_race", "race", 3, 2),
        Event("kd__t1", "kd", "stopped_early", "rung", 1, 1),
        Event("ce__t0", "ce", "promoted", "rung", 3, 1),
        Event("ce__t0", "ce", "finalist", "race", 3, 2),
        Event("kd__t2", "kd", "promoted", "rung", 1, 1),
    ]
    assert trial_fates(events) == {"kd__t0": "dropped_by_race", "kd__t1": "stopped_early", "ce__t0": "finalist"}
    table = events_table(events)
    assert list(table["status"]) == [e.status for e in events] and math.isnan(table.loc[0, "p_value"])


def test_confirmation_adds_each_baseline_champion_not_already_a_finalist():
    champion = lambda method, n, setting: {"trial_id": f"{method}__t{n}", "method_key": method, "number": n, "setting": setting}
    record = {
        "finalists": [champion("fitnet", 2, {"weight": 0.5})],
        "champions": {"ce": champion("ce", 0, {}), "kd": champion("kd", 1, {"temperature": 2.0}), "fitnet": champion("fitnet", 2, {"weight": 0.5})},
    }
    trials = confirmation_trials(record, ("ce", "kd"))
    assert [(t.method_key, t.number, t.setting) for t in trials] == [("fitnet", 2, {"weight": 0.5}), ("ce", 0, {}), ("kd", 1, {"temperature": 2.0})]
    record["finalists"].append(champion("kd", 1, {"temperature": 2.0}))
    assert [t.trial_id for t in confirmation_trials(record, ("ce", "kd"))] == ["fitnet__t2", "kd__t1", "ce__t0"]


def test_a_job_costs_one_step_per_batch_of_each_epoch_run():
    job = Job(TrialSpec("ce", 0, {}), 3, 0, "rung")
    history = {"epochs": [{}, {}, {}], "summary": {"best_val_accuracy": 0.8, "train_size": 1000, "wall_time_s": 2.5}}
    outcome = job_outcome(job, history, batch_size=128, seconds=9.0)
    assert outcome == Outcome(job, 0.8, 3 * 8, 2.5, failed=False)  # ceil(1000 / 128) = 8 batches per epoch
    history["summary"].update(failure="diverged", optimizer_steps=17)
    assert job_outcome(job, history, 128, 9.0) == Outcome(job, 0.8, 17, 2.5, failed=True)


def test_a_trial_setting_becomes_the_method_entry_one_setting():
    entry = trial_entry(METHODS[1], {"temperature": 2.5, "alpha": 0.5})
    assert entry.config_for({"temperature": 2.5, "alpha": 0.5}).temperature == 2.5
    assert entry.settings == ({"temperature": 2.5, "alpha": 0.5},) and entry.raw == METHODS[1].raw
    with pytest.raises(ConfigError, match="methods.kd"):
        trial_entry(METHODS[1], {"tempreature": 2.5})


def test_outside_dask_jobs_run_in_order_and_each_result_is_reported_as_it_comes():
    seen = []
    results = run_all(lambda item, offset: item + offset, [3, 1, 2], 10, on_result=lambda item, result: seen.append((item, result)))
    assert results == [13, 11, 12] and seen == [(3, 13), (1, 11), (2, 12)]
