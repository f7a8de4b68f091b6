"""Why an arm's MLflow bookkeeping is not moved to a background thread of the process that trains.

Logging a finished arm while the next one trains would hide its cost on a machine with a spare core, but
both would run in one Python process: a training loop of small models releases and retakes the GIL at
every tensor operation, and MLflow's SQLite store (SQLAlchemy) is Python code that holds it meanwhile.
This trains the default study's student (digits, mlp, ``ce``, augmentation on) for one arm's epochs and
writes one arm's bookkeeping to a fresh MLflow SQLite store (a run, its params, every epoch's metrics in
one ``log_batch`` as ``tracking.runs.NestedRun`` does, the run closed), ``--arms`` times: one after the
other in one thread, then with the writing of each arm in a background thread while the next trains.

Run: .venv/bin/python benchmarks/background_thread.py [--arms 5] [--epochs 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from dataclasses import replace

import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from distillation_studies.learning.methods import build_method
from distillation_studies.learning.models import build_model
from distillation_studies.learning.training import train

from _study import default_study  # benchmarks/_study.py, beside this script


def train_arm(study, data, config, seed: int) -> list[dict[str, float]]:
    torch.manual_seed(seed)
    student = build_model(study.student.spec)
    entry = {e.key: e for e in study.methods}["ce"]
    method = build_method("ce", entry.config, student, None, len(data["train"]["y"]))
    return train(student, method, data["train"], data["val"], config, seed=seed).history


def write_arm(client: MlflowClient, experiment_id: str, history: list[dict[str, float]], seed: int) -> None:
    """One arm's bookkeeping: its run, params, every epoch's metrics in one batch, and its end."""
    run_id = client.create_run(experiment_id, run_name=f"ce/seed_{seed}").info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(f"epoch/{k}", float(v), now, int(row["epoch"])) for row in history for k, v in row.items() if k != "epoch"]
    client.log_batch(run_id, params=[Param(f"training.p{i}", str(i)) for i in range(20)], metrics=metrics)
    client.set_terminated(run_id, "FINISHED")


def one_thread(study, data, config, client, experiment_id, arms: int) -> float:
    started = time.perf_counter()
    for seed in range(arms):
        write_arm(client, experiment_id, train_arm(study, data, config, seed), seed)
    return time.perf_counter() - started


def overlapped(study, data, config, client, experiment_id, arms: int) -> float:
    """Each arm's bookkeeping in a background thread while the next arm trains (joined before the next)."""
    started = time.perf_counter()
    writer: threading.Thread | None = None
    for seed in range(arms):
        history = train_arm(study, data, config, seed)
        if writer is not None:
            writer.join()
        writer = threading.Thread(target=write_arm, args=(client, experiment_id, history, seed))
        writer.start()
    writer.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    study, data = default_study()
    config = replace(study.student.training, epochs=args.epochs, augment="standard", device="cpu")
    with tempfile.TemporaryDirectory(prefix="background_thread_") as folder:
        client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
        experiment_id = client.create_experiment("bookkeeping", artifact_location=f"{folder}/artifacts")
        write_arm(client, experiment_id, train_arm(study, data, config, 0), 0)  # warm-up: imports, the store
        train_started = time.perf_counter()
        history = train_arm(study, data, config, 0)
        train_s = time.perf_counter() - train_started
        write_started = time.perf_counter()
        write_arm(client, experiment_id, history, 0)
        write_s = time.perf_counter() - write_started
        inline = one_thread(study, data, config, client, experiment_id, args.arms)
        background = overlapped(study, data, config, client, experiment_id, args.arms)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, 1 torch thread, switch interval {sys.getswitchinterval() * 1e3:.0f} ms")
    print(f"ce, mlp on digits, {args.epochs} epochs per arm: training {train_s:.2f} s, its MLflow writes {write_s:.2f} s alone")
    print(f"  {args.arms} arms, writes in line:                   {inline:6.2f} s")
    print(f"  {args.arms} arms, writes in a background thread:    {background:6.2f} s ({background / inline:.2f}x)")


if __name__ == "__main__":
    main()
