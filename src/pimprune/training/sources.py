"""What a dataset request and a dataset look like, and the checks all datasets share.

The file readers, the dataset registry and the loaders build on these types;
keeping them here lets those modules depend on one base instead of on each other.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pimprune.errors import ConfigError, DataError

#: Environment variable naming a root folder of datasets.
DATA_ENV = "PIMPRUNE_DATA"
#: Folder that ``download=True`` uses when neither ``data_dir`` nor ``$PIMPRUNE_DATA`` is set.
DEFAULT_DOWNLOAD_ROOT = Path("~/.cache/pimprune/data")

#: The splits every dataset has.
SPLITS = ("train", "test")

#: ``(images, labels)`` tensors.
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class DatasetInfo:
    """Shape of a dataset.

    Attributes:
        num_classes: Number of classes.
        in_channels: Image channels.
        input_size: Side of the (square) images the model sees, px.
        train_size: Training samples.
        test_size: Test samples.
    """

    num_classes: int
    in_channels: int
    input_size: int
    train_size: int
    test_size: int


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape of the ``synthetic`` dataset.

    Each class has a smooth random prototype image; a sample is its class's
    prototype, shifted by a few pixels, plus Gaussian pixel noise.

    Attributes:
        num_classes: Classes (>= 2).
        in_channels: Image channels.
        input_size: Image side, px (>= 4).
        train_size: Training samples.
        test_size: Test samples.
        noise: Pixel-noise standard deviation relative to the prototypes' (which is 1).
        seed: Seed of the generator; the same spec gives the same images.
    """

    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32
    train_size: int = 512
    test_size: int = 256
    noise: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (
            ("num_classes", 2),
            ("in_channels", 1),
            ("input_size", 4),
            ("train_size", 1),
            ("test_size", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(
                    f"synthetic {name} must be an integer >= {minimum}, got {value!r}"
                )
        if not (isinstance(self.noise, (int, float)) and 0 <= self.noise < math.inf):
            raise ConfigError(f"synthetic noise must be a finite number >= 0, got {self.noise!r}")


@dataclass(frozen=True)
class DataRequest:
    """Where and how to find a dataset.

    Attributes:
        data_dir: Explicit folder (``None``: search the defaults).
        download: Whether torchvision may download a missing dataset.
        synthetic: Shape of the ``synthetic`` dataset.
    """

    data_dir: Path | None = None
    download: bool = False
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)


def data_request(
    data_dir: str | Path | None = None, download: bool = False, synthetic: SyntheticSpec | None = None
) -> DataRequest:
    """Where a dataset's files are: ``data_dir`` (None: its search order), download allowed or not."""
    return DataRequest(
        data_dir=None if data_dir is None else Path(data_dir),
        download=download,
        synthetic=synthetic or SyntheticSpec(),
    )


def check_split(split: str) -> None:
    """Raise ConfigError unless ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


def check_labels(labels: np.ndarray, num_classes: int, source: Path | str) -> None:
    """Raise DataError naming ``source`` if a label lies outside ``0..num_classes - 1``."""
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"{source}: labels must lie in 0..{num_classes - 1}, found "
            f"{int(labels.min())}..{int(labels.max())}; the file is corrupt or from another dataset"
        )


def check_folder(path: Path, what: str, fix: str) -> None:
    """Raise DataError if ``path`` is missing, not a folder or empty."""
    if not path.exists():
        raise DataError(f"{what} folder {path} does not exist; {fix}")
    if not path.is_dir():
        raise DataError(f"{what} path {path} is not a folder; {fix}")
    if not any(path.iterdir()):
        raise DataError(f"{what} folder {path} is empty; {fix}")


def env_root() -> Path | None:
    """The dataset root folder ``$PIMPRUNE_DATA`` names, if set."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def download_root(req: DataRequest) -> Path:
    """Where ``download=True`` puts files: ``data_dir``, else ``$PIMPRUNE_DATA``, else the cache."""
    return (req.data_dir or env_root() or DEFAULT_DOWNLOAD_ROOT).expanduser()

