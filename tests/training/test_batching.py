"""Tests of pimprune.training.batching: TensorLoader order, augmentation, DDP shards."""

from __future__ import annotations

import pytest
import torch

from pimprune.errors import ConfigError
from pimprune.training.batching import TensorLoader, shard_indices


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
