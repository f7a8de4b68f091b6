"""torchvision datasets read from tiny files in their real on-disk formats, augmentation, loaders.

Every dataset goes through torchvision's own classes and readers. The only thing patched anywhere
is the CIFAR MD5 comparison (``torchvision.datasets.cifar.check_integrity``, which CIFAR10 uses for
its data batches and its meta file): tiny hand-written batches cannot match the published sums, so
the ``no_cifar_md5`` fixture keeps its file-exists check and drops only the checksum comparison.
"""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from distillation_studies.common.config import parse_dataclass
from distillation_studies.common.errors import ConfigError, DataError
from distillation_studies.learning.data import dataset_shape
from distillation_studies.learning.vision_data import (
    STANDARD_NORMALISATION,
    IndexedDataset,
    VisionDataConfig,
    load_vision_dataset,
    open_vision_split,
    standard_augmentation,
)

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# --- writers for the real formats ---------------------------------------------------------------


def _pickle(path, obj):
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def _cifar_rows(rng, n):
    """(n, 3072) uint8 rows: 1024 red, 1024 green, 1024 blue values, each plane row-major 32x32."""
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root, per_batch=2, test=3, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_rows, train_labels = [], []
    for i in range(1, 6):
        rows = _cifar_rows(rng, per_batch)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        _pickle(folder / f"data_batch_{i}", {
            "batch_label": f"training batch {i} of 5", "labels": labels, "data": rows,
            "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)],
        })
        train_rows.append(rows)
        train_labels += labels
    test_rows, test_labels = _cifar_rows(rng, test), rng.integers(0, 10, size=test).tolist()
    _pickle(folder / "test_batch", {
        "batch_label": "testing batch 1 of 1", "labels": test_labels, "data": test_rows,
        "filenames": [f"test_{j}.png" for j in range(test)],
    })
    _pickle(folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072})
    return (np.vstack(train_rows), train_labels), (test_rows, test_labels)


def write_cifar100(root, train=4, test=3, seed=1):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine_names = [f"class_{i:02d}" for i in range(100)]
    out = []
    for name, n in (("train", train), ("test", test)):
        rows, fine = _cifar_rows(rng, n), rng.integers(0, 100, size=n).tolist()
        _pickle(folder / name, {
            "filenames": [f"{name}_{j}.png" for j in range(n)], "batch_label": f"{name} batch",
            "fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": rows,
        })
        out.append((rows, fine))
    _pickle(folder / "meta", {"fine_label_names": fine_names, "coarse_label_names": [f"super_{i}" for i in range(20)]})
    return out, fine_names


def _idx_images(path, images):
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())


def _idx_labels(path, labels):
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + np.asarray(labels, dtype=np.uint8).tobytes())


def write_mnist(root, folder_name="MNIST", train=5, test=3, seed=2):
    rng = np.random.default_rng(seed)
    raw = root / folder_name / "raw"
    raw.mkdir(parents=True)
    out = []
    for prefix, n in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n)
        _idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        _idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out.append((images, labels))
    return out


def write_image_folder(root, layout, size=(10, 12)):
    """layout: {split: {class: [rgb colour, ...]}}; solid-colour PNGs survive resizing exactly."""
    for split, classes in layout.items():
        for name, colours in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, colour in enumerate(colours):
                Image.new("RGB", size, tuple(colour)).save(folder / f"{i}.png")


# --- config ---------------------------------------------------------------------------------------


def test_config_parses_and_names_bad_keys(tmp_path):
    config = parse_dataclass(VisionDataConfig, {"name": "cifar10", "root": str(tmp_path)}, "data")
    assert config.download is False and config.image_size is None
    with pytest.raises(ConfigError, match=r"data\.name: unknown value 'svhn'; allowed values: \['mnist', 'fashion_mnist'"):
        parse_dataclass(VisionDataConfig, {"name": "svhn"}, "data")
    with pytest.raises(ConfigError, match=r"data\.name: required"):
        parse_dataclass(VisionDataConfig, {}, "data")
    with pytest.raises(ConfigError, match=r"data\.image_size: required for name: image_folder"):
        parse_dataclass(VisionDataConfig, {"name": "image_folder"}, "data")
    with pytest.raises(ConfigError, match=r"data\.image_size: only applies to name: image_folder"):
        parse_dataclass(VisionDataConfig, {"name": "cifar10", "image_size": 32}, "data")
    with pytest.raises(ConfigError, match=r"data\.download: expected bool"):
        parse_dataclass(VisionDataConfig, {"name": "mnist", "download": "yes"}, "data")


def test_data_error_is_a_config_error():
    assert issubclass(DataError, ConfigError) and issubclass(DataError, ValueError)


def test_standard_normalisation_constants():
    assert set(STANDARD_NORMALISATION) == {"mnist", "fashion_mnist", "cifar10", "cifar100"}
    for name, stats in STANDARD_NORMALISATION.items():
        channels = 1 if "mnist" in name else 3
        assert len(stats["mean"]) == len(stats["std"]) == channels
        assert all(0 < v < 1 for v in stats["mean"] + stats["std"])
    assert STANDARD_NORMALISATION["mnist"] == {"mean": [0.1307], "std": [0.3081]}


# --- CIFAR ----------------------------------------------------------------------------------------


def _expected_cifar_x(rows):
    return torch.from_numpy(rows.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)


def test_cifar10_round_trip(tmp_path, no_cifar_md5):
    (train_rows, train_labels), (test_rows, test_labels) = write_cifar10(tmp_path)
    data = load_vision_dataset(VisionDataConfig(name="cifar10", root=str(tmp_path)))
    assert data["classes"] == CIFAR10_NAMES
    assert data["train"]["x"].shape == (10, 3, 32, 32) and data["test"]["x"].shape == (3, 3, 32, 32)
    assert data["train"]["x"].dtype == torch.float32 and data["train"]["y"].dtype == torch.int64
    assert data["train"]["y"].tolist() == train_labels and data["test"]["y"].tolist() == test_labels
    assert torch.equal(data["train"]["x"], _expected_cifar_x(train_rows))
    assert torch.equal(data["test"]["x"], _expected_cifar_x(test_rows))
    assert 0.0 <= data["train"]["x"].min() and data["train"]["x"].max() <= 1.0


def test_cifar10_lazy_split_matches_in_memory(tmp_path, no_cifar_md5):
    write_cifar10(tmp_path)
    config = VisionDataConfig(name="cifar10", root=str(tmp_path))
    data = load_vision_dataset(config)
    lazy = open_vision_split(config, "test")
    x, y = lazy[1]
    assert torch.equal(x, data["test"]["x"][1]) and y == data["test"]["y"][1].item()


def test_cifar100_round_trip_uses_fine_labels(tmp_path, no_cifar_md5):
    ((train_rows, train_fine), (test_rows, test_fine)), names = write_cifar100(tmp_path)
    data = load_vision_dataset(VisionDataConfig(name="cifar100", root=str(tmp_path)))
    assert data["classes"] == names
    assert data["train"]["y"].tolist() == train_fine and data["test"]["y"].tolist() == test_fine
    assert torch.equal(data["train"]["x"], _expected_cifar_x(train_rows))
    assert data["test"]["x"].shape == (3, 3, 32, 32)


def test_cifar_missing_file_is_named(tmp_path, no_cifar_md5):
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "train").unlink()
    with pytest.raises(DataError) as info:
        load_vision_dataset(VisionDataConfig(name="cifar100", root=str(tmp_path)))
    message = str(info.value)
    assert f"{tmp_path / 'cifar-100-python' / 'train'} not found" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message and "download: true" in message


def test_cifar_missing_meta_is_named(tmp_path, no_cifar_md5):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(DataError, match=r"batches\.meta not found"):
        load_vision_dataset(VisionDataConfig(name="cifar10", root=str(tmp_path)))


def test_cifar_truncated_pickle_is_named(tmp_path, no_cifar_md5):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError) as info:
        load_vision_dataset(VisionDataConfig(name="cifar10", root=str(tmp_path)))
    assert f"{path} is corrupt: not a readable CIFAR python pickle" in str(info.value)


def test_cifar_checksum_mismatch_is_named_without_patching(tmp_path):
    """Unpatched, torchvision's MD5 check rejects hand-written batches; the error names the file."""
    write_cifar10(tmp_path)
    with pytest.raises(DataError) as info:
        load_vision_dataset(VisionDataConfig(name="cifar10", root=str(tmp_path)))
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    assert f"{path} is corrupt: its MD5 checksum is not the published c99cafc152244af753f735de768cd75f" in str(info.value)


# --- MNIST / Fashion-MNIST ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_round_trip(tmp_path, name, folder):
    (train_images, train_labels), (test_images, test_labels) = write_mnist(tmp_path, folder)
    data = load_vision_dataset(VisionDataConfig(name=name, root=str(tmp_path)))
    assert data["train"]["x"].shape == (5, 1, 28, 28) and data["test"]["x"].shape == (3, 1, 28, 28)
    assert data["train"]["x"].dtype == torch.float32 and data["test"]["y"].dtype == torch.int64
    assert data["train"]["y"].tolist() == train_labels.tolist() and data["test"]["y"].tolist() == test_labels.tolist()
    assert torch.equal(data["train"]["x"][:, 0], torch.from_numpy(train_images.astype(np.float32) / 255.0))
    assert 0.0 <= data["test"]["x"].min() and data["test"]["x"].max() <= 1.0
    assert len(data["classes"]) == 10
    if name == "fashion_mnist":
        assert data["classes"][0] == "T-shirt/top"


def test_mnist_missing_file_is_named(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.unlink()
    with pytest.raises(DataError) as info:
        load_vision_dataset(VisionDataConfig(name="mnist", root=str(tmp_path)))
    message = str(info.value)
    assert f"{path} not found" in message and "gunzip them into" in message and "download: true" in message


def test_mnist_missing_folder_names_first_file(tmp_path):
    with pytest.raises(DataError, match=r"FashionMNIST/raw/train-images-idx3-ubyte not found"):
        load_vision_dataset(VisionDataConfig(name="fashion_mnist", root=str(tmp_path)))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_mnist_corrupt_idx_is_named(tmp_path, damage):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(b"this is not an IDX file at all" if damage == "garbage" else path.read_bytes()[:500])
    with pytest.raises(DataError) as info:
        load_vision_dataset(VisionDataConfig(name="mnist", root=str(tmp_path)))
    assert f"{path} is corrupt: not a readable IDX file" in str(info.value)


def test_mnist_label_count_mismatch_is_named(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    _idx_labels(path, [1, 2])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte holds 2 labels but .*train-images-idx3-ubyte holds 5"):
        load_vision_dataset(VisionDataConfig(name="mnist", root=str(tmp_path)))


# --- image folder ---------------------------------------------------------------------------------


def test_image_folder_round_trip(tmp_path):
    write_image_folder(tmp_path, {
        "train": {"cat": [(255, 0, 0), (0, 0, 255)], "dog": [(0, 255, 0)]},
        "test": {"dog": [(10, 20, 30)]},  # a subset of the classes keeps the train numbering
    })
    data = load_vision_dataset(VisionDataConfig(name="image_folder", root=str(tmp_path), image_size=8))
    assert data["classes"] == ["cat", "dog"]
    assert data["train"]["x"].shape == (3, 3, 8, 8) and data["train"]["x"].dtype == torch.float32
    assert data["train"]["y"].tolist() == [0, 0, 1] and data["test"]["y"].tolist() == [1]
    assert data["train"]["y"].dtype == torch.int64
    colours = (data["train"]["x"][:, :, 4, 4] * 255).round().int().tolist()
    assert colours == [[255, 0, 0], [0, 0, 255], [0, 255, 0]]
    assert (data["test"]["x"][0, :, 0, 0] * 255).round().int().tolist() == [10, 20, 30]
    assert 0.0 <= data["train"]["x"].min() and data["train"]["x"].max() <= 1.0


def test_image_folder_keeps_pixels_at_native_size(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / split / "a" / "0.png")
    data = load_vision_dataset(VisionDataConfig(name="image_folder", root=str(tmp_path), image_size=6))
    assert torch.equal(data["train"]["x"][0], torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0)


def test_image_folder_missing_split_is_named(tmp_path):
    write_image_folder(tmp_path, {"train": {"cat": [(1, 2, 3)]}})
    with pytest.raises(DataError) as info:
        load_vision_dataset(VisionDataConfig(name="image_folder", root=str(tmp_path), image_size=4))
    assert f"{tmp_path / 'test'} not found" in str(info.value) and "<class_name>" in str(info.value)


def test_image_folder_unknown_test_class_is_named(tmp_path):
    write_image_folder(tmp_path, {"train": {"cat": [(1, 2, 3)]}, "test": {"cow": [(1, 2, 3)]}})
    with pytest.raises(DataError, match=r"test/cow is a class folder missing from"):
        load_vision_dataset(VisionDataConfig(name="image_folder", root=str(tmp_path), image_size=4))


def test_image_folder_corrupt_image_is_named(tmp_path):
    write_image_folder(tmp_path, {"train": {"cat": [(1, 2, 3)]}, "test": {"cat": [(1, 2, 3)]}})
    bad = tmp_path / "train" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=rf"{bad} is not a readable image"):
        load_vision_dataset(VisionDataConfig(name="image_folder", root=str(tmp_path), image_size=4))


# --- augmentation ---------------------------------------------------------------------------------


def _batch():
    return torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_augmentation_is_deterministic_given_the_generator():
    augment, x = standard_augmentation(), _batch()
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype


def test_augmentation_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    standard_augmentation()(_batch(), torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(3), expected)


def test_flip_only_mirrors_or_keeps_each_sample():
    x = _batch()
    out = standard_augmentation(padding=0, flip=True)(x, torch.Generator().manual_seed(2))
    flipped = [torch.equal(o, s.flip(-1)) for o, s in zip(out, x)]
    kept = [torch.equal(o, s) for o, s in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_no_padding_no_flip_is_identity():
    x = _batch()
    assert torch.equal(standard_augmentation(padding=0, flip=False)(x, torch.Generator().manual_seed(0)), x)


def test_padded_crop_moves_a_pixel_by_at_most_padding():
    padding, n = 2, 64
    x = torch.zeros(n, 1, 8, 8)
    x[:, 0, 4, 3] = 1.0
    out = standard_augmentation(padding=padding, flip=False)(x, torch.Generator().manual_seed(3))
    shifts = set()
    for image in out[:, 0]:
        assert image.sum() == 1.0  # the pixel is 2+ pixels from each border, so it stays in frame
        row, col = (image == 1.0).nonzero()[0].tolist()
        assert abs(row - 4) <= padding and abs(col - 3) <= padding
        shifts.add((row - 4, col - 3))
    assert len(shifts) > 5  # the crops really do vary


def test_padded_crop_fills_with_zeros_at_the_border():
    x = torch.ones(32, 1, 4, 4)
    out = standard_augmentation(padding=1, flip=False)(x, torch.Generator().manual_seed(4))
    assert set(out.unique().tolist()) <= {0.0, 1.0} and (out == 0).any()
    assert (out.sum(dim=(1, 2, 3)) >= 9).all()  # at most one row and one column of padding shows


def test_augmentation_rejects_bad_padding():
    with pytest.raises(ConfigError, match="padding"):
        standard_augmentation(padding=-1)


# --- loader ---------------------------------------------------------------------------------------


def _tensor_data(n=10):
    return {"x": torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), "y": torch.arange(n) % 3}


def test_indexed_dataset_returns_indices():
    data = IndexedDataset(_tensor_data())
    x, y, index = data[7]
    assert len(data) == 10 and index == 7 and x.item() == 7.0 and y.item() == 1


def test_indexed_dataset_wraps_a_torch_dataset():
    data = IndexedDataset(torch.utils.data.TensorDataset(torch.arange(4.0), torch.arange(4)))
    assert data[2] == (torch.tensor(2.0), torch.tensor(2), 2)


def write_gray_folder(root, layout, size=(6, 6)):
    """layout: {split: {class: [gray level, ...]}}: single-band ("L") PNGs."""
    for split, classes in layout.items():
        for name, levels in classes.items():
            (root / split / name).mkdir(parents=True)
            for i, level in enumerate(levels):
                Image.new("L", size, level).save(root / split / name / f"{i}.png")


def test_grayscale_image_folder_stays_one_channel(tmp_path):
    write_gray_folder(tmp_path, {"train": {"a": [10, 200], "b": [77]}, "test": {"b": [5]}})
    config = VisionDataConfig(name="image_folder", root=str(tmp_path), image_size=6)
    data = load_vision_dataset(config)
    assert data["train"]["x"].shape == (3, 1, 6, 6)
    assert (data["train"]["x"][:, 0, 3, 3] * 255).round().int().tolist() == [10, 200, 77]
    assert (data["test"]["x"][0, 0, 0, 0] * 255).round().int().item() == 5
    assert dataset_shape("image_folder", tmp_path, 6) == ((1, 6, 6), 2)


def test_image_channels_setting_forces_rgb_or_grayscale(tmp_path):
    write_gray_folder(tmp_path, {"train": {"a": [10]}, "test": {"a": [20]}})
    rgb = load_vision_dataset(VisionDataConfig(name="image_folder", root=str(tmp_path), image_size=6, channels=3))
    assert rgb["train"]["x"].shape == (1, 3, 6, 6) and (rgb["train"]["x"][0, :, 0, 0] * 255).round().int().tolist() == [10, 10, 10]
    assert dataset_shape("image_folder", tmp_path, 6, channels=3) == ((3, 6, 6), 1)
    colour = tmp_path / "colour"
    write_image_folder(colour, {"train": {"a": [(255, 0, 0)]}, "test": {"a": [(0, 0, 255)]}}, size=(6, 6))
    gray = load_vision_dataset(VisionDataConfig(name="image_folder", root=str(colour), image_size=6, channels=1))
    # PIL's ITU-R 601-2 luma: L = R * 299/1000 + G * 587/1000 + B * 114/1000 -> 76 for pure red
    assert gray["train"]["x"].shape == (1, 1, 6, 6) and round(gray["train"]["x"][0, 0, 0, 0].item() * 255) == 76
    with pytest.raises(ConfigError, match=r"data\.channels: 1 \(grayscale\), 3 \(RGB\) or null"):
        parse_dataclass(VisionDataConfig, {"name": "image_folder", "image_size": 6, "channels": 2}, "data")


def test_load_images_passes_the_channel_setting_to_memory_and_streamed_splits(tmp_path):
    from distillation_studies.learning.data import load_images

    write_gray_folder(tmp_path, {"train": {"a": [10]}, "test": {"a": [20]}})
    assert load_images("image_folder", tmp_path, image_size=6)["train"]["x"].shape == (1, 1, 6, 6)
    assert load_images("image_folder", tmp_path, image_size=6, channels=3)["train"]["x"].shape == (1, 3, 6, 6)
    streamed = load_images("image_folder", tmp_path, image_size=6, in_memory=False, channels=3)
    assert streamed["train"].source.channels == 3 and streamed["train"][0][0].shape == (3, 6, 6)
