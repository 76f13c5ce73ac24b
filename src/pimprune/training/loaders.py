"""Training, test and validation loaders of a registered dataset (:func:`make_loaders`)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from pimprune.errors import ConfigError
from pimprune.training.batching import BatchLoader, LoaderOptions, TensorLoader, evenly_spaced
from pimprune.training.datasets import DATASETS, DatasetDef, validation_split
from pimprune.training.sources import DataRequest, DatasetInfo, SyntheticSpec, data_request


def make_loaders(
    name: str,
    batch_size: int,
    data_dir: str | Path | None = None,
    augment: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world_size: int = 1,
    limit_train: int | None = None,
    limit_test: int | None = None,
    *,
    download: bool = False,
    synthetic: SyntheticSpec | None = None,
    test_batch_size: int | None = None,
    num_workers: int | None = None,
    validation: int = 0,
) -> tuple[BatchLoader, BatchLoader, DatasetInfo]:
    """:func:`load_loaders` with its options as keywords (:class:`LoaderOptions` has their meaning).

    ``name`` is the dataset (:data:`DATASETS`); ``data_dir`` the folder of its files
    (default: the dataset's search order), ``download`` allows torchvision to
    download a missing dataset and ``synthetic`` shapes the ``synthetic`` one.
    """
    opts = LoaderOptions(
        batch_size, augment, seed, device, rank, world_size, limit_train, limit_test, test_batch_size, num_workers,
        validation,
    )  # fmt: skip
    return load_loaders(name, opts, data_request(data_dir, download, synthetic))


def load_loaders(
    name: str, opts: LoaderOptions, req: DataRequest | None = None
) -> tuple[BatchLoader, BatchLoader, DatasetInfo]:
    """Training and test loaders of a dataset, split between DDP ranks.

    The training loader shuffles, augments (if ``opts.augment``) and drops each
    rank's last incomplete batch (unless that would leave none); the test
    loader keeps the file order and every sample. ``limit_train`` /
    ``limit_test`` keep that many evenly spaced samples (balanced for
    class-sorted files).

    Args:
        name: Dataset name (:data:`DATASETS`).
        opts: Batching, limits, ranks and the validation split.
        req: Where the files are (default: the dataset's search order, no download).

    Returns:
        ``(train_loader, test_loader, info)``; ``info`` gives the sizes after limits.
    """
    opts.check()
    definition = DATASETS.get(name)
    req = req or data_request()
    if definition.load is None:
        assert definition.make_loaders is not None
        if opts.validation:
            _no_validation_split(name)
        return definition.make_loaders(req, opts)
    splits = {}
    for split, limit in (("train", opts.limit_train), ("test", opts.limit_test)):
        images, labels = definition.load(split, req)
        if split == "train" and opts.validation:
            rest = validation_split(len(labels), opts.validation)[0]
            images, labels = images[rest], labels[rest]
        keep = evenly_spaced(len(labels), limit)
        if keep is not None:
            images, labels = images[keep], labels[keep]
        splits[split] = (images, labels)
    return _tensor_loaders(definition, req, opts, splits)


def _tensor_loaders(
    definition: DatasetDef, req: DataRequest, opts: LoaderOptions, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> tuple[BatchLoader, BatchLoader, DatasetInfo]:
    """In-memory loaders of the (held-out and limited) train and test tensors."""
    train_images, train_labels = splits["train"]
    test_images, test_labels = splits["test"]
    num_classes = definition.num_classes or definition.info(req).num_classes
    where = {key: getattr(opts, key) for key in ("seed", "device", "rank", "world_size")}
    common = dict(mean=definition.mean, std=definition.std, **where)
    per_rank = math.ceil(len(train_labels) / opts.world_size)
    train_loader = TensorLoader(
        train_images,
        train_labels,
        opts.batch_size,
        shuffle=True,
        augment=opts.augment,
        crop_padding=definition.crop_padding,
        hflip=definition.hflip,
        drop_last=per_rank >= opts.batch_size,
        **common,
    )
    test_loader = TensorLoader(
        test_images,
        test_labels,
        opts.test_batch_size or opts.batch_size,
        shuffle=False,
        augment=False,
        drop_last=False,
        **common,
    )
    info = DatasetInfo(
        num_classes=num_classes,
        in_channels=int(train_images.shape[1]),
        input_size=int(train_images.shape[-1]),
        train_size=len(train_labels),
        test_size=len(test_labels),
    )
    return train_loader, test_loader, info


def _no_validation_split(name: str) -> None:
    raise ConfigError(f"a validation split is not available for the streamed dataset {name!r}; drop it")


def make_validation_loader(
    name: str,
    batch_size: int,
    validation: int,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world_size: int = 1,
    *,
    synthetic: SyntheticSpec | None = None,
) -> BatchLoader:
    """The held-out validation images of :func:`make_loaders` (``validation`` > 0) as a test-style loader.

    Raises:
        ConfigError: for a streamed dataset or a size that leaves no training image.
    """
    definition = DATASETS.get(name)
    if definition.load is None:
        _no_validation_split(name)
    images, labels = definition.load("train", data_request(data_dir, False, synthetic))
    held = validation_split(len(labels), validation)[1]
    return TensorLoader(
        images[held], labels[held], batch_size, shuffle=False, augment=False, drop_last=False,
        mean=definition.mean, std=definition.std, device=device, rank=rank, world_size=world_size,
    )
