"""Real-scale image datasets through torchvision, batched augmentation and a DataLoader path.

``load_vision_dataset`` reads MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 (torchvision's own dataset
classes, from the files in their published on-disk formats) or an image folder, and returns
``{"train": {"x", "y"}, "test": {"x", "y"}, "classes": [...]}`` with ``x`` float32 (N, C, H, W) in
[0, 1] and ``y`` int64, the same shape of data as :func:`distillation_studies.learning.data.load_embedded`.
Validation data is for the caller to split off the training set (``stratified_split`` or similar),
so the published test set stays untouched.

Expected layout under ``root``:

* ``mnist``: ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (un-gzipped IDX files).
* ``fashion_mnist``: the same four names under ``root/FashionMNIST/raw/``.
* ``cifar10``: ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (python version).
* ``cifar100``: ``root/cifar-100-python/{train, test, meta}`` (python version).
* ``image_folder``: ``root/train/<class>/<image>`` and ``root/test/<class>/<image>``; classes are the
  sorted ``train`` subfolder names, ``test`` may hold a subset of them; every image is converted to
  ``channels`` (1: grayscale, 3: RGB; by default the first training image's: :func:`image_folder_channels`)
  and resized to ``image_size`` x ``image_size``.

Torchvision verifies the CIFAR files against the published MD5 sums (the MNIST raw files are only
checked for existence). Any missing, corrupt or unreadable file raises :class:`DataError` naming the
file or folder and how to obtain it.

Data that should not be held in memory goes through :func:`open_vision_split` (a lazy torch ``Dataset``),
wrapped by :class:`distillation_studies.learning.streaming.StreamedSplit`, and :class:`IndexedDataset`
(adds each sample's index, for methods such as CRD) inside the training loop's DataLoader.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from distillation_studies.common.config import require_choice
from distillation_studies.common.errors import ConfigError, DataError

VISION_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder")
SPLITS = ("train", "test")

# Published per-channel statistics of each training set, in the format ``data.normalise`` takes.
# CIFAR stds are the population stds of the training pixels (not the often-copied 0.2023/0.1994/0.2010).
STANDARD_NORMALISATION: dict[str, dict[str, list[float]]] = {
    "mnist": {"mean": [0.1307], "std": [0.3081]},
    "fashion_mnist": {"mean": [0.2860], "std": [0.3530]},
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
    "cifar100": {"mean": [0.5071, 0.4865, 0.4409], "std": [0.2673, 0.2564, 0.2762]},
}

# What torchvision's readers raise on a missing or corrupt file: its own RuntimeError, OS errors,
# truncated or foreign pickles, and the bare asserts / shape errors of the IDX reader.
_READ_ERRORS = (
    RuntimeError,
    OSError,
    EOFError,
    pickle.UnpicklingError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    AssertionError,
)

_HOWTO = {
    "mnist": (
        "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz from https://ossci-datasets.s3.amazonaws.com/mnist/ and gunzip them into "
        "{folder}, or set download: true where internet is available"
    ),
    "fashion_mnist": (
        "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz from https://github.com/zalandoresearch/fashion-mnist "
        "(http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/) and gunzip them into {folder}, "
        "or set download: true where internet is available"
    ),
    "cifar10": (
        "download the CIFAR-10 python version (cifar-10-python.tar.gz) from "
        "https://www.cs.toronto.edu/~kriz/cifar.html and extract it under {root} (giving {folder}), "
        "or set download: true where internet is available"
    ),
    "cifar100": (
        "download the CIFAR-100 python version (cifar-100-python.tar.gz) from "
        "https://www.cs.toronto.edu/~kriz/cifar.html and extract it under {root} (giving {folder}), "
        "or set download: true where internet is available"
    ),
    "image_folder": (
        "put the images in {root}/train/<class_name>/ and {root}/test/<class_name>/ "
        "(one subfolder per class, files such as .png or .jpg); download: true does not apply"
    ),
}


@dataclass(frozen=True)
class VisionDataConfig:
    """Which torchvision dataset to read, from where; ``image_size`` only for ``image_folder``."""

    name: str = ""
    root: str = "data/01_raw"
    download: bool = False
    image_size: int | None = None
    channels: int | None = None  # image_folder: 1 (grayscale) or 3 (RGB); None: as the first training image

    def check(self, where: str = "data") -> None:
        if self.name == "":
            raise ConfigError(f"{where}.name: required; allowed values: {list(VISION_DATASETS)}")
        require_choice(self, where, "name", list(VISION_DATASETS))
        if not isinstance(self.root, (str, os.PathLike)) or str(self.root) == "":
            raise ConfigError(f"{where}.root: required (the folder holding the dataset files), got {self.root!r}")
        if not isinstance(self.download, bool):
            raise ConfigError(f"{where}.download: expected true or false, got {self.download!r}")
        size = self.image_size
        if self.name == "image_folder":
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise ConfigError(
                    f"{where}.image_size: required for name: image_folder, a positive integer "
                    f"(images are resized to image_size x image_size), got {size!r}"
                )
            if self.download:
                raise ConfigError(f"{where}.download: image_folder cannot be downloaded; set download: false")
            check_image_channels(self.channels, f"{where}.channels")
        elif self.channels is not None:
            raise ConfigError(f"{where}.channels: only applies to name: image_folder, got {self.channels!r}")
        elif size is not None:
            raise ConfigError(
                f"{where}.image_size: only applies to name: image_folder; remove it for {self.name} "
                f"(its images keep their published size), got {size!r}"
            )


# ---------------------------------------------------------------------------------------------
# Loading


def _torchvision_class(name: str):
    from torchvision import datasets

    return {
        "mnist": datasets.MNIST,
        "fashion_mnist": datasets.FashionMNIST,
        "cifar10": datasets.CIFAR10,
        "cifar100": datasets.CIFAR100,
    }[name]


def _folder(config: VisionDataConfig) -> Path:
    """The folder whose files the dataset needs, for messages."""
    root = Path(config.root)
    if config.name == "image_folder":
        return root
    cls = _torchvision_class(config.name)
    if config.name in ("mnist", "fashion_mnist"):
        return root / cls.__name__ / "raw"
    return root / cls.base_folder


def _howto(config: VisionDataConfig) -> str:
    return _HOWTO[config.name].format(root=Path(config.root), folder=_folder(config))


def _data_error(config: VisionDataConfig, where: str, path: Path | str, reason: str) -> DataError:
    return DataError(f"{where}.root: {path} {reason}; {_howto(config)}")


def _first_problem_cifar(config: VisionDataConfig, train: bool) -> tuple[Path, str] | None:
    """The first file torchvision's CIFAR reader would reject, and why, checked the way it checks."""
    from torchvision.datasets import cifar

    cls = _torchvision_class(config.name)
    folder = _folder(config)
    listed = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    for filename, _ in listed:
        if not (folder / filename).is_file():
            return folder / filename, "not found"
    for filename, md5 in listed:
        # Looked up on the module at call time, exactly as CIFAR10._check_integrity and _load_meta do.
        if not cifar.check_integrity(str(folder / filename), md5):
            return folder / filename, f"is corrupt: its MD5 checksum is not the published {md5}"
    wanted = [(name, ("labels", "fine_labels"), "data") for name, _ in (cls.train_list if train else cls.test_list)]
    wanted.append((cls.meta["filename"], (cls.meta["key"],), None))
    for filename, label_keys, data_key in wanted:
        path = folder / filename
        try:
            with open(path, "rb") as handle:
                entry = pickle.load(handle, encoding="latin1")
        except _READ_ERRORS as exc:
            return path, f"is corrupt: not a readable CIFAR python pickle ({type(exc).__name__}: {exc})"
        if not isinstance(entry, Mapping) or not any(key in entry for key in label_keys):
            return path, f"is corrupt: the pickle has no {' or '.join(label_keys)!s} entry"
        if data_key is not None and data_key not in entry:
            return path, f"is corrupt: the pickle has no {data_key} entry"
    return None


def _mnist_files(config: VisionDataConfig, train: bool) -> tuple[Path, Path]:
    folder = _folder(config)
    prefix = "train" if train else "t10k"
    return folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte"


def _first_problem_mnist(config: VisionDataConfig, train: bool) -> tuple[Path, str] | None:
    """The first IDX file torchvision's MNIST reader would reject, and why."""
    from torchvision.datasets import mnist

    for split_is_train in (True, False):  # torchvision requires all four files whichever split is read
        for path in _mnist_files(config, split_is_train):
            if not path.is_file():
                return path, "not found"
    images, labels = _mnist_files(config, train)
    for path, reader in ((images, mnist.read_image_file), (labels, mnist.read_label_file)):
        try:
            reader(str(path))
        except _READ_ERRORS as exc:
            # The IDX reader's bare asserts check the magic number (dimension count and element type).
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else "bad IDX magic number in the header"
            return path, f"is corrupt: not a readable IDX file ({detail})"
    return None


IMAGE_CHANNELS = (1, 3)
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})  # PIL modes of one colour band


def check_image_channels(channels: Any, where: str) -> None:
    if channels is not None and (isinstance(channels, bool) or channels not in IMAGE_CHANNELS):
        raise ConfigError(f"{where}: 1 (grayscale), 3 (RGB) or null (as the first training image), got {channels!r}")


def image_folder_channels(root: str | os.PathLike, channels: int | None = None) -> int:
    """``channels`` if set, else 1 when the first training image (classes and files in sorted order, as
    torchvision's ImageFolder reads them) is grayscale, 3 otherwise or when there is none yet.

    Only the image's header is read, so a study is sized before any pixel is loaded; every image is
    then converted to this many channels (a colour image in a grayscale folder becomes grayscale).
    """
    if channels is not None:
        return int(channels)
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    train = Path(root) / "train"
    for folder in sorted(p for p in train.iterdir() if p.is_dir()) if train.is_dir() else []:
        for directory, subfolders, files in sorted(os.walk(folder, followlinks=True)):
            subfolders.sort()
            for name in sorted(f for f in files if f.lower().endswith(IMG_EXTENSIONS)):
                try:
                    with Image.open(Path(directory) / name) as image:
                        return 1 if image.mode in GRAYSCALE_MODES else 3
                except _READ_ERRORS:
                    continue  # named when it is loaded
    return 3


def _checked_image_loader(path: str, mode: str = "RGB") -> Any:
    """A PIL loader converting to ``mode`` ("L" or "RGB"), failing with a DataError that names the file."""
    from PIL import Image

    try:
        with open(path, "rb") as file:
            return Image.open(file).convert(mode)
    except _READ_ERRORS as exc:
        raise DataError(f"{path} is not a readable image ({type(exc).__name__}: {exc})") from exc


def _to_float(image: Any, size: int | None = None) -> Tensor:
    """PIL image -> float32 (C, H, W) in [0, 1], resized to ``size`` x ``size`` when given."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    if size is not None and image.size != (size, size):
        image = TF.resize(image, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return TF.pil_to_tensor(image).float().div_(255.0)


def _remap_target(target: int, mapping: tuple[int, ...]) -> int:
    return mapping[target]


def _check_no_empty_class(config: VisionDataConfig, where: str, split_dir: Path) -> None:
    """A class folder without a single image is named (torchvision only says "no valid file")."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if not any(f.is_file() and f.name.lower().endswith(IMG_EXTENSIONS) for f in folder.rglob("*")):
            raise _data_error(
                config, where, folder, f"is an empty class folder (no {', '.join(IMG_EXTENSIONS)} file); add images or remove it"
            )


def _open_image_folder(config: VisionDataConfig, split: str, where: str) -> Dataset:
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import find_classes

    root = Path(config.root)
    train_dir, split_dir = root / "train", root / split
    for folder in dict.fromkeys((train_dir, split_dir)):
        if not folder.is_dir():
            raise _data_error(config, where, folder, "not found")
    transform = partial(_to_float, size=config.image_size)
    classes = None
    if split != "train":
        try:
            classes, _ = find_classes(str(train_dir))
        except FileNotFoundError as exc:
            raise _data_error(config, where, train_dir, f"holds no class folder ({exc})") from exc
    _check_no_empty_class(config, where, split_dir)
    try:
        mode = "L" if image_folder_channels(root, config.channels) == 1 else "RGB"
        dataset = ImageFolder(str(split_dir), transform=transform, loader=partial(_checked_image_loader, mode=mode))
    except (FileNotFoundError, ValueError) as exc:
        raise _data_error(config, where, split_dir, f"holds no usable class folder of images ({exc})") from exc
    if classes is not None:
        unknown = sorted(set(dataset.classes) - set(classes))
        if unknown:
            raise _data_error(
                config, where, split_dir / unknown[0], f"is a class folder missing from {train_dir} (train classes: {classes})"
            )
        dataset.target_transform = partial(_remap_target, mapping=tuple(classes.index(c) for c in dataset.classes))
        dataset.classes = classes
        dataset.class_to_idx = {name: i for i, name in enumerate(classes)}
    return dataset


def open_vision_split(config: VisionDataConfig, split: str, where: str = "data") -> Dataset:
    """The ``split`` ("train" or "test") as a torch Dataset of (float (C, H, W) in [0, 1], int label).

    Lazy for ``image_folder`` (images are read on access), so it suits a DataLoader for data
    that does not fit in memory; the torchvision CIFAR/MNIST classes hold their arrays in memory.
    """
    config.check(where)
    if split not in SPLITS:
        raise ConfigError(f"split: unknown value {split!r}; allowed values: {list(SPLITS)}")
    if config.name == "image_folder":
        return _open_image_folder(config, split, where)
    train = split == "train"
    cls = _torchvision_class(config.name)
    try:
        return cls(str(config.root), train=train, download=config.download, transform=_to_float)
    except DataError:
        raise
    except _READ_ERRORS as exc:
        if config.name in ("cifar10", "cifar100"):
            problem = _first_problem_cifar(config, train)
        else:
            problem = _first_problem_mnist(config, train)
        if problem is None:
            raise _data_error(
                config, where, _folder(config), f"could not be read ({type(exc).__name__}: {exc})"
            ) from exc
        raise _data_error(config, where, *problem) from exc


def _check_sizes(config: VisionDataConfig, dataset: Any, where: str) -> None:
    """Images and labels of a split agree in number (torchvision does not check it), and there are some."""
    if config.name in ("mnist", "fashion_mnist"):
        if len(dataset.data) != len(dataset.targets):
            image_file, label_file = _mnist_files(config, dataset.train)
            raise _data_error(
                config, where, label_file, f"holds {len(dataset.targets)} labels but {image_file} holds {len(dataset.data)} images"
            )
    elif config.name in ("cifar10", "cifar100"):
        if len(dataset.data) != len(dataset.targets):
            raise _data_error(
                config, where, _folder(config),
                f"holds {len(dataset.targets)} labels but {len(dataset.data)} images",
            )
    elif len(dataset) == 0:
        raise _data_error(config, where, dataset.root, "holds no images")


def dataset_labels(config: VisionDataConfig, dataset: Any, where: str = "data") -> Tensor:
    """Every label of an opened split as int64, without reading an image (image folders: remapped to train classes)."""
    _check_sizes(config, dataset, where)
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    remap = getattr(dataset, "target_transform", None) if config.name == "image_folder" else None
    if remap is not None:
        labels = torch.tensor([remap(int(label)) for label in labels], dtype=torch.int64)
    return labels


def check_labels(config: VisionDataConfig, split: str, labels: Tensor, num_classes: int, where: str = "data") -> None:
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise _data_error(
            config, where, _folder(config),
            f"holds {split} labels outside 0..{num_classes - 1} (the {num_classes} classes)",
        )


def _materialise(config: VisionDataConfig, dataset: Any, where: str) -> dict[str, Tensor]:
    """All of a split as tensors: vectorised from torchvision's arrays, per image for image folders."""
    y = dataset_labels(config, dataset, where)
    if config.name in ("mnist", "fashion_mnist"):
        x = dataset.data.unsqueeze(1).float().div_(255.0)
    elif config.name in ("cifar10", "cifar100"):
        x = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    else:
        x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return {"x": x, "y": y}


def load_vision_dataset(config: VisionDataConfig, where: str = "data") -> dict[str, Any]:
    """Both published splits in memory: ``{"train": {"x", "y"}, "test": {"x", "y"}, "classes": [...]}``."""
    config.check(where)
    out: dict[str, Any] = {}
    classes: list[str] = []
    for split in SPLITS:
        dataset = open_vision_split(config, split, where)
        out[split] = _materialise(config, dataset, where)
        classes = list(dataset.classes)
    for split in SPLITS:
        check_labels(config, split, out[split]["y"], len(classes), where)
    out["classes"] = classes
    return out


# ---------------------------------------------------------------------------------------------
# Augmentation


@dataclass(frozen=True)
class RandomCropFlip:
    """Batched random crop after zero padding by ``padding`` pixels, then random horizontal flip.

    Every random number comes from the given generator (on its own device), so the same generator
    state gives the same output; the crop offsets and flips are drawn per sample, in one call each.
    """

    padding: int = 4
    flip: bool = True

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, _, height, width = x.shape
        out = x
        if self.padding > 0:
            p = self.padding
            offsets = torch.randint(0, 2 * p + 1, (2, n), generator=generator, device=generator.device).to(x.device)
            padded = F.pad(x, (p, p, p, p))
            rows = offsets[0][:, None] + torch.arange(height, device=x.device)  # (n, H)
            cols = offsets[1][:, None] + torch.arange(width, device=x.device)  # (n, W)
            batch = torch.arange(n, device=x.device)[:, None, None]
            # Advanced indices around a slice put their broadcast shape first: (n, H, W, C).
            out = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
        if self.flip:
            flips = (torch.rand(n, generator=generator, device=generator.device) < 0.5).to(x.device)
            out = torch.where(flips[:, None, None, None], out.flip(-1), out)
        return out


def standard_augmentation(padding: int = 4, flip: bool = True) -> Callable[[Tensor, torch.Generator], Tensor]:
    """The standard CIFAR-style augmentation as ``augment(x, generator)`` for the training loop."""
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ConfigError(f"augmentation.padding: must be an integer >= 0, got {padding!r}")
    if not isinstance(flip, bool):
        raise ConfigError(f"augmentation.flip: expected true or false, got {flip!r}")
    return RandomCropFlip(padding=padding, flip=flip)


# ---------------------------------------------------------------------------------------------
# DataLoader path


class IndexedDataset(Dataset):
    """Yields ``(x, y, index)``: wraps ``{"x", "y"}`` tensors or any Dataset yielding ``(x, y, ...)``.

    The index is the sample's position in the wrapped data, so methods that keep per-sample state
    (CRD's memory bank) get the same indices as the in-memory loop passes in ``Batch``.
    """

    def __init__(self, data: Mapping[str, Tensor] | Dataset) -> None:
        if isinstance(data, Mapping):
            if "x" not in data or "y" not in data or len(data["x"]) != len(data["y"]):
                raise ValueError("IndexedDataset: a mapping needs equally long 'x' and 'y' tensors")
        self.data = data

    def __len__(self) -> int:
        return len(self.data["y"]) if isinstance(self.data, Mapping) else len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        if isinstance(self.data, Mapping):
            return self.data["x"][index], self.data["y"][index], index
        item = self.data[index]
        return item[0], item[1], index
