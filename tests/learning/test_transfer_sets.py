"""Transfer sets: the label mask reaches every method, and the loop mixes batches as configured."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distillation_studies.learning.methods import METHODS, build_method
from distillation_studies.learning.methods.base import UNLABELLED, Batch
from distillation_studies.learning.training import TrainConfig, _epoch_groups, forward_with_features, predict, train
from distillation_studies.study.schema import parse_method_entry
from tests.method_checks import IN_SHAPE, NUM_CLASSES, tiny_cnn
from tests.study.test_schema import env_params

TINY_ALL = env_params("tiny_all")
N, LABELLED = 12, torch.tensor([True, False, False, True, False, True, False, False, True, False, False, False])


def _method(key: str, num_train: int = N):
    torch.manual_seed(0)
    teacher = tiny_cnn(channels=(8, 16), embed=32).eval().requires_grad_(False)
    student = tiny_cnn(channels=(4, 8), embed=16)
    entry = parse_method_entry(key, TINY_ALL["methods"][key])
    config = entry.config_for(entry.settings[0])
    return build_method(entry.method, config, student, teacher, num_train), student, teacher, config, entry


def _terms(method, student, teacher, batch: Batch) -> dict[str, torch.Tensor]:
    student_layers, teacher_layers = method.layers(method.config)
    teacher_out = predict(teacher, batch.inputs, teacher_layers)
    torch.manual_seed(3)  # methods that draw (CRD's negatives) draw the same in every call
    return method(forward_with_features(student, batch.inputs, student_layers), teacher_out, batch)


def _batches() -> tuple[Batch, Batch, Batch]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N, *IN_SHAPE, generator=generator)
    y = torch.randint(0, NUM_CLASSES, (N,), generator=generator)
    masked = Batch(x, y.masked_fill(~LABELLED, UNLABELLED), torch.arange(N))
    return masked, Batch(x, y, torch.arange(N)), Batch(x[LABELLED], y[LABELLED], torch.arange(N)[LABELLED])


def _usable(key: str) -> bool:
    entry = parse_method_entry(key, TINY_ALL["methods"][key])
    return METHODS[entry.method].unlabelled_use(entry.config)[0] != "refuse"


@pytest.mark.parametrize("key", sorted(k for k in TINY_ALL["methods"] if _usable(k)))
def test_label_terms_see_only_labelled_samples(key):
    """Every method that accepts a transfer set: its label terms on a mixed batch equal those on the
    labelled samples alone, and differ from what the hidden labels would have given."""
    method, student, teacher, _config, _entry = _method(key)
    method.prepare(predict(teacher, _batches()[1].inputs, method.layers(method.config)[1]), {"x": _batches()[1].inputs, "y": _batches()[1].labels})
    method.start_epoch(3, 3)  # past every warm-up and phase 1 (two_stage, fsp)
    method.eval()  # no memory-bank update between the calls (CRD)
    student.eval()  # batch norm on its running statistics: a sample's logits do not depend on its batch
    masked, leaked, labelled_only = _batches()
    got = _terms(method, student, teacher, masked)
    alone = _terms(method, student, teacher, labelled_only)
    with_all_labels = _terms(method, student, teacher, leaked)
    assert method.label_terms <= set(got), f"{key} declares label terms it does not return"
    for term in method.label_terms:
        assert torch.isfinite(got[term]) and torch.allclose(got[term], alone[term], rtol=1e-5, atol=1e-6), term
        if with_all_labels[term].abs() > 1e-6:  # a term switched off (weight 0) cannot show a leak
            assert not torch.allclose(got[term], with_all_labels[term]), f"{key}: {term} ignores the mask"


def test_kd_label_term_is_ce_over_labelled_samples_by_hand():
    """A method whose label term would change if unlabelled samples leaked in: KD's ce_weight * CE."""
    method, student, teacher, config, _ = _method("kd")
    masked, leaked, _ = _batches()
    terms = _terms(method, student, teacher, masked)
    logits = student(masked.inputs)
    expected = config.ce_weight * -F.log_softmax(logits, 1)[LABELLED].gather(1, leaked.labels[LABELLED, None]).mean()
    assert terms["ce"].item() == pytest.approx(expected.item(), rel=1e-5)
    # the soft-target term uses every sample: it differs from its value on the labelled samples alone
    alone = _terms(method, student, teacher, _batches()[2])
    assert not torch.allclose(terms["kd"], alone["kd"])


@pytest.mark.parametrize("key, use", [("ce", "skip"), ("kd", "learn"), ("dkd", "refuse"), ("takd", "refuse"), ("dml", "learn"), ("crd_kd", "learn")])
def test_each_method_declares_what_it_does_with_unlabelled_samples(key, use):
    entry = parse_method_entry(key, TINY_ALL["methods"][key])
    assert METHODS[entry.method].unlabelled_use(entry.config)[0] == use


def test_combine_with_a_refusing_part_refuses_and_names_the_part():
    entry = parse_method_entry("c", {"method": "combine", "parts": {"kd": {"method": "kd"}, "dkd": {"method": "dkd"}}})
    use, reason = METHODS["combine"].unlabelled_use(entry.config)
    assert use == "refuse" and "'dkd'" in reason


def _mask(size: int, labelled: int) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[torch.randperm(size, generator=torch.Generator().manual_seed(1))[:labelled]] = True
    return mask


def test_fixed_batch_mix_puts_k_labelled_samples_in_every_batch():
    mask = _mask(100, 10)
    config = TrainConfig(batch_size=16, labelled_per_batch=4)
    groups = _epoch_groups(100, config, torch.Generator().manual_seed(0), mask)
    assert len(groups) == -(-90 // 12)  # one pass over the 90 unlabelled samples, 12 per batch
    assert all(int(mask[g].sum()) == 4 for g in groups)
    unlabelled = torch.cat([g[~mask[g]] for g in groups])
    assert sorted(unlabelled.tolist()) == (~mask).nonzero().flatten().tolist()  # each exactly once


def test_natural_batch_mix_is_one_shuffled_pass():
    mask = _mask(100, 10)
    groups = _epoch_groups(100, TrainConfig(batch_size=16), torch.Generator().manual_seed(0), mask)
    assert sorted(torch.cat(groups).tolist()) == list(range(100))


def test_labelled_per_batch_must_leave_room_for_unlabelled_samples():
    from distillation_studies.common.config import parse_dataclass
    from distillation_studies.common.errors import ConfigError

    with pytest.raises(ConfigError, match=r"student.training.labelled_per_batch"):
        parse_dataclass(TrainConfig, {"batch_size": 8, "labelled_per_batch": 8}, "student.training")


def test_training_on_a_transfer_set_uses_labels_of_labelled_samples_only():
    """Relabelling the unlabelled samples must not change one trained weight; relabelling a labelled one must."""
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, *IN_SHAPE, generator=generator), torch.randint(0, NUM_CLASSES, (40,), generator=generator)
    mask = _mask(40, 12)
    val = {"x": x[:10], "y": y[:10]}
    config = TrainConfig(epochs=2, batch_size=8, labelled_per_batch=2)

    def fit(labels):
        method, student, teacher, _c, _e = _method("kd", num_train=40)
        result = train(student, method, {"x": x, "y": labels}, val, config, seed=0, teacher=teacher, labelled=mask)
        return result

    base = fit(y)
    relabel_hidden = y.clone()
    relabel_hidden[~mask] = (y[~mask] + 1) % NUM_CLASSES
    relabel_seen = y.clone()
    relabel_seen[mask] = (y[mask] + 1) % NUM_CLASSES
    same = fit(relabel_hidden)
    for name, tensor in base.last_state.items():
        assert torch.equal(tensor, same.last_state[name]), name
    other = fit(relabel_seen)
    assert any(not torch.equal(t, other.last_state[n]) for n, t in base.last_state.items())
    assert all(torch.isfinite(torch.tensor(row["loss_ce"])) for row in base.history)
