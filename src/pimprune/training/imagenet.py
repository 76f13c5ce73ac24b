"""ImageNet as ``train/`` and ``val/`` class folders, streamed from disk in 224 px crops."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from pimprune.errors import DataError
from pimprune.training.batching import BatchLoader, FolderLoader, LoaderOptions, evenly_spaced
from pimprune.training.sources import DATA_ENV, DataRequest, DatasetInfo, check_folder, env_root

#: Side of the ImageNet crops, px.
IMAGENET_SIZE = 224
#: Per-channel mean and standard deviation of ImageNet's pixels in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGENET_FIX = (
    f"point --data-dir (or ${DATA_ENV}/imagenet) at a folder with train/ and val/, "
    "each holding one sub-folder of images per class"
)


def _imagenet_root(req: DataRequest) -> Path:
    if req.data_dir is not None:
        root = req.data_dir.expanduser()
    else:
        env = env_root()
        if env is None:
            raise DataError(
                f"ImageNet location unknown (no --data-dir, ${DATA_ENV} unset); {_IMAGENET_FIX}"
            )
        root = env / "imagenet" if (env / "imagenet").is_dir() else env
    check_folder(root, "ImageNet", _IMAGENET_FIX)
    for split in ("train", "val"):
        check_folder(root / split, f"ImageNet {split}", _IMAGENET_FIX)
    return root


def _load_image(path: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as fh:
            img = Image.open(fh)
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot read image {path} ({exc}); delete or replace the file") from None


def _image_folder(folder: Path, transform: Callable[[Any], torch.Tensor]) -> Any:
    import torchvision

    try:
        return torchvision.datasets.ImageFolder(
            str(folder), transform=transform, loader=_load_image
        )
    except (FileNotFoundError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else "no images"
        raise DataError(f"ImageNet folder {folder}: {first}; {_IMAGENET_FIX}") from None


def _imagenet_transforms(train: bool, size: int = IMAGENET_SIZE) -> Callable[[Any], torch.Tensor]:
    from torchvision.transforms import v2

    tail = [
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
    if train:
        head = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        head = [v2.Resize(size * 256 // 224, antialias=True), v2.CenterCrop(size)]
    return v2.Compose(head + tail)


def _imagenet_datasets(req: DataRequest, augment: bool) -> tuple[Any, Any]:
    root = _imagenet_root(req)
    train = _image_folder(root / "train", _imagenet_transforms(train=augment))
    val = _image_folder(root / "val", _imagenet_transforms(train=False))
    if train.classes != val.classes:
        extra = sorted(set(train.classes) ^ set(val.classes))
        raise DataError(
            f"ImageNet train/ and val/ under {root} have different class folders "
            f"(e.g. {extra[0]!r}); give val/ the same class sub-folders as train/"
        )
    return train, val


def imagenet_info(req: DataRequest) -> DatasetInfo:
    """ImageNet's shape: classes from the folders, sizes from the image counts."""
    train, val = _imagenet_datasets(req, augment=False)
    return DatasetInfo(len(train.classes), 3, IMAGENET_SIZE, len(train), len(val))


def imagenet_loaders(req: DataRequest, opts: LoaderOptions) -> tuple[BatchLoader, BatchLoader, DatasetInfo]:
    """Streamed training and test loaders (limits keep evenly spaced images; workers: up to 8)."""
    train, val = _imagenet_datasets(req, opts.augment)
    num_classes = len(train.classes)
    parts = []
    for ds, limit in ((train, opts.limit_train), (val, opts.limit_test)):
        keep = evenly_spaced(len(ds), limit)
        parts.append(ds if keep is None else Subset(ds, keep.tolist()))
    workers = opts.num_workers
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    common = dict(
        seed=opts.seed,
        device=opts.device,
        rank=opts.rank,
        world_size=opts.world_size,
        num_workers=workers,
    )
    train_loader = FolderLoader(
        parts[0],
        opts.batch_size,
        shuffle=True,
        drop_last=len(parts[0]) >= opts.batch_size * opts.world_size,
        **common,
    )
    test_loader = FolderLoader(
        parts[1], opts.test_batch_size or opts.batch_size, shuffle=False, drop_last=False, **common
    )
    info = DatasetInfo(num_classes, 3, IMAGENET_SIZE, len(parts[0]), len(parts[1]))
    return train_loader, test_loader, info


