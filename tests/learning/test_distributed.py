"""Data-parallel training under torch.distributed (gloo, 2 CPU processes) matches one process."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from distillation_studies.learning.data import SplitConfig, load_embedded, stratified_split
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.models import build_model, make_spec
from distillation_studies.learning.training import TrainConfig, train
from tests.labelled_tensors import LabelledTensors

CONFIG = TrainConfig(epochs=2, batch_size=32, optimizer="sgd", lr=0.1, schedule="constant", device="cpu")


def _data():
    splits = stratified_split(load_embedded("digits"), SplitConfig(0.1, 0.2, 0))
    return {"x": splits["train"]["x"][:256], "y": splits["train"]["y"][:256]}, splits["val"]


def _fit(method_name: str, config: dict, streamed: bool = False) -> dict[str, torch.Tensor]:
    train_data, val = _data()
    if streamed:  # through the loop's DataLoader path, as data read from disk would be
        train_data, val = LabelledTensors(train_data), LabelledTensors(val)
    torch.manual_seed(0)
    student = build_model(make_spec({"name": "mlp", "hidden": [16]}, (1, 8, 8), 10))
    teacher = build_model(make_spec({"name": "mlp", "hidden": [32]}, (1, 8, 8), 10))
    method = build_method(method_name, parse_method_config(method_name, config, "m"), student, teacher, 256)
    result = train(student, method, train_data, val, CONFIG, 0, teacher=teacher if method.needs_teacher else None)
    return {**result.last_state, **{f"method.{k}": v for k, v in method.state_dict().items()}}


def _worker(rank: int, world: int, init_file: str, method_name: str, config: dict, queue, streamed: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        # numpy arrays travel by value; tensors would point at shared memory of an exiting process
        queue.put((rank, {name: value.numpy() for name, value in _fit(method_name, config, streamed).items()}))
    finally:
        dist.destroy_process_group()


def _run_two_processes(tmp_path, method_name: str, config: dict, streamed: bool = False) -> dict[int, dict[str, torch.Tensor]]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=_worker, args=(rank, 2, str(tmp_path / "init"), method_name, config, queue, streamed))
        for rank in range(2)
    ]
    for process in processes:
        process.start()
    # A crashed worker must fail the test, not hang it.
    received = [queue.get(timeout=300) for _ in processes]
    results = {rank: {k: torch.from_numpy(v) for k, v in state.items()} for rank, state in received}
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    return results


def test_two_gloo_processes_train_the_same_weights_as_one(tmp_path):
    """Each process takes half of every global batch; averaged gradients give one process's result."""
    # The bare regressor: the published one's BatchNorm sees each process's half batch (no SyncBatchNorm),
    # so only a BatchNorm-free method can match one process exactly.
    config = {"student_layer": "hidden.0", "teacher_layer": "hidden.0", "weight": 1.0, "regressor": "conv"}
    results = _run_two_processes(tmp_path, "fitnet", config)
    single = _fit("fitnet", config)
    for name, value in single.items():
        assert torch.equal(results[0][name], results[1][name]), f"{name} differs between processes"
        assert torch.allclose(results[0][name], value, atol=1e-5), f"{name} differs from single-process training"


def test_two_gloo_processes_reading_a_dataset_train_the_same_weights_as_one_in_memory(tmp_path):
    """The DataLoader path shards each planned batch across processes exactly as the in-memory path does."""
    config = {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}
    results = _run_two_processes(tmp_path, "kd", config, streamed=True)
    single = _fit("kd", config)
    for name, value in single.items():
        assert torch.equal(results[0][name], results[1][name]), f"{name} differs between processes"
        assert torch.allclose(results[0][name], value, atol=1e-5), f"{name} differs from single-process training"
