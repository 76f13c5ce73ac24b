"""Tests of pimprune.training.imagenet: class folders, DDP split, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pimprune.errors import ConfigError, DataError
from pimprune.training.datasets import dataset_info, load_data
from pimprune.training.loaders import make_loaders
from pimprune.training.sources import DatasetInfo


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
    message = str(info.value)
    assert "\n" not in message  # one line
    assert "train" in message
    write_imagenet(tmp_path / "b")
    (tmp_path / "b" / "val" / "n01").rename(tmp_path / "b" / "val" / "n03")
    with pytest.raises(DataError, match="different class folders"):
        dataset_info("imagenet", tmp_path / "b")
    write_imagenet(tmp_path / "c")
    (tmp_path / "c" / "val" / "n01" / "img0.jpg").write_bytes(b"not an image")
    _, test, _ = make_loaders("imagenet", 8, data_dir=tmp_path / "c", num_workers=0)
    with pytest.raises(DataError, match="img0.jpg"):
        next(iter(test))
