"""Export a (pruned) network for DNN+NeuroSim: ``NetWork.csv``, ``weight<L>.csv`` and a README.

One line per mapped layer in NeuroSim's column order (docs/hardware.md section 9): a linear layer
as a 1x1 layer on a 1x1 input, a compacted layer (whole rows or columns pruned) as its kept matrix
in a 1x1 layer, a grouped conv as one line per group. NeuroSim does not model the index tables of
the compaction; the README says so.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pimprune.errors import OutputError
from pimprune.geometry import Crossbar
from pimprune.mapping.matrices import MAPPED_TYPES, LayerMatrix, extract_layers
from pimprune.mapping.tracing import trace_zeros

__all__ = ["NETWORK_COLUMNS", "NeuroSimLayer", "export_neurosim", "neurosim_layers"]

#: NeuroSim's network-table columns, in order.
NETWORK_COLUMNS: tuple[str, ...] = ("IFM_H", "IFM_W", "IFM_C", "K_H", "K_W", "OFM_C", "pooling", "stride")
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class NeuroSimLayer:
    """One line of ``NetWork.csv`` and its weight matrix.

    Attributes:
        name: Source layer (``name`` or ``name[g]`` for a group).
        row: The eight values of :data:`NETWORK_COLUMNS`.
        weight: ``(inputs, outputs)`` matrix, ``inputs = IFM_C * K_H * K_W``.
        compacted: Whether the line is a kept matrix rather than the layer itself.
    """

    name: str
    row: tuple[int, ...]
    weight: np.ndarray
    compacted: bool


def _trace(model: nn.Module, shape: tuple[int, ...]) -> tuple[dict[str, tuple[Any, Any]], dict[str, int]]:
    """Input / output spatial sizes of every mapped layer and the pooling flag after it."""
    mapped = {m: n for n, m in model.named_modules() if isinstance(m, MAPPED_TYPES)}
    pools = {m for m in model.modules() if isinstance(m, _POOLS)}
    sizes: dict[str, tuple[Any, Any]] = {}
    flag: dict[str, int] = {}
    last: list[str] = []

    def hook(module: nn.Module, inp: Any, out: torch.Tensor) -> None:
        if module in pools:
            if last:
                flag[last[-1]] = 1
            return
        name = mapped[module]
        sizes.setdefault(name, (tuple(inp[0].shape[2:]), tuple(out.shape[2:])))
        flag.setdefault(name, 0)
        last.append(name)

    trace_zeros(model, (1, *shape), [*mapped, *pools], hook)
    return sizes, flag


def _layer_lines(lay: LayerMatrix, sizes: tuple[Any, Any], pool: int) -> list[NeuroSimLayer]:
    matrix = lay.matrix().detach().to(torch.float64).numpy()  # (g, M, N)
    module = lay.module
    if isinstance(module, nn.Linear):
        w = matrix[0]
        return [NeuroSimLayer(lay.name, (1, 1, w.shape[0], 1, 1, w.shape[1], pool, 1), w, False)]
    (h_in, w_in), (h_out, w_out) = sizes
    kh, kw = module.kernel_size
    whole = matrix[0]
    rows_kept, cols_kept = whole.any(axis=1), whole.any(axis=0)
    if lay.groups == 1 and rows_kept.all() and cols_kept.all():
        row = (h_in, w_in, whole.shape[0] // (kh * kw), kh, kw, whole.shape[1], pool, module.stride[0])
        return [NeuroSimLayer(lay.name, row, whole, False)]
    out = []
    for g in range(lay.groups):
        m = matrix[g]
        kept = m[m.any(axis=1)][:, m.any(axis=0)]
        name = lay.name if lay.groups == 1 else f"{lay.name}[{g}]"
        row = (h_out, w_out, kept.shape[0], 1, 1, kept.shape[1], pool, 1)
        out.append(NeuroSimLayer(name, row, kept, True))
    return out


def neurosim_layers(model: nn.Module, input_shape: Sequence[int]) -> list[NeuroSimLayer]:
    """The NeuroSim lines of every mapped layer that runs on one input of ``input_shape`` ``(C, H, W)``.

    Raises:
        ConfigError: if the input shape does not fit the model.
    """
    shape = tuple(int(s) for s in input_shape)[-3:]
    sizes, flag = _trace(model, shape)
    out: list[NeuroSimLayer] = []
    for lay in extract_layers(model):
        if lay.name in sizes:
            out.extend(_layer_lines(lay, sizes[lay.name], flag[lay.name]))
    return out


def _readme(layers: list[NeuroSimLayer], xbar: Crossbar, label: str) -> str:
    compacted = [lay.name for lay in layers if lay.compacted]
    lines = [
        f"# DNN+NeuroSim input for {label}",
        "",
        "Written by `pimprune export neurosim`. Files:",
        "",
        "- `NetWork.csv`: one line per mapped layer, columns "
        + ", ".join(NETWORK_COLUMNS)
        + " (NeuroSim's order, no header).",
        "- `weight<L>.csv`: the weight matrix of line L (1-based), rows = inputs "
        "(IFM_C x K_H x K_W in (channel, kh, kw) order), columns = outputs (OFM_C).",
        "",
        "## Running NeuroSim on it",
        "",
        f"1. In NeuroSim's `Param.cpp` set the sub-array to this crossbar: `numRowSubArray = {xbar.rows}`, "
        f"`numColSubArray = {xbar.cols}`; keep or set the technology, cell and ADC settings you compare.",
        "2. Build NeuroSim (`make` in its `NeuroSIM` folder) and run its `main` with this `NetWork.csv`, "
        "the weight files and input (activation) files of the same shapes, e.g. "
        "`./main NetWork.csv 8 8 weight1.csv input1.csv weight2.csv input2.csv ...` "
        "(8-bit weights and inputs; check the argument order of your NeuroSim version). NeuroSim's "
        "PyTorch wrapper writes input files in the same layout as it runs a model; for hardware "
        "figures alone random inputs of the right shape do.",
        "",
        "## What NeuroSim does not model",
        "",
        "- The index tables of the sub-row / sub-column compaction: the input index that routes each "
        "packed row to its input, the output index of packed columns, their registers and multiplexers "
        "(pimprune's `index` energy and area, docs/hardware.md). NeuroSim sees a smaller dense layer.",
        "- A compacted layer is exported as its kept matrix (all rows and columns holding a weight); "
        "pimprune packs sub-rows per column block, which can use fewer crossbars than that matrix.",
        "- Network packing (several layers on one crossbar).",
        "",
        f"Compacted layers: {', '.join(compacted) if compacted else 'none (dense model)'}.",
    ]
    return "\n".join(lines) + "\n"


def export_neurosim(
    model: nn.Module, input_shape: Sequence[int], xbar: Crossbar | str, out_dir: str | Path, label: str = "model"
) -> list[Path]:
    """Write ``NetWork.csv``, ``weight<L>.csv`` and ``README.md`` into ``out_dir``.

    Everything is written to a temporary folder first and moved into ``out_dir`` at the
    end, so a failure leaves nothing half-written.

    Raises:
        OutputError: if ``out_dir`` is a file, holds a ``NetWork.csv`` already, or cannot be written.
        ConfigError: if the input shape does not fit the model.
    """
    xbar = Crossbar.parse(xbar)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (out / "NetWork.csv").exists()):
        raise OutputError(f"{out} is a file or already holds a NetWork.csv; choose a new --out folder")
    layers = neurosim_layers(model, input_shape)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            t = Path(tmp)
            rows = [",".join(str(int(v)) for v in lay.row) for lay in layers]
            (t / "NetWork.csv").write_text("\n".join(rows) + "\n")
            for i, lay in enumerate(layers, start=1):
                np.savetxt(t / f"weight{i}.csv", lay.weight, delimiter=",", fmt="%.8g")
            (t / "README.md").write_text(_readme(layers, xbar, label))
            names = ["NetWork.csv", *(f"weight{i}.csv" for i in range(1, len(layers) + 1)), "README.md"]
            for name in names:
                shutil.move(str(t / name), str(out / name))
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    return [out / n for n in names]
