"""The dataset registry (:data:`DATASETS`), the synthetic dataset and the validation split.

Registered datasets: ``fashion-mnist`` (IDX files), ``fashion-mnist-subset``
(shipped with pimprune, always available), ``cifar10`` (python pickles),
``imagenet`` (class folders, streamed from disk) and ``synthetic`` (random images
with learnable classes, any shape; :class:`SyntheticSpec`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pimprune.errors import ConfigError
from pimprune.registry import Registry
from pimprune.training.batching import BatchLoader
from pimprune.training.imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet_info, imagenet_loaders
from pimprune.training.readers import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    cifar10_info,
    fashion_mnist_info,
    load_cifar10,
    load_fashion_mnist,
    load_subset,
    subset_info,
)
from pimprune.training.sources import Batch, DataRequest, DatasetInfo, SyntheticSpec, check_split, data_request


@dataclass(frozen=True)
class DatasetDef:
    """A registered dataset.

    Attributes:
        description: One line for ``--help`` and listings.
        info: Returns the dataset's :class:`DatasetInfo` (cheap where possible).
        load: Loads one split into memory as ``(uint8 images (N, C, H, W), int64
            labels)``; ``None`` for datasets streamed from disk.
        make_loaders: Builds streamed loaders (datasets without ``load``).
        mean: Per-channel mean of the pixel values in [0, 1] (one value = all channels).
        std: Per-channel standard deviation, same convention.
        hflip: Whether horizontal flips are a valid augmentation.
        crop_padding: Zero padding of the random-crop augmentation, px.
        num_classes: Fixed number of classes (``None``: ask ``info``).
    """

    description: str
    info: Callable[[DataRequest], DatasetInfo]
    load: Callable[[str, DataRequest], Batch] | None = None
    make_loaders: Callable[..., tuple[BatchLoader, BatchLoader, DatasetInfo]] | None = None
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    hflip: bool = True
    crop_padding: int = 4
    num_classes: int | None = None


#: Dataset name -> definition.
DATASETS: Registry[DatasetDef] = Registry("dataset")

#: What the full Fashion-MNIST and its shipped subset share.
_FASHION_MNIST_LIKE = dict(mean=(0.2860,), std=(0.3530,), hflip=True, crop_padding=2, num_classes=FASHION_MNIST_CLASSES)

DATASETS.add(
    "fashion-mnist",
    DatasetDef(
        "Fashion-MNIST, 60000/10000 grey 28x28 images of 10 clothing classes",
        info=fashion_mnist_info,
        load=load_fashion_mnist,
        **_FASHION_MNIST_LIKE,
    ),
)
DATASETS.add(
    "fashion-mnist-subset",
    DatasetDef(
        "class-balanced Fashion-MNIST subset shipped with pimprune (6000/2000 images)",
        info=subset_info,
        load=load_subset,
        **_FASHION_MNIST_LIKE,
    ),
)
DATASETS.add(
    "cifar10",
    DatasetDef(
        "CIFAR-10, 50000/10000 colour 32x32 images of 10 classes (python pickle release)",
        info=cifar10_info,
        load=load_cifar10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        hflip=True,
        crop_padding=4,
        num_classes=CIFAR10_CLASSES,
    ),
)


# --------------------------------------------------------------------------- synthetic


def make_synthetic(spec: SyntheticSpec, split: str) -> Batch:
    """Generate one split of the synthetic dataset (deterministic in ``spec``)."""
    check_split(split)
    protos_seq, train_seq, test_seq = np.random.SeedSequence(spec.seed).spawn(3)
    c, k, s = spec.in_channels, spec.num_classes, spec.input_size
    grid = max(2, s // 8)
    coarse = np.random.default_rng(protos_seq).standard_normal((k, c, grid, grid))
    protos = F.interpolate(
        torch.from_numpy(coarse).float(), size=(s, s), mode="bilinear", align_corners=False
    )
    protos = (protos - protos.mean(dim=(1, 2, 3), keepdim=True)) / (
        protos.std(dim=(1, 2, 3), keepdim=True) + 1e-6
    )
    n = spec.train_size if split == "train" else spec.test_size
    rng = np.random.default_rng(train_seq if split == "train" else test_seq)
    labels = rng.permutation(np.arange(n) % k)
    max_shift = max(1, s // 8)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    noise = rng.standard_normal((n, c, s, s)).astype(np.float32) * spec.noise
    images = protos[torch.from_numpy(labels)].numpy()
    for i, (dy, dx) in enumerate(shifts):
        images[i] = np.roll(images[i], (int(dy), int(dx)), axis=(1, 2))
    pixels = np.clip(np.rint(128.0 + 40.0 * (images + noise)), 0, 255).astype(np.uint8)
    return torch.from_numpy(pixels), torch.from_numpy(labels.astype(np.int64))


def _synthetic_info(req: DataRequest) -> DatasetInfo:
    sp = req.synthetic
    return DatasetInfo(sp.num_classes, sp.in_channels, sp.input_size, sp.train_size, sp.test_size)


DATASETS.add(
    "synthetic",
    DatasetDef(
        "deterministic random images with learnable classes (any size; for tests and demos)",
        info=_synthetic_info,
        load=lambda split, req: make_synthetic(req.synthetic, split),
        hflip=False,
        crop_padding=2,
    ),
)


DATASETS.add(
    "imagenet",
    DatasetDef(
        "ImageNet (ILSVRC-2012) as train/ and val/ class folders, 224 px crops",
        info=imagenet_info,
        make_loaders=imagenet_loaders,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ),
)


# --------------------------------------------------------------------------- validation split and API

#: Seed of the permutation that carves the validation split out of the training images. Fixed (not the
#: run's seed), so every run of a comparison holds out the same images.
VALIDATION_SEED = 20261201


def validation_split(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(train, validation)`` of ``n`` training samples with ``size`` held out for validation.

    The held-out samples are the first ``size`` of a fixed random permutation
    (:data:`VALIDATION_SEED`), so the split is the same for every run and seed;
    both index sets are sorted.

    Raises:
        ConfigError: if ``size`` leaves no training sample.
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < n:
        raise ConfigError(f"validation must be an integer in [0, {n - 1}] (held-out training images), got {size!r}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    return perm[size:].sort().values, perm[:size].sort().values


def dataset_names() -> list[str]:
    """Every registered dataset name, sorted."""
    return DATASETS.names()


def dataset_info(
    name: str, data_dir: str | Path | None = None, *, download: bool = False, synthetic: SyntheticSpec | None = None
) -> DatasetInfo:
    """Classes, channels, size and split sizes of a dataset (reads headers where it can).

    Raises:
        UnknownNameError: for an unregistered name.
        DataError: if the dataset cannot be found or read.
    """
    return DATASETS.get(name).info(data_request(data_dir, download, synthetic))


def load_data(
    name: str, split: str, data_dir: str | Path | None = None, *, download: bool = False,
    synthetic: SyntheticSpec | None = None,
) -> Batch:
    """Load one split of an in-memory dataset.

    Args:
        name: Dataset name (:data:`DATASETS`).
        split: ``"train"`` or ``"test"``.
        data_dir: Folder of the files (default: the dataset's search order).
        download: Allow torchvision to download a missing dataset.
        synthetic: Shape of the ``synthetic`` dataset.

    Returns:
        ``(images uint8 (N, C, H, W), labels int64 (N,))``.

    Raises:
        ConfigError: for a streamed dataset (``imagenet``; use ``make_loaders``)
            or an unknown split.
        DataError: if the files are missing or corrupt.
    """
    check_split(split)
    definition = DATASETS.get(name)
    if definition.load is None:
        raise ConfigError(f"dataset {name!r} is streamed from disk; use make_loaders() for it")
    return definition.load(split, data_request(data_dir, download, synthetic))


