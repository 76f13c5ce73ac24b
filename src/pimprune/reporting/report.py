"""Report figures: per-layer crossbars and weight-matrix heat maps with the crossbar grid.

matplotlib (extra ``plot``) is imported lazily with the Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from pimprune.geometry import Crossbar


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_layer_crossbars(
    layer_names: Sequence[str],
    dense: Sequence[int],
    pruned: Mapping[str, Sequence[int]],
    path: str | Path,
    title: str = "",
) -> Path:
    """Grouped bars: dense crossbars per layer and each pruned variant's."""
    plt = _plt()
    n = len(layer_names)
    series = {"dense": list(dense), **{k: list(v) for k, v in pruned.items()}}
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * n), 4.5))
    for i, (label, values) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(n)], values, width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(n)])
    ax.set_xticklabels(layer_names, rotation=75, fontsize=7)
    ax.set_ylabel("crossbars")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_title(title or "crossbars per layer")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_matrix_heatmap(
    matrix: torch.Tensor,
    xbar: Crossbar,
    path: str | Path,
    title: str = "",
    max_rows: int = 288,
    max_cols: int = 128,
) -> Path:
    """|W| of one ``M x N`` matrix (pruned weights white) with the ``RxC`` tile grid."""
    plt = _plt()
    m = matrix.detach().abs().float()[:max_rows, :max_cols].numpy()
    fig, ax = plt.subplots(figsize=(6, 6 * m.shape[0] / max(m.shape[1], 1) if m.shape[1] else 6))
    masked = m.copy()
    masked[masked == 0] = float("nan")
    im = ax.imshow(masked, aspect="auto", cmap="viridis", interpolation="nearest")
    for r in range(0, m.shape[0] + 1, xbar.rows):
        ax.axhline(r - 0.5, color="red", lw=0.8)
    for c in range(0, m.shape[1] + 1, xbar.cols):
        ax.axvline(c - 0.5, color="red", lw=0.8)
    ax.set_xlabel("matrix column (bitline / output channel)")
    ax.set_ylabel("matrix row (wordline / input)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="|w| (white: pruned)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
