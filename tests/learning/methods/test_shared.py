"""methods.shared: the layer-list check every layer-pairing method uses, and ``fit``, the few epochs a
method fits a network of its own for (FT, TAKD), checked by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.divergence import DivergenceError
from distillation_studies.learning.methods.shared import LossTotals, check_layer_lists, fit
from distillation_studies.learning.training import TrainConfig, _epoch_groups


def _layers(student: object, teacher: object) -> SimpleNamespace:
    return SimpleNamespace(student_layers=student, teacher_layers=teacher)


@pytest.mark.parametrize("minimum", [1, 2])
def test_layer_lists_of_paired_paths_pass(minimum):
    check_layer_lists(_layers(("a", "b"), ("c", "d")), "methods.x", minimum)


@pytest.mark.parametrize(
    ("student", "teacher", "minimum", "message"),
    [
        # AT, NST, OFD, VID, ReviewKD: one pair is enough
        ((), ("c",), 1, "methods.x.student_layers: required, a list of at least 1 module path(s) "
         "(e.g. [features.0, features.1]), got ()"),
        (("a",), None, 1, "methods.x.teacher_layers: required, a list of at least 1 module path(s) "
         "(e.g. [features.0, features.1]), got None"),
        (("a", ""), ("c", "d"), 1, "methods.x.student_layers: every entry must be a module path string, got ['a', '']"),
        (("a", 3), ("c", "d"), 1, "methods.x.student_layers: every entry must be a module path string, got ['a', 3]"),
        (("a", "b"), ("c",), 1, "methods.x.teacher_layers: must pair one-to-one with student_layers, "
         "got 2 student and 1 teacher layers; give one teacher layer per student layer"),
        # FSP reads consecutive layers: one pair is too few
        (("a",), ("c",), 2, "methods.x.student_layers: required, a list of at least 2 module path(s) "
         "(e.g. [features.0, features.1]), got ('a',)"),
        (("a", "b"), ("c", "d", "e"), 2, "methods.x.teacher_layers: must pair one-to-one with student_layers, "
         "got 2 student and 3 teacher layers; give one teacher layer per student layer"),
    ],
)
def test_bad_layer_lists_name_the_key(student, teacher, minimum, message):
    with pytest.raises(ConfigError) as error:
        check_layer_lists(_layers(student, teacher), "methods.x", minimum)
    assert str(error.value) == message


def _line(w: float, b: float) -> nn.Linear:
    module = nn.Linear(1, 1)
    with torch.no_grad():
        module.weight.fill_(w)
        module.bias.fill_(b)
    return module


@pytest.mark.parametrize(("cosine", "w", "b"), [(False, 1.66, 0.39), (True, 1.58, 0.345)])
def test_full_batch_sgd_by_hand(cosine, w, b):
    # y = w x + b from w=1, b=0 on x=[1, 2], y=[2, 4], mean squared error, SGD lr 0.1, one batch per epoch.
    # Epoch 1: residuals [-1, -2], loss 2.5, grad w = mean(2 r x) = -5, grad b = mean(2 r) = -3 -> w 1.5, b 0.3.
    # Epoch 2: residuals [-0.2, -0.7], loss 0.265, grads -1.6, -0.9; lr 0.1 -> w 1.66, b 0.39;
    # cosine over 2 steps: lr 0.1 * (1 + cos(pi / 2)) / 2 = 0.05 -> w 1.58, b 0.345.
    x, y = torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [4.0]])
    module = _line(1.0, 0.0)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    history = fit(
        module, lambda i: {"mse": F.mse_loss(module(x[i]), y[i])}, 2, optimizer,
        epochs=2, batch_size=2, seed=0, label="line", cosine=cosine,
    )
    assert module.weight.item() == pytest.approx(w, abs=1e-6) and module.bias.item() == pytest.approx(b, abs=1e-6)
    assert [row["epoch"] for row in history] == [1, 2]
    assert [row["loss_mse"] for row in history] == pytest.approx([2.5, 0.265], abs=1e-6)
    assert [row["loss_total"] for row in history] == pytest.approx([2.5, 0.265], abs=1e-6)


def test_batches_follow_the_loops_order_for_the_same_seed():
    module, seen = _line(0.0, 0.0), []

    def terms(indices):
        seen.append(indices.tolist())
        return {"zero": 0.0 * module.weight.sum()}

    fit(module, terms, 5, torch.optim.SGD(module.parameters(), lr=0.1), epochs=2, batch_size=2, seed=3, label="order")
    generator = torch.Generator().manual_seed(3)
    expected = [g.tolist() for _ in range(2) for g in _epoch_groups(5, TrainConfig(batch_size=2), generator, None)]
    assert seen == expected and len(seen) == 6
    assert sorted(sum(seen[:3], [])) == sorted(sum(seen[3:], [])) == [0, 1, 2, 3, 4]
    assert seen[:3] != seen[3:]  # reshuffled every epoch


def test_epoch_totals_weight_label_terms_by_labelled_samples_and_skip_batches_without_a_term():
    # By hand: "ce" (a label term) is weighted by each batch's labelled count and is absent from the
    # batch with none; "kd" by every sample. Sums: ce 0.5*3 + 1.5*1 = 3.0; kd 2*4 + 4*4 + 1*2 = 26.
    totals = LossTotals(frozenset({"ce"}))
    totals.add({"ce": torch.tensor(0.5), "kd": torch.tensor(2.0)}, samples=4, labelled=3)
    totals.add({"ce": torch.tensor(1.5, dtype=torch.bfloat16), "kd": torch.tensor(4.0)}, samples=4, labelled=1)
    totals.add({"kd": torch.tensor(1.0, requires_grad=True)}, samples=2, labelled=0)
    assert {name: value.item() for name, value in totals.sums.items()} == {"ce": 3.0, "kd": 26.0}
    assert not any(value.requires_grad for value in totals.sums.values())
    row = totals.row(epoch=1, samples=10, labelled=4, label="m", seed=0, history=[])
    assert row == pytest.approx({"epoch": 1, "loss_ce": 3.0 / 4, "loss_kd": 26.0 / 10, "loss_total": 0.75 + 2.6})


def test_epoch_terms_are_averaged_over_samples_not_batches():
    # Term = mean of index^2 over the batch; over samples 0, 1, 2 weighted by batch size: (0 + 1 + 4) / 3,
    # whichever 2 + 1 split the shuffle makes (a mean of batch means would give 1.5 or 2.25 or 2.5).
    module = _line(0.0, 0.0)
    history = fit(
        module, lambda i: {"sq": (i.float() ** 2).mean() + 0.0 * module.weight.sum(), "one": module.bias.sum() * 0 + 1},
        3, torch.optim.SGD(module.parameters(), lr=0.1), epochs=3, batch_size=2, seed=0, label="avg",
    )
    assert [row["loss_sq"] for row in history] == pytest.approx([5 / 3] * 3)
    assert [row["loss_total"] for row in history] == pytest.approx([8 / 3] * 3)


def test_a_non_finite_term_stops_the_fit_at_that_epoch():
    module, calls = _line(1.0, 0.0), []

    def terms(indices):
        calls.append(1)
        return {"ok": module.bias.sum() * 0, "bad": module.weight.sum() * float("nan")}

    with pytest.raises(DivergenceError, match=r"diverged: demo/fit \(seed 7\) epoch 1: .* in term\(s\) bad"):
        fit(module, terms, 4, torch.optim.SGD(module.parameters(), lr=0.1), epochs=5, batch_size=2, seed=7, label="demo/fit")
    assert len(calls) == 2  # one epoch of two batches, not five


def _tiny_all_methods_with_label_smoothing() -> list[str]:
    import dataclasses

    from distillation_studies.learning.methods import METHODS
    from tests.study.test_schema import env_params

    methods = env_params("tiny_all")["methods"]
    keys = []
    for key, raw in methods.items():
        name = (raw or {}).get("method", key)
        if "label_smoothing" in {f.name for f in dataclasses.fields(METHODS[name].Config)}:
            keys.append(key)
    return keys


@pytest.mark.parametrize("key", _tiny_all_methods_with_label_smoothing())
def test_label_smoothing_is_one_setting_with_one_meaning(key):
    """Every method with a CE term: ``label_smoothing: eps`` turns its CE into the smoothed CE,
    (1 - eps) * CE + eps * mean_k(-log p_k), scaled by whatever weight the method puts on CE."""
    from distillation_studies.learning.methods import build_method
    from distillation_studies.study.schema import parse_method_entry
    from distillation_studies.learning.training import forward_with_features, predict
    from tests.method_checks import tiny_batch, tiny_cnn
    from tests.study.test_schema import env_params

    raw = dict(env_params("tiny_all")["methods"][key] or {})
    batch, eps = tiny_batch(8), 0.3
    terms = []
    for smoothing in (0.0, eps):
        torch.manual_seed(0)
        teacher, student = tiny_cnn((8, 16), 32).eval().requires_grad_(False), tiny_cnn()
        entry = parse_method_entry(key, {**raw, "label_smoothing": smoothing})
        method = build_method(entry.method, entry.config, student, teacher, len(batch.labels))
        student_layers, teacher_layers = method.layers(method.config)
        teacher_out = predict(teacher, batch.inputs, teacher_layers)
        method.prepare(teacher_out, {"x": batch.inputs, "y": batch.labels})
        method.start_epoch(3, 3)  # past warm-ups and first stages
        student_out = forward_with_features(student, batch.inputs, student_layers)
        terms.append((method(student_out, teacher_out, batch)["ce"], student_out.logits.detach()))
    (plain, logits), (smoothed, _) = terms
    log_p = F.log_softmax(logits.double(), dim=1)
    hand_plain = -log_p.gather(1, batch.labels[:, None]).mean()
    hand_smoothed = (1 - eps) * hand_plain + eps * (-log_p.mean(dim=1)).mean()
    assert plain.item() > 0
    assert smoothed.item() / plain.item() == pytest.approx((hand_smoothed / hand_plain).item(), rel=1e-4)
