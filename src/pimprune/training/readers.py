"""Readers of the on-disk dataset formats: IDX (Fashion-MNIST), the shipped subset, CIFAR-10 pickles.

Each reader finds its files (explicit folder, then ``$PIMPRUNE_DATA``, then the
system location), checks them and returns ``uint8`` images with ``int64`` labels;
a bad file is a one-line :class:`DataError` that says how to fix it.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pimprune.errors import DataError
from pimprune.training.sources import (
    DATA_ENV,
    SPLITS,
    Batch,
    DataRequest,
    DatasetInfo,
    check_folder,
    check_labels,
    download_root,
    env_root,
)

#: Where the Debian package ``dataset-fashion-mnist`` installs its files.
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

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
FASHION_MNIST_CLASSES = 10


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
    """The folder holding the Fashion-MNIST IDX files.

    Looks in ``req.data_dir``, else ``$PIMPRUNE_DATA``, else :data:`SYSTEM_FASHION_MNIST`
    (each also in its ``fashion-mnist/`` sub-folder); downloads only if ``req.download``.

    Raises:
        DataError: if an explicit folder is missing, empty or lacks the files,
            or no default location has them and ``download`` is off.
    """
    if req.data_dir is not None:
        root = req.data_dir.expanduser()
        check_folder(root, "Fashion-MNIST", _FMNIST_FIX)
        found = _fmnist_in(root)
        if found is None:
            raise DataError(
                f"Fashion-MNIST file {root / FASHION_MNIST_FILES['train'][0]}(.gz) not found "
                f"(nor in its fashion-mnist/ sub-folder); {_FMNIST_FIX}"
            )
        return found
    looked = []
    for root in (env_root(), SYSTEM_FASHION_MNIST):
        if root is None:
            continue
        looked.append(str(root))
        found = _fmnist_in(root)
        if found is not None:
            return found
    if req.download:
        import torchvision

        root = download_root(req)
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
    check_labels(labels, num_classes, labels_path)
    return (
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
    )


def load_fashion_mnist(split: str, req: DataRequest) -> Batch:
    """One split of Fashion-MNIST from its IDX files."""
    images, labels = fashion_mnist_files(fashion_mnist_dir(req), split)
    return load_idx_pair(images, labels, FASHION_MNIST_CLASSES)


def fashion_mnist_info(req: DataRequest) -> DatasetInfo:
    """Fashion-MNIST's shape, from the IDX headers alone."""
    folder = fashion_mnist_dir(req)
    sizes = {}
    for split in SPLITS:
        images, _ = fashion_mnist_files(folder, split)
        sizes[split] = _idx_header_dims(images)[0]
    return DatasetInfo(FASHION_MNIST_CLASSES, 1, 28, sizes["train"], sizes["test"])


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


def load_subset(split: str, req: DataRequest) -> Batch:
    """One split of the shipped Fashion-MNIST subset."""
    arrays = _subset_arrays()
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    check_labels(labels, FASHION_MNIST_CLASSES, subset_path())
    return (
        torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
    )


def subset_info(req: DataRequest) -> DatasetInfo:
    """The shipped subset's shape."""
    arrays = _subset_arrays()
    return DatasetInfo(
        FASHION_MNIST_CLASSES, 1, 28, len(arrays["train_labels"]), len(arrays["test_labels"])
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
CIFAR10_CLASSES = 10
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
        check_folder(root, "CIFAR-10", _CIFAR_FIX)
        if (root / CIFAR10_FOLDER).is_dir():
            return root / CIFAR10_FOLDER
        return root
    env = env_root()
    if env is not None:
        for folder in (env / CIFAR10_FOLDER, env / "cifar10" / CIFAR10_FOLDER, env):
            if (folder / CIFAR10_FILES["test"][0]).is_file():
                return folder
    if req.download:
        import torchvision

        root = download_root(req)
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
    check_labels(labels_arr, CIFAR10_CLASSES, path)
    return data.reshape(-1, 3, 32, 32), labels_arr


def load_cifar10(split: str, req: DataRequest) -> Batch:
    """One split of CIFAR-10 from its python batch files."""
    folder = _cifar_dir(req)
    parts = [read_cifar_batch(folder / name) for name in CIFAR10_FILES[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


def cifar10_info(req: DataRequest) -> DatasetInfo:
    """CIFAR-10's shape (reads the batch files: a pickle has no cheap header)."""
    sizes = {s: len(load_cifar10(s, req)[1]) for s in SPLITS}
    return DatasetInfo(CIFAR10_CLASSES, 3, 32, sizes["train"], sizes["test"])


