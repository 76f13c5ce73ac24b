"""Build the class-balanced Fashion-MNIST subset that pimprune ships.

Reads the original IDX files (by default those of the Debian package
``dataset-fashion-mnist``), draws the same number of images from every class
with a fixed seed, and writes ``src/pimprune/assets/fashion_mnist_subset.npz``
(compressed; arrays ``train_images``/``test_images`` uint8 (N, 28, 28),
``train_labels``/``test_labels`` uint8 (N,), and ``train_index``/``test_index``,
the positions of the chosen images in the original files).

Usage::

    python scripts/make_fmnist_subset.py [--source DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pimprune.training.readers import SYSTEM_FASHION_MNIST, fashion_mnist_dir, fashion_mnist_files, load_idx_pair
from pimprune.training.sources import DataRequest

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "pimprune" / "assets"
NUM_CLASSES = 10


def balanced_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` random positions of every class, in random order."""
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False)
        for c in range(NUM_CLASSES)
    ]
    return rng.permutation(np.concatenate(chosen))


def main(argv: list[str] | None = None) -> int:
    """Write the subset file; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SYSTEM_FASHION_MNIST)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "fashion_mnist_subset.npz")
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    folder = fashion_mnist_dir(DataRequest(data_dir=args.source))
    rng = np.random.default_rng(args.seed)
    arrays: dict[str, np.ndarray] = {}
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        images, labels = load_idx_pair(*fashion_mnist_files(folder, split), NUM_CLASSES)
        images_np, labels_np = images[:, 0].numpy(), labels.numpy()
        index = balanced_indices(labels_np, per_class, rng)
        arrays[f"{split}_images"] = images_np[index]
        arrays[f"{split}_labels"] = labels_np[index].astype(np.uint8)
        arrays[f"{split}_index"] = index.astype(np.int32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    sizes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
