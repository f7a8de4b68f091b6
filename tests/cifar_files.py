"""Tiny CIFAR-100 files in the real on-disk format (the python version's pickles), for tests.

Torchvision's own CIFAR100 class reads them; only its MD5 comparison must be patched
(:func:`skip_cifar_md5`, the same patch as the ``no_cifar_md5`` fixture of tests/learning/test_vision_data.py),
because hand-written batches cannot match the published checksums.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

FINE_NAMES = [f"class_{i:02d}" for i in range(100)]


def skip_cifar_md5(monkeypatch) -> None:
    """CIFAR10/100 still require every file to exist and still unpickle them; only MD5 is skipped."""
    from torchvision.datasets import cifar, utils

    real = utils.check_integrity
    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: real(fpath, None))


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def write_cifar100(root: Path, train: int = 200, test: int = 100, used_classes: int = 10, seed: int = 0):
    """``root/cifar-100-python/{train,test,meta}`` with balanced labels over the first ``used_classes``.

    Rows are (n, 3072) uint8: 1024 red, 1024 green, 1024 blue values, each plane row-major 32x32.
    Each class's images are brighter in one channel, so a model can learn something in one epoch.
    Returns ``{"train": (rows, labels), "test": (rows, labels)}``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for name, n in (("train", train), ("test", test)):
        fine = [i % used_classes for i in range(n)]
        rows = rng.integers(0, 160, size=(n, 3072), dtype=np.uint8)
        for i, label in enumerate(fine):
            plane = label % 3
            rows[i, plane * 1024 : (plane + 1) * 1024] += np.uint8(10 * (label + 1) % 90)
        _pickle(folder / name, {
            "filenames": [f"{name}_{j}.png" for j in range(n)], "batch_label": f"{name} batch",
            "fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": rows,
        })
        out[name] = (rows, fine)
    _pickle(folder / "meta", {"fine_label_names": FINE_NAMES, "coarse_label_names": [f"super_{i}" for i in range(20)]})
    return out
