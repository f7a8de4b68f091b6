"""Why an arm's MLflow bookkeeping is not moved to a background thread of the process that trains.

Logging the finished arm while the next one trains would hide its cost on a machine with a spare core,
but both would run in one Python process: a training loop of small models releases and retakes the GIL
at every tensor operation, and a thread busy in Python (MLflow's SQLAlchemy store is pure Python) holds
it for up to ``sys.getswitchinterval()`` (5 ms) each time. This trains the default study's student
(digits, mlp, ``ce``, augmentation on) alone, then beside a thread that runs Python code without pause,
and prints both wall times.

Run: .venv/bin/python benchmarks/background_thread.py [--epochs 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from dataclasses import replace

import torch

from distillation_studies.learning.methods import build_method
from distillation_studies.learning.models import build_model
from distillation_studies.learning.training import train

from _study import default_study  # benchmarks/_study.py, beside this script


def busy_python(stop: threading.Event) -> None:
    """Pure-Python work without pause, as a store's ORM code would be while it writes an arm's rows."""
    while not stop.is_set():
        sum(i * i for i in range(2000))


def train_once(study, data, config) -> float:
    torch.manual_seed(0)
    student = build_model(study.student.spec)
    entry = {e.key: e for e in study.methods}["ce"]
    method = build_method("ce", entry.config, student, None, len(data["train"]["y"]))
    started = time.perf_counter()
    train(student, method, data["train"], data["val"], config, seed=0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    study, data = default_study()
    config = replace(study.student.training, epochs=args.epochs, augment="standard", device="cpu")
    train_once(study, data, config)  # warm-up: lazy imports, allocator
    alone = statistics.median(train_once(study, data, config) for _ in range(args.repeats))
    stop = threading.Event()
    thread = threading.Thread(target=busy_python, args=(stop,), daemon=True)
    thread.start()
    try:
        beside = statistics.median(train_once(study, data, config) for _ in range(args.repeats))
    finally:
        stop.set()
        thread.join()
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, 1 torch thread, switch interval {sys.getswitchinterval() * 1e3:.0f} ms")
    print(f"ce, mlp on digits, {args.epochs} epochs, median of {args.repeats}")
    print(f"  training alone:                        {alone:6.2f} s")
    print(f"  training beside a busy Python thread:  {beside:6.2f} s ({beside / alone:.1f}x)")


if __name__ == "__main__":
    main()
