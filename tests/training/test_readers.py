"""Tests of pimprune.training.readers: Fashion-MNIST IDX files, the shipped subset, CIFAR-10 pickles."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pimprune.errors import DataError
from pimprune.training import readers, sources
from pimprune.training.datasets import dataset_info, load_data
from pimprune.training.loaders import make_loaders
from pimprune.training.readers import CIFAR10_FILES, FASHION_MNIST_FILES, read_idx
from pimprune.training.sources import DatasetInfo

# --------------------------------------------------------------------------- writers


def idx_bytes(array: np.ndarray) -> bytes:
    assert array.dtype == np.uint8
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> None:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def write_fmnist(folder: Path, gz: bool = True, n_train: int = 20, n_test: int = 10) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        img_name, lab_name = FASHION_MNIST_FILES[split]
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{img_name}{suffix}", images)
        write_idx(folder / f"{lab_name}{suffix}", labels)
        arrays[split] = (images, labels)
    return arrays


def write_cifar(folder: Path, per_batch: int = 4, labels_fn=None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {}
    for split, names in CIFAR10_FILES.items():
        chunks = []
        for name in names:
            flat = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, per_batch)]
            if labels_fn is not None:
                labels = labels_fn(labels)
            entry = {"batch_label": name, "labels": labels, "data": flat, "filenames": []}
            with open(folder / name, "wb") as fh:
                pickle.dump(entry, fh, protocol=2)
            chunks.append((flat, labels))
        arrays[split] = (
            np.concatenate([c[0] for c in chunks]),
            np.concatenate([c[1] for c in chunks]),
        )
    return arrays


@pytest.fixture
def no_default_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide $PIMPRUNE_DATA and the Debian Fashion-MNIST folder."""
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.setattr(readers, "SYSTEM_FASHION_MNIST", tmp_path / "no-such-dir")


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_idx(tmp_path: Path, gz: bool) -> None:
    written = write_fmnist(tmp_path, gz=gz)
    for split in ("train", "test"):
        images, labels = load_data("fashion-mnist", split, data_dir=tmp_path)
        assert images.dtype == torch.uint8 and images.shape[1:] == (1, 28, 28)
        assert labels.dtype == torch.int64
        np.testing.assert_array_equal(images[:, 0].numpy(), written[split][0])
        np.testing.assert_array_equal(labels.numpy(), written[split][1])
    assert dataset_info("fashion-mnist", tmp_path) == DatasetInfo(10, 1, 28, 20, 10)


def test_fashion_mnist_search_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_data: None
) -> None:
    with pytest.raises(DataError) as info:
        load_data("fashion-mnist", "test")
    assert "dataset-fashion-mnist" in one_line(info)
    env_root = tmp_path / "env"
    write_fmnist(env_root / "fashion-mnist", n_test=7)
    monkeypatch.setenv(sources.DATA_ENV, str(env_root))
    assert len(load_data("fashion-mnist", "test")[1]) == 7
    # An explicit folder wins over the environment.
    write_fmnist(tmp_path / "explicit", n_test=3)
    assert len(load_data("fashion-mnist", "test", data_dir=tmp_path / "explicit")[1]) == 3


def test_fashion_mnist_missing_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        load_data("fashion-mnist", "train", data_dir=tmp_path / "nope")
    assert "nope" in one_line(info)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        load_data("fashion-mnist", "train", data_dir=tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_data("fashion-mnist", "train", data_dir=tmp_path / "other")


def test_fashion_mnist_missing_file(tmp_path: Path) -> None:
    write_fmnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert len(load_data("fashion-mnist", "train", data_dir=tmp_path)[1]) == 20
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte") as info:
        load_data("fashion-mnist", "test", data_dir=tmp_path)
    assert "missing" in one_line(info)


def corrupt(path: Path, kind: str) -> None:
    raw = gzip.decompress(path.read_bytes())
    if kind == "magic":
        raw = b"\x12\x34" + raw[2:]
    elif kind == "truncated":
        raw = raw[:-5]
    elif kind == "too-long":
        raw = raw + b"\x00"
    elif kind == "ndim":
        raw = raw[:3] + bytes([2]) + raw[4:]
    if kind == "bad-gzip":
        path.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    elif kind == "cut-gzip":
        path.write_bytes(path.read_bytes()[:40])
    elif kind == "not-gzip":
        path.write_bytes(raw)
    else:
        path.write_bytes(gzip.compress(raw))


@pytest.mark.parametrize(
    "kind,match",
    [
        ("magic", "not an IDX file"),
        ("truncated", "truncated or corrupt"),
        ("too-long", "truncated or corrupt"),
        ("ndim", "dimensions"),
        ("bad-gzip", "damaged gzip"),
        ("cut-gzip", "damaged gzip"),
        ("not-gzip", "not a gzip file"),
    ],
)
def test_fashion_mnist_corrupt_images(tmp_path: Path, kind: str, match: str) -> None:
    write_fmnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    corrupt(path, kind)
    with pytest.raises(DataError, match=match) as info:
        load_data("fashion-mnist", "train", data_dir=tmp_path)
    assert str(path) in one_line(info)


def test_fashion_mnist_bad_labels(tmp_path: Path) -> None:
    write_fmnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(20, 10, dtype=np.uint8))
    with pytest.raises(DataError, match="0..9"):
        load_data("fashion-mnist", "train", data_dir=tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(19, dtype=np.uint8))
    with pytest.raises(DataError, match="20 images but .* 19 labels"):
        load_data("fashion-mnist", "train", data_dir=tmp_path)


def test_read_idx_rejects_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)


@pytest.mark.data
def test_debian_fashion_mnist() -> None:
    if not readers.SYSTEM_FASHION_MNIST.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    info = dataset_info("fashion-mnist", readers.SYSTEM_FASHION_MNIST)
    assert info == DatasetInfo(10, 1, 28, 60000, 10000)
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = load_data("fashion-mnist", split, data_dir=readers.SYSTEM_FASHION_MNIST)
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.uint8
        assert labels.bincount().tolist() == [n // 10] * 10


@pytest.mark.data
def test_subset_is_drawn_from_debian_files() -> None:
    if not readers.SYSTEM_FASHION_MNIST.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    with np.load(readers.subset_path()) as npz:
        index, images, labels = npz["test_index"], npz["test_images"], npz["test_labels"]
    full_images, full_labels = load_data("fashion-mnist", "test", readers.SYSTEM_FASHION_MNIST)
    np.testing.assert_array_equal(full_images[index, 0].numpy(), images)
    np.testing.assert_array_equal(full_labels[index].numpy(), labels)
    assert len(set(index.tolist())) == len(index)


# --------------------------------------------------------------------------- shipped subset


def test_subset_without_debian_package(no_default_data: None) -> None:
    with pytest.raises(DataError):
        load_data("fashion-mnist", "train")
    assert readers.subset_path().stat().st_size < 6_000_000
    info = dataset_info("fashion-mnist-subset")
    assert info == DatasetInfo(10, 1, 28, 6000, 2000)
    for split, n in (("train", 6000), ("test", 2000)):
        images, labels = load_data("fashion-mnist-subset", split)
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.uint8
        assert labels.bincount().tolist() == [n // 10] * 10
        assert images.float().mean() > 10  # real pictures, not zeros
    train_loader, test_loader, info = make_loaders("fashion-mnist-subset", 256)
    assert len(train_loader) == 6000 // 256 and len(test_loader) == 8
    x, y = next(iter(train_loader))
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 0.3 and 0.7 < float(x.std()) < 1.3  # normalised


# --------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("nested", [True, False])
def test_cifar10_reads_pickles(tmp_path: Path, nested: bool) -> None:
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path / "flat"
    written = write_cifar(folder)
    root = tmp_path if nested else folder
    images, labels = load_data("cifar10", "train", data_dir=root)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8
    flat, lab = written["train"]
    # Row layout: 1024 red, 1024 green, 1024 blue values, each row-major.
    assert int(images[3, 1, 2, 5]) == int(flat[3, 1024 + 2 * 32 + 5])
    np.testing.assert_array_equal(labels.numpy(), lab)
    assert dataset_info("cifar10", root) == DatasetInfo(10, 3, 32, 20, 4)
    train_loader, _, info = make_loaders("cifar10", 8, data_dir=root)
    x, _ = next(iter(train_loader))
    assert x.shape == (8, 3, 32, 32) and info.train_size == 20


def test_cifar10_errors(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    with pytest.raises(DataError, match="does not exist"):
        load_data("cifar10", "train", data_dir=folder)
    write_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3") as info:
        load_data("cifar10", "train", data_dir=folder)
    assert "missing" in one_line(info)
    assert len(load_data("cifar10", "test", data_dir=folder)[1]) == 4
    test_batch = folder / "test_batch"
    test_batch.write_bytes(test_batch.read_bytes()[:100])
    with pytest.raises(DataError, match="corrupt") as info:
        load_data("cifar10", "test", data_dir=folder)
    assert "test_batch" in one_line(info)
    test_batch.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="corrupt"):
        load_data("cifar10", "test", data_dir=folder)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_refuses_code_in_pickles(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    write_cifar(folder)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": _Evil(), "labels": []}, fh)
    with pytest.raises(DataError, match="forbidden"):
        load_data("cifar10", "test", data_dir=folder)


def test_cifar10_bad_labels_and_shapes(tmp_path: Path) -> None:
    write_cifar(tmp_path / "a", labels_fn=lambda labels: [11] + labels[1:])
    with pytest.raises(DataError, match="0..9"):
        load_data("cifar10", "test", data_dir=tmp_path / "a")
    write_cifar(tmp_path / "b", labels_fn=lambda labels: labels[:-1])
    with pytest.raises(DataError, match="4 images but 3 labels"):
        load_data("cifar10", "test", data_dir=tmp_path / "b")
    write_cifar(tmp_path / "c")
    with open(tmp_path / "c" / "test_batch", "wb") as fh:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, fh)
    with pytest.raises(DataError, match="3072"):
        load_data("cifar10", "test", data_dir=tmp_path / "c")
