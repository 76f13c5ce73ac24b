"""Tests of pimprune.training.data: file formats, errors, batching, DDP splits."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pimprune.errors import ConfigError, DataError, UnknownNameError
from pimprune.training import data
from pimprune.training.data import (
    CIFAR10_FILES,
    FASHION_MNIST_FILES,
    DatasetInfo,
    SyntheticSpec,
    TensorLoader,
    dataset_info,
    dataset_names,
    load_data,
    make_loaders,
    read_idx,
    shard_indices,
)

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
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", tmp_path / "no-such-dir")


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
    monkeypatch.setenv(data.DATA_ENV, str(env_root))
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
    if not data.SYSTEM_FASHION_MNIST.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    info = dataset_info("fashion-mnist", data.SYSTEM_FASHION_MNIST)
    assert info == DatasetInfo(10, 1, 28, 60000, 10000)
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = load_data("fashion-mnist", split, data_dir=data.SYSTEM_FASHION_MNIST)
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.uint8
        assert labels.bincount().tolist() == [n // 10] * 10


@pytest.mark.data
def test_subset_is_drawn_from_debian_files() -> None:
    if not data.SYSTEM_FASHION_MNIST.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    with np.load(data.subset_path()) as npz:
        index, images, labels = npz["test_index"], npz["test_images"], npz["test_labels"]
    full_images, full_labels = load_data("fashion-mnist", "test", data.SYSTEM_FASHION_MNIST)
    np.testing.assert_array_equal(full_images[index, 0].numpy(), images)
    np.testing.assert_array_equal(full_labels[index].numpy(), labels)
    assert len(set(index.tolist())) == len(index)


# --------------------------------------------------------------------------- shipped subset


def test_subset_without_debian_package(no_default_data: None) -> None:
    with pytest.raises(DataError):
        load_data("fashion-mnist", "train")
    assert data.subset_path().stat().st_size < 6_000_000
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


# --------------------------------------------------------------------------- ImageNet


def write_imagenet(root: Path, classes=("n01", "n02"), per_class: int = 3) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    for split in ("train", "val"):
        for i, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for j in range(per_class):
                pixels = rng.integers(0, 256, (12 + j, 10 + i, 3), dtype=np.uint8)
                ext = "png" if j % 2 else "jpg"
                Image.fromarray(pixels).save(folder / f"img{j}.{ext}")


def test_imagenet_folders(tmp_path: Path) -> None:
    write_imagenet(tmp_path)
    assert dataset_info("imagenet", tmp_path) == DatasetInfo(2, 3, 224, 6, 6)
    train, test, info = make_loaders("imagenet", 4, data_dir=tmp_path, num_workers=0)
    assert info.num_classes == 2 and len(train) == 1 and len(test) == 2
    x, y = next(iter(train))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32
    assert set(y.tolist()) <= {0, 1}
    labels = torch.cat([y for _, y in test])
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ConfigError, match="make_loaders"):
        load_data("imagenet", "train", data_dir=tmp_path)


def test_imagenet_ddp_split(tmp_path: Path) -> None:
    write_imagenet(tmp_path, per_class=4)
    seen = []
    for rank in range(2):
        _, test, _ = make_loaders(
            "imagenet", 2, data_dir=tmp_path, rank=rank, world_size=2, num_workers=0
        )
        assert len(test) == 2
        seen.append(sum(len(y) for _, y in test))
    assert seen == [4, 4]


def test_imagenet_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        dataset_info("imagenet", tmp_path / "none")
    (tmp_path / "a" / "train" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="val"):
        dataset_info("imagenet", tmp_path / "a")
    (tmp_path / "a" / "val" / "cls").mkdir(parents=True)
    with pytest.raises(DataError) as info:
        dataset_info("imagenet", tmp_path / "a")
    assert "train" in one_line(info)
    write_imagenet(tmp_path / "b")
    (tmp_path / "b" / "val" / "n01").rename(tmp_path / "b" / "val" / "n03")
    with pytest.raises(DataError, match="different class folders"):
        dataset_info("imagenet", tmp_path / "b")
    write_imagenet(tmp_path / "c")
    (tmp_path / "c" / "val" / "n01" / "img0.jpg").write_bytes(b"not an image")
    _, test, _ = make_loaders("imagenet", 8, data_dir=tmp_path / "c", num_workers=0)
    with pytest.raises(DataError, match="img0.jpg"):
        next(iter(test))


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_shaped() -> None:
    spec = SyntheticSpec(num_classes=4, in_channels=2, input_size=12, train_size=40, test_size=20)
    a = load_data("synthetic", "train", synthetic=spec)
    b = load_data("synthetic", "train", synthetic=spec)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (40, 2, 12, 12) and a[0].dtype == torch.uint8
    assert a[1].bincount().tolist() == [10] * 4
    c = load_data("synthetic", "train", synthetic=SyntheticSpec(4, 2, 12, 40, 20, seed=1))
    assert not torch.equal(a[0], c[0])
    assert dataset_info("synthetic", synthetic=spec) == DatasetInfo(4, 2, 12, 40, 20)


def test_synthetic_classes_are_learnable() -> None:
    spec = SyntheticSpec(num_classes=5, in_channels=1, input_size=16, train_size=200, test_size=100)
    xtr, ytr = load_data("synthetic", "train", synthetic=spec)
    xte, yte = load_data("synthetic", "test", synthetic=spec)
    centroids = torch.stack([xtr[ytr == k].float().mean(0) for k in range(5)]).flatten(1)
    dist = torch.cdist(xte.float().flatten(1), centroids)
    accuracy = (dist.argmin(1) == yte).float().mean()
    assert accuracy > 0.8  # chance is 0.2


def test_synthetic_rejects_bad_spec() -> None:
    with pytest.raises(ConfigError):
        SyntheticSpec(num_classes=1)
    with pytest.raises(ConfigError):
        SyntheticSpec(noise=-1.0)


# --------------------------------------------------------------------------- TensorLoader


def id_dataset(n: int, size: int = 4, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose first pixel encodes their id, labels equal to the id."""
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)
    return images, torch.arange(n)


@pytest.mark.parametrize("n,world", [(100, 4), (103, 4), (5, 3), (10, 1)])
def test_ddp_split_covers_without_overlap(n: int, world: int) -> None:
    images, labels = id_dataset(n)
    seen = []
    lengths = set()
    for rank in range(world):
        loader = TensorLoader(images, labels, 8, shuffle=True, seed=5, rank=rank, world_size=world)
        loader.set_epoch(2)
        lengths.add(len(loader))
        ids = torch.cat([y for _, y in loader]).tolist()
        assert len(ids) == loader.num_samples
        seen += ids
    assert len(lengths) == 1  # every rank the same number of batches
    assert set(seen) == set(range(n))
    assert len(seen) - n == loader.padding < world
    if n % world == 0:
        assert len(seen) == len(set(seen)) == n


def test_shard_indices_match_distributed_sampler() -> None:
    from torch.utils.data import DistributedSampler

    for rank in range(3):
        sampler = DistributedSampler(range(11), num_replicas=3, rank=rank, shuffle=True, seed=7)
        sampler.set_epoch(4)
        assert shard_indices(11, rank, 3, True, 7, 4).tolist() == list(sampler)


def test_loader_determinism() -> None:
    images, labels = id_dataset(50, size=8, channels=3)

    def run(seed: int, epoch: int) -> list[torch.Tensor]:
        loader = TensorLoader(images, labels, 16, shuffle=True, augment=True, seed=seed)
        loader.set_epoch(epoch)
        return [x for x, _ in loader]

    a, b = run(0, 0), run(0, 0)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(run(0, 1)[0], a[0])
    assert not torch.equal(run(1, 0)[0], a[0])


def test_augment_is_crop_and_flip() -> None:
    images, labels = id_dataset(32, size=6, channels=2)
    pad = 2
    loader = TensorLoader(
        images, labels, 32, mean=(0.0,), std=(1.0,), augment=True, crop_padding=pad, seed=3
    )
    x, y = next(iter(loader))
    assert x.shape == images.shape and x.dtype == torch.float32
    pixels = torch.round(x * 255).to(torch.uint8)
    padded = torch.nn.functional.pad(images, (pad,) * 4)
    flipped_any = shifted_any = False
    for out, i in zip(pixels, y.tolist(), strict=True):
        matches = [
            (dy, dx, flip)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for flip in (False, True)
            if torch.equal(
                out,
                (lambda c: c.flip(-1) if flip else c)(padded[i, :, dy : dy + 6, dx : dx + 6]),
            )
        ]
        assert matches, f"sample {i} is not a crop/flip of its image"
        flipped_any |= any(m[2] for m in matches) and not any(not m[2] for m in matches)
        shifted_any |= all((m[0], m[1]) != (pad, pad) for m in matches)
    assert flipped_any and shifted_any


def test_no_augment_is_plain_normalisation() -> None:
    images, labels = id_dataset(10, size=5, channels=3)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    loader = TensorLoader(images, labels, 10, mean=mean, std=std)
    x, y = next(iter(loader))
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected)
    assert torch.equal(y, labels)
    still = TensorLoader(images, labels, 10, augment=True, crop_padding=0, hflip=False)
    assert torch.equal(next(iter(still))[0], next(iter(TensorLoader(images, labels, 10)))[0])


def test_loader_lengths_and_drop_last() -> None:
    images, labels = id_dataset(10)
    assert len(TensorLoader(images, labels, 4)) == 3
    dropping = TensorLoader(images, labels, 4, drop_last=True)
    assert len(dropping) == 2 and [len(y) for _, y in dropping] == [4, 4]
    with pytest.raises(ConfigError):
        TensorLoader(images, labels, 0)
    with pytest.raises(ConfigError):
        TensorLoader(images, labels, 4, rank=2, world_size=2)
    with pytest.raises(ConfigError):
        TensorLoader(images.float(), labels, 4)


def test_make_loaders_limits_and_ranks() -> None:
    spec = SyntheticSpec(num_classes=3, in_channels=1, input_size=8, train_size=90, test_size=30)
    train, test, info = make_loaders(
        "synthetic", 8, synthetic=spec, limit_train=30, limit_test=9, rank=1, world_size=2
    )
    assert info == DatasetInfo(3, 1, 8, 30, 9)
    assert len(train) == 15 // 8  # drops the incomplete training batch
    assert sum(len(y) for _, y in test) == 5  # ceil(9 / 2), test keeps everything
    _, full_labels = load_data("synthetic", "train", synthetic=spec)
    # limits keep evenly spaced samples: all classes survive.
    assert set(torch.cat([y for _, y in train]).tolist()) == {0, 1, 2}
    assert len(full_labels) == 90


def test_make_loaders_rejects_bad_arguments() -> None:
    with pytest.raises(UnknownNameError, match="fashion-mnist"):
        make_loaders("mnist", 8)
    with pytest.raises(ConfigError):
        make_loaders("synthetic", 0)
    with pytest.raises(ConfigError):
        make_loaders("synthetic", 8, rank=1, world_size=1)
    with pytest.raises(ConfigError):
        make_loaders("synthetic", 8, limit_train=0)
    with pytest.raises(ConfigError, match="split"):
        load_data("synthetic", "validation")
    assert {"fashion-mnist", "fashion-mnist-subset", "cifar10", "imagenet", "synthetic"} <= set(
        dataset_names()
    )
