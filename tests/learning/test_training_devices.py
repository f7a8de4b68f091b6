"""The loop's device and precision paths: bf16 autocast on the CPU here, CUDA where a GPU is visible."""

import pytest
import torch

from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.training import TrainConfig, train
from tests.method_checks import tiny_cnn
from tests.labelled_tensors import LabelledTensors


def _data(n: int = 64) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"x": torch.randn(n, 1, 8, 8, generator=generator), "y": torch.randint(0, 10, (n,), generator=generator)}


def _fit(**settings):
    torch.manual_seed(0)
    student, teacher = tiny_cnn(), tiny_cnn((8, 16), 32)
    config = {"student_layers": ["features.0"], "teacher_layers": ["features.0"]}
    method = build_method("at", parse_method_config("at", config, "m"), student, teacher, 64)
    result = train(student, method, _data(), _data(32), TrainConfig(epochs=2, batch_size=16, **settings), 0, teacher=teacher)
    return student, result


def test_bf16_autocast_path_trains_on_the_cpu():
    student, result = _fit(device="cpu", precision="bf16")
    assert all(torch.isfinite(torch.tensor(v)) for row in result.history for k, v in row.items() if k.startswith("loss_"))
    assert next(student.parameters()).dtype == torch.float32  # autocast never changes the weights' dtype
    assert all(v.device.type == "cpu" for v in result.best_state.values())


def test_standard_augmentation_recomputes_teacher_outputs_and_stays_deterministic():
    _, first = _fit(device="cpu", augment="standard")
    _, again = _fit(device="cpu", augment="standard")
    assert first.history == again.history


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the AMP/channels-last path)")
def test_cuda_bf16_channels_last_path():
    student, result = _fit(device="cuda", precision="auto", channels_last=True)
    assert all(v.device.type == "cpu" for v in result.best_state.values())  # checkpoints come back to the CPU
    assert next(student.parameters()).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (pinned DataLoader path, evaluation on the GPU)")
def test_cuda_streamed_training_and_evaluation_match_the_cpu():
    """A Dataset read by 2 workers into pinned memory trains on the GPU, augmented there; GPU test
    predictions match the CPU's."""
    from distillation_studies.learning.evaluation import evaluate_model

    torch.manual_seed(0)
    student, teacher = tiny_cnn(), tiny_cnn((8, 16), 32)
    method = build_method("kd", parse_method_config("kd", {}, "m"), student, teacher, 64)
    config = TrainConfig(epochs=2, batch_size=16, device="cuda", precision="fp32", workers=2, augment="standard")
    result = train(student, method, LabelledTensors(_data()), LabelledTensors(_data(32)), config, 0, teacher=teacher)
    assert len(result.history) == 2 and next(student.parameters()).device.type == "cpu"
    summary = {"best_epoch": result.best_epoch, "best_val_accuracy": 0.0, "wall_time_s": 1.0}
    settings = {"ece_bins": 5, "latency_repeats": 2, "throughput_batch": 4}
    on_gpu = evaluate_model(student, student, LabelledTensors(_data(32)), teacher, summary, **settings, device="cuda")
    on_host = evaluate_model(student, student, _data(32), teacher, summary, **settings, device="cpu")
    assert on_gpu["test_accuracy"] == pytest.approx(on_host["test_accuracy"], abs=1 / 32)
    assert on_gpu["test_nll"] == pytest.approx(on_host["test_nll"], rel=1e-3)
