"""Training throughput (images/s) of resnet8x4 through the project's loop against a minimal loop.

Synthetic CIFAR-100-shaped data (3x32x32, 100 classes): throughput does not depend on pixel values.
`--method kd` adds a resnet32x4 teacher (its logits cached once by the project's loop, computed per
batch by the minimal loop, as each would do without augmentation). On CUDA both loops use bf16
autocast and channels-last. Prints images/s of each and the ratio.

Run: python benchmarks/throughput.py --device cpu --images 1024
     python benchmarks/throughput.py --device cuda --images 50000 --epochs 2
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.models import build_model, make_spec
from distillation_studies.learning.training import TrainConfig, resolve_device, train

SHAPE, CLASSES = (3, 32, 32), 100


def synthetic(n: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, *SHAPE, generator=generator), "y": torch.randint(0, CLASSES, (n,), generator=generator)}


def minimal_loop(model, teacher, data, config, device) -> float:
    """Forward, CE (+KD), backward, SGD step per batch: what a hand-written script does."""
    cuda = device.type == "cuda"
    layout = torch.channels_last if cuda else torch.contiguous_format
    model.to(device, memory_format=layout).train()
    if teacher is not None:
        teacher.to(device, memory_format=layout).eval()
    x, y = data["x"].to(device, memory_format=layout), data["y"].to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=5e-4)
    _sync(device)
    started = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(len(x), device=device)
        for start in range(0, len(x), config.batch_size):
            idx = order[start : start + config.batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(x[idx])
                loss = F.cross_entropy(logits, y[idx])
                if teacher is not None:
                    with torch.no_grad():
                        soft = F.softmax(teacher(x[idx]).float() / 4.0, dim=1)
                    loss = 0.1 * loss + 0.9 * 16.0 * F.kl_div(F.log_softmax(logits.float() / 4.0, 1), soft, reduction="batchmean")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _sync(device)
    return time.perf_counter() - started


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps", "auto"])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--method", default="ce", choices=["ce", "kd"])
    args = parser.parse_args()
    device = resolve_device(args.device)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer="sgd", lr=0.05, weight_decay=5e-4, schedule="constant", device=args.device)
    data, val = synthetic(args.images, 0), synthetic(256, 1)
    spec = lambda name: make_spec({"name": name}, SHAPE, CLASSES)  # noqa: E731
    teacher = build_model(spec("resnet32x4")) if args.method == "kd" else None

    # Warm-up: one short run of each loop (cuDNN autotuning, allocator, lazy init).
    warm = {"x": data["x"][: 4 * args.batch_size], "y": data["y"][: 4 * args.batch_size]}
    torch.manual_seed(0)
    student = build_model(spec("resnet8x4"))
    train(student, build_method(args.method, parse_method_config(args.method, {}, "m"), student, teacher or build_model(spec("resnet8x4")), len(warm["y"])), warm, val, TrainConfig(**{**vars(config), "epochs": 1}), 0, teacher=teacher)
    minimal_loop(build_model(spec("resnet8x4")), teacher, warm, TrainConfig(**{**vars(config), "epochs": 1}), device)

    torch.manual_seed(0)
    student = build_model(spec("resnet8x4"))
    method = build_method(args.method, parse_method_config(args.method, {}, "m"), student, teacher or build_model(spec("resnet8x4")), len(data["y"]))
    _sync(device)
    started = time.perf_counter()
    train(student, method, data, val, config, 0, teacher=teacher)
    _sync(device)
    project = time.perf_counter() - started
    torch.manual_seed(0)
    hand = minimal_loop(build_model(spec("resnet8x4")), teacher, data, config, device)

    images = args.images * args.epochs
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}, threads {torch.get_num_threads()}, method {args.method}")
    print(f"resnet8x4, {args.images} images x {args.epochs} epoch(s), batch {args.batch_size}")
    print(f"project loop: {images / project:9.1f} images/s ({project:.2f} s, incl. teacher caching and validation)")
    print(f"minimal loop: {images / hand:9.1f} images/s ({hand:.2f} s)")
    print(f"ratio (project / minimal throughput): {hand / project:.2f}")


if __name__ == "__main__":
    main()
