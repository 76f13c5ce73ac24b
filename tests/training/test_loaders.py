"""Tests of pimprune.training.loaders: limits, ranks, argument checks and the validation loader."""

from __future__ import annotations

import pytest
import torch

from pimprune.errors import ConfigError, UnknownNameError
from pimprune.training.datasets import dataset_names, load_data
from pimprune.training.loaders import make_loaders, make_validation_loader
from pimprune.training.sources import DatasetInfo, SyntheticSpec


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


def _rows(loader) -> set[bytes]:
    return {x.numpy().tobytes() for xb, _ in loader for x in xb}


def test_validation_images_never_reach_training():
    train, _, info = make_loaders("synthetic", 16, augment=False, validation=40)
    val = make_validation_loader("synthetic", 16, 40)
    full, _, full_info = make_loaders("synthetic", 16, augment=False)
    assert info.train_size == full_info.train_size - 40
    seen, held = _rows(train), _rows(val)
    assert len(held) == 40 and seen.isdisjoint(held)
    assert held <= _rows(full) and seen <= _rows(full)  # the training loader drops its last partial batch


def test_validation_split_refused_for_streamed_data(tmp_path):
    with pytest.raises(ConfigError, match="streamed"):
        make_validation_loader("imagenet", 4, 10, data_dir=tmp_path)
