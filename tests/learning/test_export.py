"""A model behind its normalisation reads raw pixels and predicts what the project predicts on normalised ones."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from distillation_studies.learning.data import normalisation_stats, normalise
from distillation_studies.learning.export import first_images, for_raw_images, raw_pixel_max, to_raw
from distillation_studies.learning.models import build_model, make_spec

TEACHER_LIKE = {"name": "cnn", "channels": [4, 8], "embed": 16}  # conv + BatchNorm, as the teachers


def _trained_looking(spec: dict, shape: tuple[int, ...]) -> torch.nn.Module:
    """A model with non-trivial BatchNorm statistics (a few train-mode passes), then left in train mode."""
    torch.manual_seed(0)
    model = build_model(make_spec(spec, shape, 10))
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape) * 2 + 1)
    return model.train()


def test_raw_uint8_scale_pixels_give_the_projects_predictions():
    torch.manual_seed(1)
    raw01 = torch.rand(32, 3, 8, 8)  # a torchvision dataset's images, already divided by 255
    stats = normalisation_stats(raw01)
    model = _trained_looking(TEACHER_LIKE, (3, 8, 8))
    packaged = for_raw_images(model, stats, pixel_max=255.0)
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(normalise(raw01, stats)), dim=1)
        got = packaged(raw01 * 255.0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.sum(dim=1), torch.ones(32))


def test_the_packaged_copy_is_in_eval_mode_and_leaves_the_model_alone():
    model = _trained_looking(TEACHER_LIKE, (1, 8, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    packaged = for_raw_images(model, {"mean": [0.5], "std": [0.25]})
    assert not packaged.training and not packaged.model.training and model.training
    packaged(torch.rand(4, 1, 8, 8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_to_raw_inverts_the_data_pipelines_normalisation():
    raw = torch.rand(6, 3, 4, 4)
    stats = {"mean": [0.2, 0.4, 0.6], "std": [0.1, 0.2, 0.3]}
    torch.testing.assert_close(to_raw(normalise(raw, stats), stats), raw, rtol=0, atol=1e-6)
    torch.testing.assert_close(to_raw(normalise(raw, stats), stats, pixel_max=255.0), raw * 255.0, rtol=1e-6, atol=1e-4)


def test_exported_program_keeps_a_dynamic_batch_and_the_same_outputs():
    """What MLflow's pt2 format stores: torch.export with the batch dimension dynamic (example batch > 1)."""
    packaged = for_raw_images(_trained_looking(TEACHER_LIKE, (1, 8, 8)), {"mean": [0.3], "std": [0.4]})
    program = torch.export.export(packaged, (torch.rand(4, 1, 8, 8),), dynamic_shapes=[{0: torch.export.Dim.AUTO}])
    images = torch.rand(7, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(images), packaged(images))


def test_pixel_scale_follows_how_the_dataset_stores_raw_images():
    assert raw_pixel_max("cifar10") == raw_pixel_max("mnist") == 255.0  # stored as uint8 0..255
    assert raw_pixel_max("digits") == raw_pixel_max("mnist5k") == 1.0  # floats in [0, 1]


def test_first_images_reads_in_memory_splits_and_datasets_read_from_disk():
    x = torch.arange(10 * 4, dtype=torch.float32).view(10, 1, 2, 2)
    assert torch.equal(first_images({"x": x, "y": torch.zeros(10, dtype=torch.long)}, 3), x[:3])
    assert torch.equal(first_images(TensorDataset(x, torch.zeros(10)), 3), x[:3])  # (image, label) items


def test_pixels_on_another_scale_are_refused_in_words_even_after_export():
    """Digits given as 0..16 instead of [0, 1] would be classified, worse and silently: the model says so."""
    packaged = for_raw_images(_trained_looking(TEACHER_LIKE, (1, 8, 8)), {"mean": [0.3], "std": [0.4]})
    program = torch.export.export(packaged, (torch.rand(4, 1, 8, 8),), dynamic_shapes=[{0: torch.export.Dim.AUTO}])
    edges = torch.tensor([0.0, 1.0, 0.5, 1.0 + 1e-4]).view(4, 1, 1, 1).expand(4, 1, 8, 8).contiguous()
    for forward in (packaged, program.module()):
        assert forward(edges).shape == (4, 10)  # 0 and 1 themselves, and float rounding just above 1
        for wrong in (torch.rand(3, 1, 8, 8) * 16, torch.rand(3, 1, 8, 8) - 0.5):
            with pytest.raises(RuntimeError, match=r"raw pixels must lie in \[0, 1\]"):
                forward(wrong)


def test_the_scale_in_the_refusal_is_the_models_own():
    packaged = for_raw_images(_trained_looking(TEACHER_LIKE, (3, 8, 8)), {"mean": [0.5] * 3, "std": [0.2] * 3}, pixel_max=255.0)
    assert packaged(torch.full((2, 3, 8, 8), 255.0)).shape == (2, 10)
    with pytest.raises(RuntimeError, match=r"\[0, 255\]"):
        packaged(torch.full((2, 3, 8, 8), 300.0))
