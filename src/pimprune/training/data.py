"""Datasets and fast batching.

Registered datasets (:data:`DATASETS`):

- ``fashion-mnist``: the original IDX files (``train-images-idx3-ubyte(.gz)``
  etc.), looked up in an explicit ``data_dir``, then ``$PIMPRUNE_DATA``, then
  ``/usr/share/datasets/fashion-mnist`` (Debian package
  ``dataset-fashion-mnist``); downloaded with torchvision only when
  ``download=True``.
- ``fashion-mnist-subset``: a class-balanced 6000/2000 subset of Fashion-MNIST
  shipped with pimprune (``assets/fashion_mnist_subset.npz``), always available.
- ``cifar10``: the python-pickle release (``cifar-10-batches-py`` with
  ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``).
- ``imagenet``: ``train/`` and ``val/`` folders of one sub-folder per class
  (torchvision ``ImageFolder``), 224 px crops, streamed from disk.
- ``synthetic``: deterministic random images with class structure a small
  network learns in seconds, any size, channels and classes (:class:`SyntheticSpec`).

The small datasets live in memory as ``uint8`` tensors and are batched by
:class:`TensorLoader` (batch-wise augmentation on tensors, optionally on the
GPU), which is far faster than a per-sample ``DataLoader`` on few CPU cores.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, Subset

from pimprune.errors import ConfigError, DataError
from pimprune.registry import Registry

#: Environment variable naming a root folder of datasets.
DATA_ENV = "PIMPRUNE_DATA"
#: Where the Debian package ``dataset-fashion-mnist`` installs its files.
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Folder that ``download=True`` uses when neither ``data_dir`` nor ``$PIMPRUNE_DATA`` is set.
DEFAULT_DOWNLOAD_ROOT = Path("~/.cache/pimprune/data")
#: Side of the ImageNet crops, px.
IMAGENET_SIZE = 224

SPLITS = ("train", "test")

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


class BatchLoader(Protocol):
    """What trainers iterate over: ``(images float, labels int64)`` batches."""

    def __iter__(self) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""


# --------------------------------------------------------------------------- helpers


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


def _check_labels(labels: np.ndarray, num_classes: int, source: Path | str) -> None:
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"{source}: labels must lie in 0..{num_classes - 1}, found "
            f"{int(labels.min())}..{int(labels.max())}; the file is corrupt or from another dataset"
        )


def _check_folder(path: Path, what: str, fix: str) -> None:
    """Raise DataError if ``path`` is missing, not a folder or empty."""
    if not path.exists():
        raise DataError(f"{what} folder {path} does not exist; {fix}")
    if not path.is_dir():
        raise DataError(f"{what} path {path} is not a folder; {fix}")
    if not any(path.iterdir()):
        raise DataError(f"{what} folder {path} is empty; {fix}")


def _env_root() -> Path | None:
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def _download_root(req: DataRequest) -> Path:
    return (req.data_dir or _env_root() or DEFAULT_DOWNLOAD_ROOT).expanduser()


# --------------------------------------------------------------------------- IDX files

#: IDX type codes -> numpy dtypes (big-endian), LeCun's format.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_maybe_gzip(path: Path, fix: str) -> bytes:
    """The bytes of ``path``, decompressed if it is gzip (by content, not by name)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; {fix}") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is a damaged gzip file ({exc}); {fix}") from None
    if path.suffix == ".gz":
        raise DataError(f"{path} is not a gzip file although its name ends in .gz; {fix}")
    return raw


def read_idx(
    path: Path | str, ndim: int | None = None, fix: str = "replace the file"
) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) into a numpy array.

    Args:
        path: The file.
        ndim: Expected number of dimensions (3 for images, 1 for labels), or ``None``.
        fix: What the error message tells the user to do.

    Raises:
        DataError: for a wrong magic number, a size that does not match the
            header, or a damaged gzip stream.
    """
    path = Path(path)
    raw = _read_maybe_gzip(path, fix)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        magic = raw[:4].hex() or "empty"
        raise DataError(f"{path} is not an IDX file (magic 0x{magic}); {fix}")
    dims_n = raw[3]
    if ndim is not None and dims_n != ndim:
        raise DataError(
            f"{path} holds a {dims_n}-dimensional IDX array, expected {ndim} dimensions "
            f"(magic 0x{raw[:4].hex()}); is it the right file? {fix}"
        )
    header = 4 + 4 * dims_n
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its IDX header; {fix}")
    dims = struct.unpack(f">{dims_n}I", raw[4:header])
    dtype = _IDX_DTYPES[raw[2]]
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} holds {len(raw) - header} bytes of data but its header announces "
            f"{'x'.join(map(str, dims))} = {expected} bytes (truncated or corrupt); {fix}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _idx_header_dims(path: Path) -> tuple[int, ...]:
    """The dimensions an IDX header announces (reads only the header)."""
    try:
        with open(path, "rb") as fh:
            compressed = fh.read(2) == _GZIP_MAGIC
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; replace it") from None
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise DataError(f"{path} is not an IDX file (magic 0x{head.hex()}); replace it")
            rest = fh.read(4 * head[3])
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a damaged gzip file ({exc}); replace it") from None
    if len(rest) < 4 * head[3]:
        raise DataError(f"{path} is truncated inside its IDX header; replace it")
    return struct.unpack(f">{head[3]}I", rest)


# --------------------------------------------------------------------------- Fashion-MNIST

#: Split -> (images file, labels file), without the optional ``.gz``.
FASHION_MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FMNIST_FIX = (
    "install the Debian package dataset-fashion-mnist, point --data-dir (or "
    f"${DATA_ENV}) at the folder of the IDX files, or use the shipped fashion-mnist-subset"
)
_FMNIST_CLASSES = 10


def _fmnist_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _fmnist_candidates(root: Path) -> list[Path]:
    return [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]


def _fmnist_in(root: Path) -> Path | None:
    for folder in _fmnist_candidates(root):
        if any(_fmnist_file(folder, s) for pair in FASHION_MNIST_FILES.values() for s in pair):
            return folder
    return None


def fashion_mnist_dir(req: DataRequest) -> Path:
    """The folder holding the Fashion-MNIST IDX files (search order in the module doc).

    Raises:
        DataError: if an explicit folder is missing, empty or lacks the files,
            or no default location has them and ``download`` is off.
    """
    if req.data_dir is not None:
        root = req.data_dir.expanduser()
        _check_folder(root, "Fashion-MNIST", _FMNIST_FIX)
        found = _fmnist_in(root)
        if found is None:
            raise DataError(
                f"Fashion-MNIST file {root / FASHION_MNIST_FILES['train'][0]}(.gz) not found "
                f"(nor in its fashion-mnist/ sub-folder); {_FMNIST_FIX}"
            )
        return found
    looked = []
    for root in (_env_root(), SYSTEM_FASHION_MNIST):
        if root is None:
            continue
        looked.append(str(root))
        found = _fmnist_in(root)
        if found is not None:
            return found
    if req.download:
        import torchvision

        root = _download_root(req)
        torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
        torchvision.datasets.FashionMNIST(str(root), train=False, download=True)
        return root / "FashionMNIST" / "raw"
    raise DataError(f"Fashion-MNIST not found (looked in {', '.join(looked)}); {_FMNIST_FIX}")


def fashion_mnist_files(folder: Path, split: str) -> tuple[Path, Path]:
    """The ``(images, labels)`` IDX files of ``split`` in ``folder`` (plain or ``.gz``).

    Raises:
        DataError: naming the first file that is missing.
    """
    paths = []
    for stem in FASHION_MNIST_FILES[split]:
        path = _fmnist_file(folder, stem)
        if path is None:
            raise DataError(f"Fashion-MNIST file {folder / stem}(.gz) is missing; {_FMNIST_FIX}")
        paths.append(path)
    return paths[0], paths[1]


def load_idx_pair(images_path: Path, labels_path: Path, num_classes: int) -> Batch:
    """Read an IDX images/labels pair as ``(uint8 (N, 1, H, W), int64 (N,))`` tensors."""
    fix = "replace the file (e.g. reinstall dataset-fashion-mnist)"
    images = read_idx(images_path, ndim=3, fix=fix)
    labels = read_idx(labels_path, ndim=1, fix=fix)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"{images_path} / {labels_path} must hold unsigned bytes; {fix}")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; {fix}"
        )
    _check_labels(labels, num_classes, labels_path)
    return (
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
    )


def _fmnist_load(split: str, req: DataRequest) -> Batch:
    images, labels = fashion_mnist_files(fashion_mnist_dir(req), split)
    return load_idx_pair(images, labels, _FMNIST_CLASSES)


def _fmnist_info(req: DataRequest) -> DatasetInfo:
    folder = fashion_mnist_dir(req)
    sizes = {}
    for split in SPLITS:
        images, _ = fashion_mnist_files(folder, split)
        sizes[split] = _idx_header_dims(images)[0]
    return DatasetInfo(_FMNIST_CLASSES, 1, 28, sizes["train"], sizes["test"])


_FMNIST_MEAN = (0.2860,)
_FMNIST_STD = (0.3530,)

DATASETS.add(
    "fashion-mnist",
    DatasetDef(
        "Fashion-MNIST, 60000/10000 grey 28x28 images of 10 clothing classes",
        info=_fmnist_info,
        load=_fmnist_load,
        mean=_FMNIST_MEAN,
        std=_FMNIST_STD,
        hflip=True,
        crop_padding=2,
        num_classes=_FMNIST_CLASSES,
    ),
)


# --------------------------------------------------------------------------- shipped subset

SUBSET_FILE = "fashion_mnist_subset.npz"
_SUBSET_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def subset_path() -> Path:
    """Path of the shipped Fashion-MNIST subset."""
    return Path(str(resources.files("pimprune") / "assets" / SUBSET_FILE))


def _subset_arrays() -> dict[str, np.ndarray]:
    path = subset_path()
    fix = "reinstall pimprune or rebuild it with scripts/make_fmnist_subset.py"
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _SUBSET_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{path} lacks array {missing[0]!r}; {fix}")
            return {k: npz[k] for k in _SUBSET_KEYS}
    except FileNotFoundError:
        raise DataError(f"shipped Fashion-MNIST subset {path} is missing; {fix}") from None
    except (OSError, ValueError, zlib.error, EOFError) as exc:
        raise DataError(f"shipped Fashion-MNIST subset {path} is corrupt ({exc}); {fix}") from None


def _subset_load(split: str, req: DataRequest) -> Batch:
    arrays = _subset_arrays()
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    _check_labels(labels, _FMNIST_CLASSES, subset_path())
    return (
        torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
    )


def _subset_info(req: DataRequest) -> DatasetInfo:
    arrays = _subset_arrays()
    return DatasetInfo(
        _FMNIST_CLASSES, 1, 28, len(arrays["train_labels"]), len(arrays["test_labels"])
    )


DATASETS.add(
    "fashion-mnist-subset",
    DatasetDef(
        "class-balanced Fashion-MNIST subset shipped with pimprune (6000/2000 images)",
        info=_subset_info,
        load=_subset_load,
        mean=_FMNIST_MEAN,
        std=_FMNIST_STD,
        hflip=True,
        crop_padding=2,
        num_classes=_FMNIST_CLASSES,
    ),
)


# --------------------------------------------------------------------------- CIFAR-10

CIFAR10_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR_FIX = (
    f"point --data-dir (or ${DATA_ENV}) at the folder {CIFAR10_FOLDER} of the python "
    "version of CIFAR-10 (https://www.cs.toronto.edu/~kriz/cifar.html)"
)
_CIFAR_CLASSES = 10
_CIFAR_PIXELS = 3 * 32 * 32


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only (no arbitrary code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden object {module}.{name}")


def _cifar_dir(req: DataRequest) -> Path:
    if req.data_dir is not None:
        root = req.data_dir.expanduser()
        _check_folder(root, "CIFAR-10", _CIFAR_FIX)
        if (root / CIFAR10_FOLDER).is_dir():
            return root / CIFAR10_FOLDER
        return root
    env = _env_root()
    if env is not None:
        for folder in (env / CIFAR10_FOLDER, env / "cifar10" / CIFAR10_FOLDER, env):
            if (folder / CIFAR10_FILES["test"][0]).is_file():
                return folder
    if req.download:
        import torchvision

        root = _download_root(req)
        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
        return root / CIFAR10_FOLDER
    raise DataError(
        f"CIFAR-10 not found (no --data-dir given, ${DATA_ENV} unset or without it); {_CIFAR_FIX}"
    )


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch file as ``(uint8 (N, 3, 32, 32), int64 (N,))``.

    Raises:
        DataError: if the file is missing, not a pickle of the expected
            dictionary, or holds out-of-range labels.
    """
    fix = f"replace it with the file from the CIFAR-10 python release; {_CIFAR_FIX}"
    if not path.is_file():
        raise DataError(f"CIFAR-10 file {path} is missing; {_CIFAR_FIX}")
    try:
        with open(path, "rb") as fh:
            entry = _SafeUnpickler(fh, encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
        struct.error,
    ) as exc:
        raise DataError(f"CIFAR-10 file {path} is corrupt ({exc}); {fix}") from None
    if not isinstance(entry, dict):
        raise DataError(f"CIFAR-10 file {path} does not hold a dictionary; {fix}")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    data, labels = entry.get("data"), entry.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"CIFAR-10 file {path} lacks its 'data' array or 'labels' list; {fix}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_PIXELS:
        raise DataError(
            f"CIFAR-10 file {path}: 'data' must be uint8 of shape (N, {_CIFAR_PIXELS}), "
            f"got {data.dtype} {tuple(data.shape)}; {fix}"
        )
    try:
        labels_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (ValueError, TypeError):
        raise DataError(f"CIFAR-10 file {path}: 'labels' are not integers; {fix}") from None
    if len(labels_arr) != len(data):
        raise DataError(
            f"CIFAR-10 file {path} holds {len(data)} images but {len(labels_arr)} labels; {fix}"
        )
    _check_labels(labels_arr, _CIFAR_CLASSES, path)
    return data.reshape(-1, 3, 32, 32), labels_arr


def _cifar_load(split: str, req: DataRequest) -> Batch:
    folder = _cifar_dir(req)
    parts = [read_cifar_batch(folder / name) for name in CIFAR10_FILES[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


def _cifar_info(req: DataRequest) -> DatasetInfo:
    sizes = {s: len(_cifar_load(s, req)[1]) for s in SPLITS}
    return DatasetInfo(_CIFAR_CLASSES, 3, 32, sizes["train"], sizes["test"])


DATASETS.add(
    "cifar10",
    DatasetDef(
        "CIFAR-10, 50000/10000 colour 32x32 images of 10 classes (python pickle release)",
        info=_cifar_info,
        load=_cifar_load,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        hflip=True,
        crop_padding=4,
        num_classes=_CIFAR_CLASSES,
    ),
)


# --------------------------------------------------------------------------- synthetic


def make_synthetic(spec: SyntheticSpec, split: str) -> Batch:
    """Generate one split of the synthetic dataset (deterministic in ``spec``)."""
    _check_split(split)
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


# --------------------------------------------------------------------------- batching


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


# --------------------------------------------------------------------------- ImageNet

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGENET_FIX = (
    f"point --data-dir (or ${DATA_ENV}/imagenet) at a folder with train/ and val/, "
    "each holding one sub-folder of images per class"
)


def _imagenet_root(req: DataRequest) -> Path:
    if req.data_dir is not None:
        root = req.data_dir.expanduser()
    else:
        env = _env_root()
        if env is None:
            raise DataError(
                f"ImageNet location unknown (no --data-dir, ${DATA_ENV} unset); {_IMAGENET_FIX}"
            )
        root = env / "imagenet" if (env / "imagenet").is_dir() else env
    _check_folder(root, "ImageNet", _IMAGENET_FIX)
    for split in ("train", "val"):
        _check_folder(root / split, f"ImageNet {split}", _IMAGENET_FIX)
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
        v2.Normalize(_IMAGENET_MEAN, _IMAGENET_STD),
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


def _imagenet_info(req: DataRequest) -> DatasetInfo:
    train, val = _imagenet_datasets(req, augment=False)
    return DatasetInfo(len(train.classes), 3, IMAGENET_SIZE, len(train), len(val))


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


def _evenly_spaced(n: int, limit: int | None) -> torch.Tensor | None:
    if limit is None or limit >= n:
        return None
    return torch.arange(limit) * n // limit


def _imagenet_loaders(
    req: DataRequest, opts: LoaderOptions
) -> tuple[BatchLoader, BatchLoader, DatasetInfo]:
    train, val = _imagenet_datasets(req, opts.augment)
    num_classes = len(train.classes)
    parts = []
    for ds, limit in ((train, opts.limit_train), (val, opts.limit_test)):
        keep = _evenly_spaced(len(ds), limit)
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


DATASETS.add(
    "imagenet",
    DatasetDef(
        "ImageNet (ILSVRC-2012) as train/ and val/ class folders, 224 px crops",
        info=_imagenet_info,
        make_loaders=_imagenet_loaders,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
    ),
)


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class LoaderOptions:
    """Batching options of :func:`load_loaders` (and the keywords of :func:`make_loaders`).

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
        validation: Training images held out for validation (:func:`validation_split`); they are
            left out of the training loader, before ``limit_train`` applies, and
            :func:`make_validation_loader` serves them.
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


def data_request(
    data_dir: str | Path | None = None, download: bool = False, synthetic: SyntheticSpec | None = None
) -> DataRequest:
    """Where a dataset's files are: ``data_dir`` (None: its search order), download allowed or not."""
    return DataRequest(
        data_dir=None if data_dir is None else Path(data_dir),
        download=download,
        synthetic=synthetic or SyntheticSpec(),
    )


def dataset_info(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    synthetic: SyntheticSpec | None = None,
) -> DatasetInfo:
    """Classes, channels, size and split sizes of a dataset (reads headers where it can).

    Raises:
        UnknownNameError: for an unregistered name.
        DataError: if the dataset cannot be found or read.
    """
    return DATASETS.get(name).info(data_request(data_dir, download, synthetic))


def load_data(
    name: str,
    split: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
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
        ConfigError: for a streamed dataset (``imagenet``; use :func:`make_loaders`)
            or an unknown split.
        DataError: if the files are missing or corrupt.
    """
    _check_split(split)
    definition = DATASETS.get(name)
    if definition.load is None:
        raise ConfigError(f"dataset {name!r} is streamed from disk; use make_loaders() for it")
    return definition.load(split, data_request(data_dir, download, synthetic))


def _check_limit(what: str, limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{what} must be an integer >= 1 or None, got {limit!r}")


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
        keep = _evenly_spaced(len(labels), limit)
        if keep is not None:
            images, labels = images[keep], labels[keep]
        splits[split] = (images, labels)
    return _tensor_loaders(definition, req, opts, splits)


def _tensor_loaders(
    definition: Any, req: DataRequest, opts: LoaderOptions, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
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
