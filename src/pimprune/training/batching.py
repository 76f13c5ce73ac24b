"""Batching: in-memory and on-disk loaders, split between DDP ranks, and their options.

Small datasets live in memory as ``uint8`` tensors and are batched by
:class:`TensorLoader` (batch-wise augmentation on tensors, optionally on the
GPU), far faster than a per-sample ``DataLoader`` on few CPU cores; on-disk
datasets go through :class:`FolderLoader`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from pimprune.errors import ConfigError, DataError
from pimprune.training.sources import Batch


class BatchLoader(Protocol):
    """What trainers iterate over: ``(images float, labels int64)`` batches."""

    def __iter__(self) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""


def _stats(values: Sequence[float], channels: int, what: str) -> torch.Tensor:
    if len(values) == 1:
        values = tuple(values) * channels
    if len(values) != channels:
        raise ConfigError(f"{what} has {len(values)} values for {channels} image channels")
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def shard_indices(
    num_items: int,
    rank: int,
    world_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
) -> torch.Tensor:
    """This rank's sample indices, as ``DistributedSampler`` (``drop_last=False``) picks them.

    The order is one permutation (seeded with ``seed + epoch``) shared by all
    ranks, padded by repeating its head to a multiple of ``world_size`` and
    dealt round-robin, so every rank gets ``ceil(num_items / world_size)`` indices.
    """
    if shuffle:
        gen = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(num_items, generator=gen)
    else:
        order = torch.arange(num_items)
    per_rank = math.ceil(num_items / world_size)
    total = per_rank * world_size
    if total > num_items:
        reps = math.ceil(total / num_items)
        order = order.repeat(reps)[:total]
    return order[rank:total:world_size]


def _check_distributed(rank: int, world_size: int) -> None:
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ConfigError(f"world_size must be an integer >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be an integer in 0..{world_size - 1}, got {rank!r}")


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be an integer >= 1, got {batch_size!r}")


def _check_limit(what: str, limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{what} must be an integer >= 1 or None, got {limit!r}")


class TensorLoader:
    """Batches an in-memory ``uint8`` image tensor, with batch-wise augmentation.

    Each rank of a DDP job holds the whole tensor and iterates over its own
    shard (:func:`shard_indices`, the same split as ``DistributedSampler``), so
    all ranks see the same number of batches. Order and augmentation depend
    only on ``seed``, the epoch (:meth:`set_epoch`) and the rank.

    Args:
        images: ``(N, C, H, W)`` ``uint8`` images.
        labels: ``(N,)`` integer labels.
        batch_size: Samples per batch (per rank).
        mean: Per-channel mean of pixels in [0, 1] (one value = every channel).
        std: Per-channel standard deviation, same convention.
        shuffle: Reshuffle every epoch.
        augment: Random crop (zero padding ``crop_padding`` px) and, if
            ``hflip``, random horizontal flips, done on whole batches.
        crop_padding: Padding of the random crop, px (0 = no crop).
        hflip: Whether augmentation flips images horizontally.
        seed: Seed of order and augmentation.
        drop_last: Drop this rank's last, incomplete batch.
        device: Where images, labels and batches live (e.g. ``"cuda"``).
        rank: This process's rank.
        world_size: Number of DDP processes.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
        shuffle: bool = False,
        augment: bool = False,
        crop_padding: int = 4,
        hflip: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ConfigError(
                "images must be a uint8 (N, C, H, W) tensor, "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        if labels.dim() != 1 or len(labels) != len(images):
            raise ConfigError(
                f"labels must be 1-D with {len(images)} entries, got {tuple(labels.shape)}"
            )
        if len(images) == 0:
            raise DataError("the dataset is empty; check the data folder or the limit")
        _check_batch_size(batch_size)
        _check_distributed(rank, world_size)
        if crop_padding < 0:
            raise ConfigError(f"crop padding must be >= 0 px, got {crop_padding}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, dtype=torch.int64)
        self.batch_size = batch_size
        channels = images.shape[1]
        self.mean = _stats(mean, channels, "mean").to(self.device)
        self.std = _stats(std, channels, "std").to(self.device)
        self.shuffle = shuffle
        self.augment = augment
        self.crop_padding = int(crop_padding)
        self.hflip = hflip
        self.seed = int(seed)
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """Samples this rank visits per epoch (padding included)."""
        return math.ceil(len(self.images) / self.world_size)

    @property
    def padding(self) -> int:
        """Samples repeated over all ranks to make the shards equal (0 on one process)."""
        return self.num_samples * self.world_size - len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch (on the CPU)."""
        return shard_indices(
            len(self.images), self.rank, self.world_size, self.shuffle, self.seed, self.epoch
        )

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8`` images to normalised ``float32``."""
        return (images.float().div_(255.0) - self.mean) / self.std

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.crop_padding
        if p:
            offsets = torch.randint(0, 2 * p + 1, (2, b), generator=gen).to(self.device)
            padded = F.pad(x, (p, p, p, p))
            rows = (offsets[0].view(b, 1) + torch.arange(h, device=self.device)).view(b, 1, h, 1)
            cols = (offsets[1].view(b, 1) + torch.arange(w, device=self.device)).view(b, 1, 1, w)
            batch = torch.arange(b, device=self.device).view(b, 1, 1, 1)
            chans = torch.arange(c, device=self.device).view(1, c, 1, 1)
            x = padded[batch, chans, rows, cols]
        if self.hflip:
            flip = (torch.rand(b, generator=gen) < 0.5).to(self.device).view(b, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
        return x

    def __iter__(self) -> Iterator[Batch]:
        idx = self.indices().to(self.device)
        gen = torch.Generator().manual_seed(_derive_seed(self.seed, self.epoch, self.rank))
        for i in range(len(self)):
            chunk = idx[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[chunk]
            if self.augment:
                x = self._augment(x, gen)
            yield self.normalize(x), self.labels[chunk]


class FolderLoader:
    """A ``DataLoader`` over an on-disk dataset with a ``DistributedSampler``.

    Yields ``(float images, int64 labels)`` on ``device``. The sample order is
    deterministic in ``seed`` and the epoch; so is the augmentation when
    ``num_workers > 0`` (worker seeds come from ``seed``, the epoch and the rank).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        drop_last: bool,
        device: str | torch.device,
        rank: int,
        world_size: int,
        num_workers: int,
    ) -> None:
        self.device = torch.device(device)
        self.seed = seed
        self.rank = rank
        self.epoch = 0
        self.sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed
        )
        self._generator = torch.Generator()
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            drop_last=drop_last,
            pin_memory=self.device.type == "cuda",
            generator=self._generator,
            persistent_workers=False,
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        self.epoch = int(epoch)
        self.sampler.set_epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        self._generator.manual_seed(_derive_seed(self.seed, self.epoch, self.rank))
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def evenly_spaced(n: int, limit: int | None) -> torch.Tensor | None:
    """``limit`` evenly spaced indices of ``n`` samples (balanced for class-sorted files); None keeps all."""
    if limit is None or limit >= n:
        return None
    return torch.arange(limit) * n // limit


@dataclass(frozen=True)
class LoaderOptions:
    """Batching options of :func:`pimprune.training.loaders.load_loaders` (keywords of ``make_loaders``).

    Attributes:
        batch_size: Samples per batch on each rank.
        augment: Random crops (and flips where valid) for training.
        seed: Seed of order and augmentation.
        device: Where batches are produced (small datasets live there entirely).
        rank: This process's DDP rank.
        world_size: Number of DDP processes.
        limit_train: Keep at most this many training samples.
        limit_test: Keep at most this many test samples.
        test_batch_size: Batch size of the test loader (default ``batch_size``).
        num_workers: Worker processes of on-disk datasets (default: up to 8).
        validation: Training images held out for validation
            (:func:`pimprune.training.datasets.validation_split`); they are left out of the
            training loader, before ``limit_train`` applies, and ``make_validation_loader`` serves them.
    """

    batch_size: int
    augment: bool = True
    seed: int = 0
    device: str | torch.device = "cpu"
    rank: int = 0
    world_size: int = 1
    limit_train: int | None = None
    limit_test: int | None = None
    test_batch_size: int | None = None
    num_workers: int | None = None
    validation: int = 0

    def check(self) -> None:
        """Raise :class:`ConfigError` for a bad batch size, rank or limit."""
        _check_batch_size(self.batch_size)
        if self.test_batch_size is not None:
            _check_batch_size(self.test_batch_size)
        _check_distributed(self.rank, self.world_size)
        _check_limit("limit_train", self.limit_train)
        _check_limit("limit_test", self.limit_test)


