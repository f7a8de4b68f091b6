"""Every method of the `tiny_all` study for one short epoch on a device: proves the loop's device path.

Runs the core loop directly (no Kedro needed) on synthetic 1x28x28 data with the tiny_all methods'
settings re-targeted at 28x28 CNNs, and prints each method's loss terms and seconds.

Run: python benchmarks/device_check.py --device cuda
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from distillation_studies.learning.methods import build_method
from distillation_studies.learning.models import build_model, make_spec
from distillation_studies.study.schema import parse_method_entry
from distillation_studies.learning.training import TrainConfig, train

CONF = Path(__file__).resolve().parents[1] / "conf" / "tiny_all" / "parameters.yml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    data = {"x": torch.randn(args.images, 1, 28, 28, generator=generator), "y": torch.randint(0, 10, (args.images,), generator=generator)}
    val = {"x": data["x"][:128], "y": data["y"][:128]}
    teacher = build_model(make_spec({"name": "cnn", "channels": [16, 32], "embed": 64}, (1, 28, 28), 10))
    methods = yaml.safe_load(CONF.read_text())["methods"]
    config = TrainConfig(epochs=3, batch_size=64, device=args.device)
    for key, raw in methods.items():
        entry = parse_method_entry(key, raw)
        torch.manual_seed(0)
        student = build_model(make_spec({"name": "cnn", "channels": [8, 16], "embed": 32}, (1, 28, 28), 10))
        method = build_method(entry.method, entry.config, student, teacher, len(data["y"]), f"methods.{key}")
        started = time.perf_counter()
        result = train(student, method, data, val, config, 0, teacher=teacher if method.needs_teacher else None)
        terms = {k: round(v, 4) for k, v in result.history[-1].items() if k.startswith("loss_")}
        print(f"{key:>11} {time.perf_counter() - started:6.2f} s  {terms}", flush=True)
    print(f"all {len(methods)} methods ran on {args.device}")


if __name__ == "__main__":
    main()
