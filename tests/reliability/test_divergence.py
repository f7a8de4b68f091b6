"""Diverged training: a non-finite loss stops the run naming it; exploded or chance-level runs are flagged,
kept in the comparison with the reason, and never ranked by the recommender."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from distillation_studies.analysis.comparison import failure_flags
from distillation_studies.analysis.recommend import failed, recommend
from distillation_studies.learning.divergence import (
    EXPLODED_LOSS,
    DivergenceError,
    chance_accuracy,
    check_finite,
    failure_reason,
)
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.methods.base import DistillationMethod
from distillation_studies.learning.training import TrainConfig, train
from distillation_studies.report.recommendation import recommendation_markdown, violation_text
from distillation_studies.report.sections import noise_rows
from tests.method_checks import tiny_mlp


def test_chance_is_the_majority_class_share():
    assert chance_accuracy(torch.tensor([0, 0, 1, 2])) == 0.5  # two of four answers are class 0
    assert chance_accuracy(torch.tensor([3, 1, 2, 0, 4])) == 0.2


def test_a_non_finite_term_is_named_with_run_seed_and_epoch():
    row = {"epoch": 3, "loss_ce": 2.1, "loss_hint": math.inf, "loss_total": math.inf, "val_accuracy": 0.1}
    with pytest.raises(DivergenceError, match=r"kd/seed_4 \(seed 4\) epoch 3: non-finite loss \(inf\) in term\(s\) hint;"):
        check_finite(row, "kd/seed_4", 4, [])
    check_finite({"epoch": 1, "loss_ce": 2.0, "loss_total": 2.0}, "kd/seed_4", 4, [])  # finite: nothing


@pytest.mark.parametrize(
    "history, reason",
    [
        ([{"epoch": 1, "loss_ce": 2.0, "val_accuracy": 0.30}], None),
        ([{"epoch": 1, "loss_ce": 2.0, "val_accuracy": 0.10}], r"never beat chance: best validation accuracy 0\.1000 <= 0\.1000"),
        ([{"epoch": 1, "loss_ce": 2.0, "val_accuracy": 0.1}, {"epoch": 2, "loss_ce": 2.0, "val_accuracy": 0.11}], None),
        ([{"epoch": 1, "loss_ce": 2.0, "val_accuracy": 0.5}, {"epoch": 2, "loss_ce": 2e6, "val_accuracy": 0.5}], r"loss exploded: epoch 2 loss term 'ce' is 2e\+06"),
        ([{"epoch": 1, "loss_vid": -2 * EXPLODED_LOSS, "val_accuracy": 0.5}], r"loss exploded: epoch 1 loss term 'vid'"),
    ],
)
def test_failure_rules(history, reason):
    found = failure_reason(history, chance=0.10)
    if reason is None:
        assert found is None
    else:
        assert found is not None and re.search(reason, found)


class _NaNAtEpoch(DistillationMethod):
    """Cross-entropy whose extra term becomes NaN from epoch ``bad_epoch`` on."""

    needs_teacher = False

    def __init__(self, bad_epoch: int) -> None:
        nn.Module.__init__(self)
        self.config, self.bad_epoch = None, bad_epoch

    @classmethod
    def layers(cls, config):
        return [], []

    def forward(self, student, teacher, batch) -> dict[str, Tensor]:
        ce = nn.functional.cross_entropy(student.logits, batch.labels)
        extra = ce * 0 + (math.nan if self.epoch >= self.bad_epoch else 0.0)
        return {"ce": ce, "bad": extra}


def test_train_stops_at_the_first_non_finite_epoch():
    torch.manual_seed(0)
    data = {"x": torch.randn(40, 1, 8, 8), "y": torch.arange(40) % 4}
    model = tiny_mlp(hidden=(8,))
    with pytest.raises(DivergenceError) as caught:
        train(model, _NaNAtEpoch(2), data, data, TrainConfig(epochs=5, batch_size=8), seed=7, label="odd/seed_7")
    error = caught.value
    assert (error.label, error.seed, error.epoch, error.term) == ("odd/seed_7", 7, 2, "bad")
    assert [row["epoch"] for row in error.history] == [1]  # epoch 1 kept; epochs 3-5 never ran


def _runs() -> pd.DataFrame:
    """ce and kd trained fine on seeds 0 and 1; kd's seed 1 diverged; rkd never beat chance."""
    rows = [
        ("ce", 0, 0.80, ""), ("ce", 1, 0.82, ""),
        ("kd", 0, 0.84, ""), ("kd", 1, 0.10, "diverged: kd/seed_1 ..."),
        ("rkd", 0, 0.10, "never beat chance: ..."), ("rkd", 1, 0.09, "never beat chance: ..."),
    ]
    return pd.DataFrame(rows, columns=["arm", "seed", "test_accuracy", "failure"]).assign(candidate=lambda d: d["arm"])


def test_one_failed_seed_makes_the_arm_unusable():
    flags = failure_flags(_runs())
    assert flags["usable"].to_dict() == {"ce": True, "kd": False, "rkd": False}
    assert flags.loc["kd", "failure"] == "seed 1: diverged: kd/seed_1 ..."
    assert flags.loc["rkd", "failure"] == "seed 0: never beat chance: ...; seed 1: never beat chance: ..."
    old = _runs().drop(columns="failure")  # runs saved before flags existed are usable
    assert failure_flags(old)["usable"].all()


def _summary(runs: pd.DataFrame) -> pd.DataFrame:
    means = runs.groupby("arm", sort=False)["test_accuracy"].agg(["mean", "count"])
    summary = pd.DataFrame({"candidate": means.index, "test_accuracy_mean": means["mean"].to_numpy(), "seeds": means["count"].to_numpy()})
    return summary.join(failure_flags(runs), on="candidate")


def test_the_recommender_never_ranks_a_failed_arm():
    runs = _runs()
    result = recommend(_summary(runs), runs)
    assert [c.candidate for c in result.ranked] == ["ce"]  # kd's mean 0.47 and rkd's 0.095 are not ranked
    excluded = {e.candidate: e for e in result.excluded}
    assert failed(excluded["kd"]) and failed(excluded["rkd"])
    record = result.to_dict()
    kd = next(e for e in record["excluded"] if e["candidate"] == "kd")
    assert violation_text(kd["violations"][0]).startswith("training failed: seed 1: diverged")
    assert "Failed training (never ranked)" in recommendation_markdown(record)


def test_no_usable_candidate_is_said_rather_than_ranking_chance_level_students():
    runs = _runs()
    runs["failure"] = "loss exploded: ..."
    result = recommend(_summary(runs), runs)
    assert result.ranked == () and result.best == []
    assert "No candidate is usable" in recommendation_markdown(result)


def test_the_headline_table_marks_failed_arms():
    table = pd.DataFrame(
        {
            "arm": ["ce", "kd"], "usable": [True, False], "seeds": [2, 2],
            **{f"{m}_{s}": [0.5, 0.1] for m in ("test_accuracy", "last_test_accuracy", "test_nll", "test_ece", "test_teacher_agreement") for s in ("mean", "ci_low")},
            **{f"{c}_mean": [1.0, 1.0] for c in ("parameters", "training_parameters", "flops", "latency_ms", "train_time_s")},
        }
    )
    assert [row["arm"] for row in noise_rows(table, [])] == ["ce", "kd (FAILED: not ranked)"]


def test_a_real_method_diverges_with_a_huge_weight():
    """fitnet with weight 1e300: the hint term overflows fp32 on the first step."""
    torch.manual_seed(0)
    data = {"x": torch.randn(32, 1, 8, 8), "y": torch.arange(32) % 4}
    student, teacher = tiny_mlp(hidden=(8,)), tiny_mlp(hidden=(8,))
    config = parse_method_config("fitnet", {"student_layer": "hidden.0", "teacher_layer": "hidden.0", "weight": 1e300}, "methods.fitnet")
    method = build_method("fitnet", config, student, teacher, 32)
    with pytest.raises(DivergenceError, match=r"fitnet/seed_0 \(seed 0\) epoch 1: non-finite loss .*hint"):
        train(student, method, data, data, TrainConfig(epochs=3, batch_size=8), seed=0, teacher=teacher, label="fitnet/seed_0")


def _digits_study(lr: float):
    from distillation_studies.learning import data
    from distillation_studies.pipelines.data_processing.nodes import split_images
    from distillation_studies.study.schema import DataConfig, parse_model_section

    config = DataConfig(dataset="digits", val_fraction=0.1, test_fraction=0.2, split_seed=0, normalisation="train")
    model_input, summary = split_images(data.load_embedded("digits"), config)
    teacher = {"seed": 0, "model": {"name": "mlp", "hidden": [16]}, "training": {"epochs": 2, "batch_size": 128, "lr": lr}}
    return model_input, summary, parse_model_section(teacher, "teacher", summary)


def test_a_teacher_at_chance_stops_the_study_naming_it():
    """teacher.training.lr=1e6 used to give a teacher at chance (test accuracy 0.097) that every student learnt from."""
    from distillation_studies.common.errors import ConfigError
    from distillation_studies.pipelines.teacher.nodes import train_teacher

    with pytest.raises(ConfigError, match=r"^teacher\.training: the teacher is unusable \((loss exploded|never beat chance): .*before any student trains"):
        train_teacher(*_digits_study(lr=1e6))
    model, _, history = train_teacher(*_digits_study(lr=0.01))  # a sane teacher passes the same checks
    assert history["summary"]["best_val_accuracy"] > 0.5
