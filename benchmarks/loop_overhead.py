"""Per-batch overhead of the project's training loop against a bare hand-written PyTorch loop.

Trains the default study's student (digits, mlp) for ``--epochs`` epochs with `ce`, `kd` and `fitnet`,
augmentation on (so the teacher runs on every batch, as with any augmented study), once through
``learning.training.train`` and once through the shortest loop that does the same work: the same
batch order, augmentation, forward passes, loss, backward, Adam step, cosine schedule step per
batch and one validation pass per epoch, with no history, hooks framework or bookkeeping. The two
runs alternate (project, bare, project, bare, ...) so a load change on the machine hits both; the
median of ``--repeats`` pairs is reported, with the overhead per batch, in wall seconds and in the
process's CPU seconds (with one torch thread, CPU time is the steadier figure on a shared machine).

Run: .venv/bin/python benchmarks/loop_overhead.py [--repeats 5] [--epochs 60] [--threads 1] [--methods ce kd fitnet]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from distillation_studies.learning.methods import build_method
from distillation_studies.learning.models import build_model
from distillation_studies.learning.training import TrainConfig, train
from distillation_studies.learning.vision_data import standard_augmentation

from _study import default_study  # benchmarks/_study.py, beside this script

METHODS = ("ce", "kd", "fitnet")


def bare_loop(student, teacher, method_name, config: TrainConfig, data, seed: int, adapter=None) -> None:
    """The minimal loop doing the project loop's work: no history, no hooks framework, no bookkeeping."""
    params = list(student.parameters()) + (list(adapter.parameters()) if adapter is not None else [])
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    x, y = data["train"]["x"], data["train"]["y"]
    steps = config.epochs * math.ceil(len(x) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    generator = torch.Generator().manual_seed(seed)
    augment = standard_augmentation()
    hidden = {}
    handles = []
    if method_name == "fitnet":
        handles.append(student.hidden[0].register_forward_hook(lambda m, i, o: hidden.__setitem__("s", o)))
        handles.append(teacher.embed.register_forward_hook(lambda m, i, o: hidden.__setitem__("t", o)))
    for _ in range(config.epochs):
        student.train()
        for idx in torch.randperm(len(x), generator=generator).split(config.batch_size):
            inputs, labels = augment(x[idx], generator), y[idx]
            logits = student(inputs)
            loss = F.cross_entropy(logits, labels)
            if method_name != "ce":
                with torch.no_grad():
                    teacher_logits = teacher(inputs)
                if method_name == "kd":
                    t = 4.0
                    log_s, log_t = F.log_softmax(logits / t, 1), F.log_softmax(teacher_logits / t, 1)
                    loss = 0.1 * loss + 0.9 * t * t * F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)
                else:
                    loss = loss + F.mse_loss(adapter(hidden["s"]), hidden["t"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        student.eval()
        with torch.no_grad():
            (student(data["val"]["x"]).argmax(1) == data["val"]["y"]).float().mean().item()
    for handle in handles:
        handle.remove()


def _timed(run) -> tuple[float, float]:
    """(wall s, process CPU s) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_pair(name, study, data, teacher, config, seed) -> tuple[tuple[float, float], tuple[float, float]]:
    """(wall, CPU) seconds of one project run and of one bare run of ``name``, from the same initial weights."""
    entry = {e.key: e for e in study.methods}[name]
    torch.manual_seed(seed)
    student = build_model(study.student.spec)
    method = build_method(name, entry.config, student, teacher, len(data["train"]["y"]))
    needed = teacher if method.needs_teacher else None
    project = _timed(lambda: train(student, method, data["train"], data["val"], config, seed, teacher=needed))

    torch.manual_seed(seed)
    student = build_model(study.student.spec)
    adapter = build_method(name, entry.config, student, teacher, 1).adapter if name == "fitnet" else None
    return project, _timed(lambda: bare_loop(student, teacher, name, config, data, seed, adapter))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    study, data = default_study()
    teacher = build_model(study.teacher.spec).eval().requires_grad_(False)
    config = replace(study.student.training, epochs=args.epochs, augment="standard", schedule="cosine", device="cpu")
    batches = args.epochs * math.ceil(len(data["train"]["y"]) / config.batch_size)

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(
        f"data: {study.data.dataset}, {len(data['train']['y'])} training images, batch {config.batch_size}, "
        f"{args.epochs} epochs ({batches} batches) per run, augmentation on (teacher per batch), "
        f"project and bare runs interleaved, median of {args.repeats}"
    )
    print(f"{'':>8} {'wall s':>25} {'CPU s':>25} {'CPU overhead':>13}")
    print(f"{'method':>8} {'project':>8} {'bare':>8} {'ratio':>7} {'project':>8} {'bare':>8} {'ratio':>7} {'ms/batch':>13}")
    for name in args.methods:
        pairs = [time_pair(name, study, data, teacher, config, seed) for seed in range(args.repeats)]
        wall = [statistics.median(p[0] for p, _ in pairs), statistics.median(b[0] for _, b in pairs)]
        cpu = [statistics.median(p[1] for p, _ in pairs), statistics.median(b[1] for _, b in pairs)]
        print(
            f"{name:>8} {wall[0]:>8.2f} {wall[1]:>8.2f} {wall[0] / wall[1]:>7.3f} {cpu[0]:>8.2f} {cpu[1]:>8.2f} "
            f"{cpu[0] / cpu[1]:>7.3f} {1e3 * (cpu[0] - cpu[1]) / batches:>13.3f}"
        )

if __name__ == "__main__":
    main()
