"""The search: section: a valid search study parsed, and each bad input refused naming its key."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from distillation_studies.common.errors import ConfigError
from distillation_studies.study.schema import MethodEntry, parse_method_entry, validate_study
from distillation_studies.study.search import Hyperparameter, SearchConfig, SearchSpace, parse_search, parse_space
from tests.study.test_schema import _set, base_config


def search_config() -> dict[str, Any]:
    """A two-method search study: ce fixed, kd tuned on two ranges; student trains 9 epochs."""
    config = base_config()
    config["student"]["training"]["epochs"] = 9
    config["methods"] = {
        "ce": {},
        "kd": {
            "temperature": 4.0,
            "search": {"temperature": {"low": 1.0, "high": 8.0, "log": True}, "alpha": {"low": 0.1, "high": 0.99}},
        },
    }
    config["search"] = {"budget_epochs": 200, "trials_per_method": 6, "min_epochs": 1, "race_seeds": [0, 1, 2]}
    return config


def _drop(path: str) -> Callable[[dict], None]:
    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def _both(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(config: dict) -> None:
        for mutation in mutations:
            mutation(config)

    return mutate


KD_SEARCH = "methods.kd.search"
BAD_SEARCHES = [
    ("unknown hyperparameter", _set(f"{KD_SEARCH}.tempreature", {"low": 1.0, "high": 2.0}),
     r"^methods\.kd\.search\.tempreature: unknown hyperparameter; kd's are \['temperature', 'ce_weight', 'kd_weight', 'alpha', 'logit_standardization', 'label_smoothing'\]$"),
    ("empty range", _set(f"{KD_SEARCH}.alpha", {"low": 0.5, "high": 0.5}),
     r"^methods\.kd\.search\.alpha: empty or inverted range, low=0\.5 must be below high=0\.5$"),
    ("inverted range", _set(f"{KD_SEARCH}.alpha", {"low": 0.9, "high": 0.1}),
     r"^methods\.kd\.search\.alpha: empty or inverted range, low=0\.9 must be below high=0\.1$"),
    ("log range from zero", _set(f"{KD_SEARCH}.temperature", {"low": 0.0, "high": 8.0, "log": True}),
     r"^methods\.kd\.search\.temperature\.low: a log range needs low > 0, got 0\.0$"),
    ("missing high", _set(f"{KD_SEARCH}.temperature", {"low": 1.0}),
     r"^methods\.kd\.search\.temperature\.high: required, a finite number, got None$"),
    ("log not a bool", _set(f"{KD_SEARCH}.temperature", {"low": 1.0, "high": 2.0, "log": "yes"}),
     r"^methods\.kd\.search\.temperature\.log: must be true or false, got 'yes'$"),
    ("unknown range key", _set(f"{KD_SEARCH}.temperature", {"low": 1.0, "high": 2.0, "step": 0.5}),
     r"^methods\.kd\.search\.temperature\.step: unknown key; allowed keys: \['low', 'high', 'log', 'integer'\]"),
    ("range and choices", _set(f"{KD_SEARCH}.alpha", {"choices": [0.5], "low": 0.1}),
     r"^methods\.kd\.search\.alpha\.low: not allowed with choices"),
    ("empty choices", _set(f"{KD_SEARCH}.alpha", {"choices": []}),
     r"^methods\.kd\.search\.alpha\.choices: must be a non-empty list of values, got \[\]$"),
    ("repeated choices", _set(f"{KD_SEARCH}.alpha", {"choices": [0.5, 0.5]}),
     r"^methods\.kd\.search\.alpha\.choices: values must be distinct"),
    ("high refused by the method", _set(f"{KD_SEARCH}.alpha", {"low": 0.5, "high": 1.5}),
     r"^methods\.kd\.search\.alpha: 1\.5 is refused by kd's config: methods\.kd\.alpha: must be in \[0\.0, 1\.0\], got 1\.5$"),
    ("low refused by the method", _set(f"{KD_SEARCH}.temperature", {"low": -2.0, "high": 8.0}),
     r"^methods\.kd\.search\.temperature: -2\.0 is refused by kd's config: methods\.kd\.temperature: must be > 0"),
    ("choice refused by the method", _set(f"{KD_SEARCH}.logit_standardization", {"choices": [True, "maybe"]}),
     r"^methods\.kd\.search\.logit_standardization: 'maybe' is refused by kd's config: .*expected bool"),
    ("integer range with fractional bound", _set("methods.dkd", {"search": {"warmup": {"low": 1.5, "high": 4, "integer": True}}}),
     r"^methods\.dkd\.search\.warmup: an integer range needs integer bounds, got 1\.5$"),
    ("integer field without integer", _set("methods.dkd", {"search": {"warmup": {"low": 1, "high": 4}}}),
     r"^methods\.dkd\.search\.warmup\.integer: this hyperparameter is an integer; add integer: true$"),
    ("empty method search", _set(KD_SEARCH, {}),
     r"^methods\.kd\.search: must map hyperparameter names to ranges or choices, e\.g\. \{temperature: \{low: \.\., high: \.\.\}\}$"),
    ("method search a list", _set(KD_SEARCH, ["temperature"]), r"^methods\.kd\.search: must map hyperparameter names"),
    ("hyperparameter not a mapping", _set(f"{KD_SEARCH}.alpha", [0.1, 0.9]),
     r"^methods\.kd\.search\.alpha: must be a mapping \{low: \.\., high: \.\.\} or \{choices: \[\.\.\]\}, got \[0\.1, 0\.9\]$"),
    ("search and sweep on one method", _set("methods.kd.sweep", {"alpha": [0.5, 0.9]}),
     r"^methods\.kd\.search: a method is either swept \(sweep:\) or searched \(search:\), not both$"),
    ("sweep on another method of a search study", _set("methods.ce", {"sweep": {"label_smoothing": [0.0, 0.1]}}),
     r"^methods\.ce\.sweep: a search study tunes methods with search:, not sweep:"),
    ("method search without a search section", _drop("search"),
     r"^methods\.kd\.search: needs a top-level search: section"),
    ("search not a mapping", _set("search", [1]), r"^search: must be a mapping"),
    ("unknown search key", _set("search.budget", 10), r"^search\.budget: unknown key; allowed keys: \['budget_epochs'"),
    ("missing budget", _drop("search.budget_epochs"), r"^search\.budget_epochs: required in a search study$"),
    ("confirmation seeds overlap race seeds", _set("search.confirmation_seeds", [2, 7]),
     r"^search\.confirmation_seeds: \[2\] are also race_seeds; confirmation needs fresh seeds"),
    ("one race seed", _set("search.race_seeds", [0]), r"^search\.race_seeds: at least 2 seed\(s\) are needed, got \[0\]$"),
    ("repeated race seeds", _set("search.race_seeds", [0, 0]), r"^search\.race_seeds: seeds must be distinct"),
    ("negative race seed", _set("search.race_seeds", [0, -1]), r"^search\.race_seeds: must be an integer in \[0, "),
    ("no confirmation seeds", _set("search.confirmation_seeds", []), r"^search\.confirmation_seeds: at least 1 seed"),
    ("eta of one", _set("search.eta", 1), r"^search\.eta: must be an integer >= 2"),
    ("fractional eta", _set("search.eta", 2.5), r"^search\.eta: expected int, got 2\.5$"),
    ("min epochs above max epochs", _set("search.min_epochs", 10),
     r"^search\.min_epochs: 10 is more than max_epochs=9"),
    ("zero max epochs", _set("search.max_epochs", 0), r"^search\.max_epochs: must be > 0, got 0$"),
    ("budget below the smallest search", _set("search.budget_epochs", 35),
     r"^search\.budget_epochs: 35 epochs cannot pay for the smallest search, one trial of each of the 2 method\(s\) "
     r"trained for max_epochs=9 on 2 race seed\(s\) = 36 epochs"),
    ("no finalists", _set("search.finalists", 0), r"^search\.finalists: must be > 0, got 0$"),
    ("race alpha of zero", _set("search.race_alpha", 0.0), r"^search\.race_alpha: must be in \(0, 1\), got 0\.0$"),
    ("race alpha of one", _set("search.race_alpha", 1.0), r"^search\.race_alpha: must be in \(0, 1\), got 1\.0$"),
    ("no waves", _set("search.waves", 0), r"^search\.waves: must be > 0, got 0$"),
    ("several data cells", _set("grid", {"label_fractions": [0.5, 1.0]}),
     r"^grid: a search study tunes one student on one data cell for now"),
    ("several students", _set("grid", {"students": {"wide": {"name": "mlp", "hidden": [32]}}}),
     r"^grid: a search study tunes one student on one data cell for now"),
    ("rung the training refuses", _both(
        _set("student.training.schedule", "multistep"), _set("student.training.milestones", [3])),
     r"^search\.min_epochs: a rung of 1 epochs is refused by student\.training: student\.training\.milestones"),
]


@pytest.mark.parametrize("mutate, message", [c[1:] for c in BAD_SEARCHES], ids=[c[0] for c in BAD_SEARCHES])
def test_bad_search_names_the_key(mutate, message):
    config = search_config()
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        validate_study(config)


def test_valid_search_study_is_parsed():
    config = search_config()
    config["methods"]["kd"]["search"]["logit_standardization"] = {"choices": [False, True]}
    config["methods"]["dkd"] = {"search": {"warmup": {"low": 1, "high": 4, "integer": True}}}
    snapshot = copy.deepcopy(config)
    study = validate_study(config)
    assert config == snapshot
    search = study.search
    assert study.section("search") is search
    assert [space.method_key for space in search.spaces] == ["ce", "kd", "dkd"]
    ce, kd, dkd = search.spaces
    assert ce.hyperparameters == () and ce.fixed
    assert kd.hyperparameters == (
        Hyperparameter("temperature", 1.0, 8.0, log=True),
        Hyperparameter("alpha", 0.1, 0.99),
        Hyperparameter("logit_standardization", choices=(False, True)),
    )
    assert dkd.hyperparameters == (Hyperparameter("warmup", 1, 4, integer=True),)
    assert (search.max_epochs, search.min_epochs, search.eta) == (9, 1, 3)  # max_epochs: student.training.epochs
    assert search.race_seeds == (0, 1, 2) and search.confirmation_seeds == (100, 101, 102)
    assert search.rungs() == (1, 3, 9)
    # the method's own config and raw settings carry no search key
    entry = study.section("methods.kd")
    assert entry.raw == {"temperature": 4.0} and entry.config.temperature == 4.0
    assert entry.search == config["methods"]["kd"]["search"]


def test_budget_fit_is_hand_computed():
    # ce fixed: 9 epochs once. A tuned method with n trials, rungs (1, 3, 9), eta 3:
    #   n=6: 6x1 + 2x3 + 1x9 = 21; n=4: 4x1 + 2x3 + 1x9 = 19; n=3: 3x1 + then 1 left -> 1x9 = 12
    # race over 3 seeds: 2 more seeds x 9 epochs x 3 arms = 54.  n=6 worst case: 9 + 21 + 21 + 54 = 105
    config = search_config()
    config["methods"]["dkd"] = {"search": {"warmup": {"low": 1, "high": 4, "integer": True}}}
    config["search"]["budget_epochs"] = 105
    search = validate_study(config).search
    assert search.schedule(6) == ((1, 6), (3, 2), (9, 1))
    assert search.schedule(3) == ((1, 3), (9, 1))
    assert search.plan() == (6, 3)
    assert [search.trials_for(space) for space in search.spaces] == [1, 6, 6]
    # 104 epochs: n=5 costs 5 + 6 + 9 = 20 per method: 9 + 40 + 54 = 103 fits
    config["search"]["budget_epochs"] = 104
    assert validate_study(config).search.plan() == (5, 3)
    # 9 + 2x9 + 54 = 81 is one trial each with the full race; below it a race seed is given up
    # (race 1 x 9 x 3 = 27): n=6 costs 9 + 42 + 27 = 78, n=3 costs 9 + 2x12 + 27 = 60, n=4 costs 9 + 38 + 27 = 74
    config["search"]["budget_epochs"] = 80
    assert validate_study(config).search.plan() == (6, 2)
    config["search"]["budget_epochs"] = 60
    search = validate_study(config).search
    assert search.plan() == (3, 2) and search.planned_race_seeds() == (0, 1)


def test_study_without_search_has_none():
    study = validate_study(base_config())
    assert study.search is None and study.section("search") is None


@dataclass(frozen=True)
class NoSettings:
    """A method config with no field at all."""


def test_method_without_hyperparameters_has_nothing_to_tune():
    entry = MethodEntry("plain", "plain", NoSettings(), {}, search={"x": {"low": 0, "high": 1}})
    with pytest.raises(ConfigError, match=r"^methods\.plain\.search: method 'plain' has no hyperparameters, nothing to tune"):
        parse_space(entry)


def test_parse_search_without_section_or_searched_method_is_none():
    assert parse_search(None, (parse_method_entry("ce", {}),), 5) is None


def test_search_config_defaults_follow_the_contract():
    space = SearchSpace("kd", "kd", (Hyperparameter("temperature", 1.0, 8.0),))
    search = SearchConfig((space,), budget_epochs=600, trials_per_method=6, min_epochs=5, max_epochs=45)
    assert (search.eta, search.race_seeds, search.confirmation_seeds) == (3, (0, 1, 2, 3, 4), (100, 101, 102))
    assert (search.finalists, search.race_alpha, search.sampler_seed, search.waves) == (3, 0.05, 0, 2)
    assert search.rungs() == (5, 15, 45)
    # one method alone runs no race: 6x5 + 2x15 + 1x45 = 105
    assert search.worst_case_epochs(6, 5) == 105


def test_finalists_all_confirms_every_survivor_of_the_race():
    config = search_config()
    config["search"]["finalists"] = "all"
    search = validate_study(config).search
    assert search.finalists == 2  # ce and kd: the race cannot leave more survivors than methods


def test_finalists_other_words_are_refused_naming_the_key():
    config = search_config()
    config["search"]["finalists"] = "most"
    with pytest.raises(ConfigError, match=r"^search\.finalists: a count or .all. \(every survivor of the race\), got .most.$"):
        validate_study(config)
