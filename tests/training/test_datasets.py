"""Tests of pimprune.training.datasets: the synthetic dataset and the validation split."""

from __future__ import annotations

import pytest
import torch

from pimprune.errors import ConfigError
from pimprune.training.datasets import dataset_info, load_data, validation_split
from pimprune.training.sources import DatasetInfo, SyntheticSpec


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


def test_validation_split_is_fixed_disjoint_and_complete():
    train, val = validation_split(100, 20)
    again_train, again_val = validation_split(100, 20)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert len(val) == 20 and len(train) == 80
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(100))
    with pytest.raises(ConfigError, match="validation"):
        validation_split(10, 10)
