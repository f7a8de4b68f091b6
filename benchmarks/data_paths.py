"""Cost of reading images from disk (``data.in_memory: false``) against holding them in memory.

Writes ``--images`` synthetic 32x32 RGB PNGs as an image folder (10 classes) in a temporary
directory, opens it through the project's own path (``load_images(..., in_memory=False)`` then
``prepare_splits``), and measures:

* read rate: images/s of the training loop's DataLoader alone (decode + normalise + collate), by workers;
* training throughput of one model for one epoch through ``core.training.train``: the in-memory
  tensors against the streamed split with 0 and ``--workers`` worker processes; all three train the
  same weights (tests/learning/test_training_data_paths.py), so only time differs.

Run: python benchmarks/data_paths.py --images 2048 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from distillation_studies.learning.data import SplitConfig, load_images, prepare_splits
from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.models import build_model, make_spec
from distillation_studies.learning.streaming import labels_of
from distillation_studies.learning.training import TrainConfig, train

CLASSES = 10


def write_folder(root: Path, images: int) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", images), ("test", max(images // 10, CLASSES))):
        for i in range(count):
            folder = root / split / f"class_{i % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def read_rate(split, batch_size: int, workers: int) -> float:
    loader = DataLoader(split, batch_size=batch_size, num_workers=workers)
    started = time.perf_counter()
    count = sum(len(y) for _, y in loader)
    return count / (time.perf_counter() - started)


def train_seconds(model_name: str, splits: dict, config: TrainConfig) -> float:
    torch.manual_seed(0)
    model = build_model(make_spec({"name": model_name}, (3, 32, 32), CLASSES))
    method = build_method("ce", parse_method_config("ce", {}, "ce"), model, None, len(labels_of(splits["train"])))
    started = time.perf_counter()
    train(model, method, splits["train"], splits["val"], config, seed=0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="resnet8x4", help="a registered model taking 3x32x32 inputs")
    args = parser.parse_args()
    split = SplitConfig(val_fraction=0.1, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_folder(root, args.images)
        in_memory, _ = prepare_splits(load_images("image_folder", root, image_size=32), "image_folder", split)
        streamed, _ = prepare_splits(load_images("image_folder", root, image_size=32, in_memory=False), "image_folder", split)
        train_images = len(streamed["train"])
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {train_images} training PNGs (32x32 RGB)")
        for workers in sorted({0, args.workers}):
            print(f"read rate, {workers} workers: {read_rate(streamed['train'], args.batch_size, workers):9.1f} images/s")
        base = {"epochs": 1, "batch_size": args.batch_size, "optimizer": "sgd", "lr": 0.05, "schedule": "constant", "device": "cpu"}
        runs = [("in memory", in_memory, 0), ("streamed, 0 workers", streamed, 0)]
        if args.workers:
            runs.append((f"streamed, {args.workers} workers", streamed, args.workers))
        train_seconds(args.model, in_memory, TrainConfig(**base))  # warm-up: allocator, lazy init
        for label, splits, workers in runs:
            seconds = train_seconds(args.model, splits, TrainConfig(**base, workers=workers))
            print(f"train {args.model}, {label:22s} {train_images / seconds:9.1f} images/s ({seconds:.2f} s incl. validation)")


if __name__ == "__main__":
    main()
