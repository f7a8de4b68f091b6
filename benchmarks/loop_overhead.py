"""Overhead of the project's training loop against a minimal hand-written PyTorch loop.

Times one epoch of `ce`, `kd` and `fitnet` on the default study's data and models, in one process,
through `core.training.train` and through the shortest loop that does the same work (forward,
loss, backward, Adam step per batch, one validation pass per epoch). Prints seconds and ratios.

Run: .venv/bin/python benchmarks/loop_overhead.py [--repeats 5] [--epochs 1]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from distillation_studies.learning.methods import build_method
from distillation_studies.learning.models import build_model
from distillation_studies.learning.training import train

from _study import default_study  # benchmarks/_study.py, beside this script



def hand_written_epoch(student, teacher, method_name, config, data, adapter=None) -> None:
    """The minimal loop: no hooks framework, no history, teacher run per batch under no_grad."""
    params = list(student.parameters()) + (list(adapter.parameters()) if adapter is not None else [])
    optimizer = torch.optim.Adam(params, lr=config.lr)
    x, y = data["train"]["x"], data["train"]["y"]
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    hidden = {}
    handles = []
    if method_name == "fitnet":
        handles.append(student.hidden[0].register_forward_hook(lambda m, i, o: hidden.__setitem__("s", o)))
        handles.append(teacher.embed.register_forward_hook(lambda m, i, o: hidden.__setitem__("t", o)))
    student.train()
    for start in range(0, len(x), config.batch_size):
        idx = order[start : start + config.batch_size]
        logits = student(x[idx])
        loss = F.cross_entropy(logits, y[idx])
        if method_name != "ce":
            with torch.no_grad():
                teacher_logits = teacher(x[idx])
            if method_name == "kd":
                T = 4.0
                kl = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(teacher_logits / T, 1), reduction="batchmean")
                loss = 0.1 * loss + 0.9 * T * T * kl
            else:
                loss = loss + F.mse_loss(adapter(hidden["s"]), hidden["t"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for handle in handles:
        handle.remove()
    student.eval()
    with torch.no_grad():
        (student(data["val"]["x"]).argmax(1) == data["val"]["y"]).float().mean()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed run (teacher caching pays off after the first)")
    args = parser.parse_args()
    study, data = default_study()
    teacher = build_model(study.teacher_spec).eval().requires_grad_(False)
    config = replace(study.student_training, epochs=args.epochs)
    entries = {e.key: e for e in study.methods}

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(
        f"data: {study.data.dataset}, {len(data['train']['y'])} training images, batch {config.batch_size}, "
        f"{args.epochs} epoch(s) per run, median of {args.repeats} runs"
    )
    print(f"{'method':>8} {'project s':>10} {'hand s':>8} {'ratio':>6}")
    for name in ("ce", "kd", "fitnet"):
        project_times, hand_times = [], []
        for _ in range(args.repeats):
            torch.manual_seed(0)
            student = build_model(study.student_spec)
            method = build_method(name, entries[name].config, student, teacher, len(data["train"]["y"]))
            started = time.perf_counter()
            train(student, method, data["train"], data["val"], config, 0, teacher=teacher if method.needs_teacher else None)
            project_times.append(time.perf_counter() - started)

            torch.manual_seed(0)
            student = build_model(study.student_spec)
            adapter = build_method(name, entries[name].config, student, teacher, 1) if name == "fitnet" else None
            started = time.perf_counter()
            for _ in range(args.epochs):
                hand_written_epoch(student, teacher, name, config, data, adapter.adapter if adapter is not None else None)
            hand_times.append(time.perf_counter() - started)
        project, hand = statistics.median(project_times), statistics.median(hand_times)
        print(f"{name:>8} {project:>10.3f} {hand:>8.3f} {project / hand:>6.2f}")


if __name__ == "__main__":
    main()
