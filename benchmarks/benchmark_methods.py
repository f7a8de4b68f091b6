"""Training cost of every method of a CIFAR-100 benchmark environment, on its real architectures.

Reads `conf/<env>/parameters.yml` (default `cifar100_benchmark`: resnet32x4 -> resnet8x4), builds its
teacher and student and every method with the environment's own settings, and trains each student
for one epoch on `--images` synthetic CIFAR-100-shaped images through the project's loop, with the
environment's optimiser, batch size and augmentation (so the teacher runs on every batch, as in the
real study). The teacher is untrained: cost does not depend on its weights.

Prints each method's training throughput (images/s, validation on 64 images included; one ce epoch
on 64 images warms up first) and what
the environment's full protocol (epochs x 45,000 training images x seeds) would take at that rate.
That projection is a straight extrapolation from one short epoch, not a measurement of the study.

Run: python benchmarks/benchmark_methods.py --device cpu --images 256
     python benchmarks/benchmark_methods.py --device cuda --images 8192
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from distillation_studies.common.config import parse_dataclass
from distillation_studies.learning.methods import build_method
from distillation_studies.learning.models import build_model, make_spec
from distillation_studies.study.schema import parse_method_entry
from distillation_studies.learning.training import TrainConfig, resolve_device, train
from throughput import CLASSES, SHAPE, synthetic  # benchmarks/throughput.py, beside this script

CONF = Path(__file__).resolve().parents[1] / "conf"
TRAIN_IMAGES = 45_000  # CIFAR-100 less the 10% validation hold-out


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:8.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="cifar100_benchmark")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps", "auto"])
    parser.add_argument("--images", type=int, default=256)
    args = parser.parse_args()
    params = yaml.safe_load((CONF / args.env / "parameters.yml").read_text())
    device = resolve_device(args.device)
    student_training = {**params["student"]["training"], "device": args.device, "epochs": 1}
    for key in ("schedule", "milestones", "gamma"):  # a one-epoch run has no milestone to decay at
        student_training.pop(key, None)
    config = parse_dataclass(TrainConfig, {**student_training, "schedule": "constant"}, f"{args.env}.student.training")
    epochs, seeds = params["student"]["training"]["epochs"], len(params["seeds"])
    teacher = build_model(make_spec(params["teacher"]["model"], SHAPE, CLASSES))
    data, val = synthetic(args.images, 0), synthetic(64, 1)
    name = torch.cuda.get_device_name() if device.type == "cuda" else device.type
    print(f"{args.env}: {params['teacher']['model']['name']} -> {params['student']['model']['name']}, device {name}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"one epoch of {args.images} synthetic images, batch {config.batch_size}, {config.optimizer}, augment {config.augment}")
    print(f"{'method':>9} {'images/s':>9}  full protocol ({epochs} epochs x {TRAIN_IMAGES} images x {seeds} seeds)")
    torch.manual_seed(0)
    warm = build_model(make_spec(params["student"]["model"], SHAPE, CLASSES))
    warm_data = {"x": data["x"][:64], "y": data["y"][:64]}
    train(warm, build_method("ce", parse_method_entry("ce", {}).config, warm, None, 64), warm_data, val, config, 0)
    total = 0.0
    for key, raw in params["methods"].items():
        entry = parse_method_entry(key, raw)
        torch.manual_seed(0)
        student = build_model(make_spec(params["student"]["model"], SHAPE, CLASSES))
        method = build_method(entry.method, entry.config, student, teacher, args.images, f"methods.{key}")
        started = time.perf_counter()
        train(student, method, data, val, config, 0, teacher=teacher if method.needs_teacher else None)
        rate = args.images / (time.perf_counter() - started)
        projected = epochs * TRAIN_IMAGES * seeds / rate
        total += projected
        print(f"{key:>9} {rate:9.1f}  {_hours(projected)}", flush=True)
    print(f"{'all':>9} {'':9}  {_hours(total)} (students only; add the teacher's own run)")


if __name__ == "__main__":
    main()
