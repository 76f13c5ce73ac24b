"""Export a (pruned) network for DNN+NeuroSim V1.4: network table, weight and input files, run script.

One ``NetWork.csv`` line per mapped layer, in execution order, in NeuroSim's column order
(:data:`NETWORK_COLUMNS`; docs/hardware.md, "Checking against DNN+NeuroSim"):

- a conv keeps its own ``K x K`` kernel and stride; its input size is written as
  ``IFM = out * stride + K - 1`` per side, so that NeuroSim's position count
  (:func:`pimprune.hardware.neurosim.positions`, which ignores padding) equals the layer's
  real output positions;
- a pruned conv whose matrix has whole rows or columns empty is *compacted*: its ``M'`` kept
  rows become ``ceil(M' / (K*K))`` input channels (rows zero-padded to a whole channel), its
  kept columns the output channels, with the same kernel, stride and positions; a grouped conv
  is one such line per group;
- a linear layer is ``1, 1, in, 1, 1, out, 0, 1`` (one position per input vector).

Per line a weight file (``IFM_C*K_H*K_W`` rows x ``OFM_C`` columns, scaled into NeuroSim's
``[-1, 1)`` fixed point) and per image an input file: the layer's real input on that image
(recorded with a forward hook), padded and unfolded like the layer, quantised to the input
bits and written as NeuroSim's 0/1 bit matrix. Everything is written to a temporary folder
and moved into place at the end.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pimprune.errors import ConfigError, OutputError
from pimprune.geometry import Crossbar
from pimprune.hardware.export_text import readme, run_script
from pimprune.hardware.neurosim import (
    DEFAULT_BITS,
    MappingCheck,
    check_bits,
    check_mapping,
    encode_bits,
    to_grid,
    unit_scale,
)
from pimprune.mapping.matrices import MAPPED_TYPES, LayerMatrix, extract_layers
from pimprune.mapping.tracing import record_layer_io, trace_zeros

__all__ = [
    "NETWORK_COLUMNS",
    "RANDOM_SEED",
    "NeuroSimExport",
    "NeuroSimLayer",
    "Unfold",
    "example_images",
    "export_neurosim",
    "line_input",
    "neurosim_layers",
]

#: NeuroSim's network-table columns, in order.
NETWORK_COLUMNS: tuple[str, ...] = ("IFM_H", "IFM_W", "IFM_C", "K_H", "K_W", "OFM_C", "pooling", "stride")
#: Seed of the random inputs of a model without a data set.
RANDOM_SEED = 0
#: Modules whose call after a mapped layer sets that layer's pooling flag.
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
#: ``F.pad`` mode of each ``Conv2d.padding_mode``.
_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}
#: Bytes of the 0/1 input files.
_ZERO, _COMMA, _NEWLINE = ord("0"), ord(","), ord("\n")
#: Permissions of the run script and of the export folder (the temporary folder starts private).
_MODE_SCRIPT, _MODE_FOLDER = 0o755, 0o755


@dataclass(frozen=True)
class Unfold:
    """How a conv line reads its layer's input: the group's channels, padded and unfolded like the layer.

    Attributes:
        channels: ``[start, stop)`` input channels of the line's group.
        kernel: ``(K_H, K_W)``.
        stride: ``(s_H, s_W)``.
        dilation: ``(d_H, d_W)``.
        pad: Padding in ``F.pad`` order ``(left, right, top, bottom)``.
        pad_mode: ``F.pad`` mode (``constant`` for zero padding).
    """

    channels: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pad: tuple[int, int, int, int]
    pad_mode: str

    def columns(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` layer input -> ``(N, C_g*K_H*K_W, positions)``, rows in ``(cin, kh, kw)`` order."""
        x = x[:, self.channels[0] : self.channels[1]]
        if any(self.pad):
            x = F.pad(x, self.pad, mode=self.pad_mode)
        return F.unfold(x, self.kernel, dilation=self.dilation, stride=self.stride)


@dataclass(frozen=True)
class NeuroSimLayer:
    """One line of ``NetWork.csv`` and its weight matrix.

    Attributes:
        name: Line name (the layer's, ``name[g]`` for group ``g``).
        layer: Source layer (qualified module name).
        row: The eight values of :data:`NETWORK_COLUMNS`.
        weight: ``(IFM_C*K_H*K_W, OFM_C)`` matrix as stored (kept rows, zero rows padding a
            compacted line to whole channels), unscaled.
        compacted: Whether the line holds the layer's kept matrix rather than all of it.
        kept_rows: Rows of the layer's (group's) matrix the line holds, in order.
        unfold: How a conv line reads its input (``None`` for a linear layer).
    """

    name: str
    layer: str
    row: tuple[int, ...]
    weight: np.ndarray
    compacted: bool
    kept_rows: np.ndarray
    unfold: Unfold | None


@dataclass
class NeuroSimExport:
    """What :func:`export_neurosim` wrote.

    Attributes:
        out: The folder.
        lines: The lines of ``NetWork.csv``.
        files: Every file and folder written at the top of ``out``.
        check: NeuroSim's mapping of the lines.
        images: Images whose input files were written.
    """

    out: Path
    lines: list[NeuroSimLayer]
    files: list[Path]
    check: MappingCheck
    images: int


# --------------------------------------------------------------------------- lines


def _trace(model: nn.Module, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...], int]]:
    """Mapped layers in the order of their first call: name, output shape, pooling flag."""
    mapped = {m: n for n, m in model.named_modules() if isinstance(m, MAPPED_TYPES)}
    pools = {m for m in model.modules() if isinstance(m, _POOLS)}
    order: dict[str, tuple[int, ...]] = {}
    flag: dict[str, int] = {}
    last: list[str] = []

    def hook(module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        if module in pools:
            if last:
                flag[last[-1]] = 1
            return
        name = mapped[module]
        order.setdefault(name, tuple(out.shape))
        flag.setdefault(name, 0)
        last.append(name)

    trace_zeros(model, (1, *shape), [*mapped, *pools], hook)
    return [(name, out_shape, flag[name]) for name, out_shape in order.items()]


def _padding(module: nn.Conv2d) -> tuple[int, int, int, int]:
    """The conv's padding in ``F.pad`` order ``(left, right, top, bottom)``."""
    if isinstance(module.padding, str):
        if module.padding == "valid":
            return (0, 0, 0, 0)
        pads: list[int] = []  # "same": PyTorch puts the odd pixel on the right / bottom
        for d, k in zip(reversed(module.dilation), reversed(module.kernel_size), strict=True):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return (pads[0], pads[1], pads[2], pads[3])
    ph, pw = module.padding
    return (pw, pw, ph, ph)


def _matrix_line(
    name: str, lay: LayerMatrix, m: np.ndarray, head: tuple[int, int], tail: tuple[int, int], unfold: Unfold | None
) -> NeuroSimLayer | None:
    """The line of one ``(M, N)`` matrix; ``head`` = IFM size, ``tail`` = (pooling, stride). None if empty."""
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return None
    kh, kw = unfold.kernel if unfold is not None else (1, 1)
    cin = math.ceil(rows.size / (kh * kw))
    weight = np.zeros((cin * kh * kw, cols.size))
    weight[: rows.size] = m[rows][:, cols]
    row = (*head, cin, kh, kw, int(cols.size), *tail)
    compacted = rows.size < m.shape[0] or cols.size < m.shape[1]
    return NeuroSimLayer(name, lay.name, tuple(int(v) for v in row), weight, compacted, rows, unfold)


def _layer_lines(lay: LayerMatrix, out_shape: tuple[int, ...], pool: int) -> list[NeuroSimLayer]:
    """The lines of one mapped layer (one per group of a conv; none for a matrix without weights)."""
    matrix = lay.matrix().detach().to(torch.float64).cpu().numpy()  # (g, M, N)
    module = lay.module
    if not isinstance(module, nn.Conv2d):
        vectors = math.prod(out_shape[1:-1])  # input vectors per image (1 for a (1, in) input)
        line = _matrix_line(lay.name, lay, matrix[0], (vectors, 1), (pool, 1), None)
        return [line] if line is not None else []
    kh, kw = module.kernel_size
    sh, sw = module.stride
    stride = sh if sh == sw else 1  # one stride column: unequal strides are written as 1 on a wider IFM
    head = (out_shape[-2] * stride + kh - 1, out_shape[-1] * stride + kw - 1)
    cin = module.in_channels // lay.groups
    out = []
    for g in range(lay.groups):
        unfold = Unfold(
            (g * cin, (g + 1) * cin), (kh, kw), (sh, sw), tuple(module.dilation), _padding(module),
            _PAD_MODES[module.padding_mode],
        )
        name = lay.name if lay.groups == 1 else f"{lay.name}[{g}]"
        line = _matrix_line(name, lay, matrix[g], head, (pool, stride), unfold)
        if line is not None:
            out.append(line)
    return out


def _lines(model: nn.Module, shape: tuple[int, ...]) -> tuple[list[NeuroSimLayer], list[str]]:
    """The lines and the names of every mapped layer that runs, in execution order."""
    by_name = {lay.name: lay for lay in extract_layers(model)}
    traced = [(n, s, p) for n, s, p in _trace(model, shape) if n in by_name]
    lines = [line for n, s, p in traced for line in _layer_lines(by_name[n], s, p)]
    return lines, [n for n, _, _ in traced]


def neurosim_layers(model: nn.Module, input_shape: Sequence[int]) -> list[NeuroSimLayer]:
    """The NeuroSim lines of every mapped layer that runs on one input of ``input_shape`` ``(C, H, W)``.

    Lines are in execution order (NeuroSim's PyTorch wrapper writes them in forward-hook
    order). A layer (or group) without any weight left has no line.

    Raises:
        ConfigError: if the input shape does not fit the model.
    """
    return _lines(model, tuple(int(s) for s in input_shape)[-3:])[0]


# --------------------------------------------------------------------------- inputs


def example_images(
    dataset: str | None, count: int, shape: Sequence[int], data_dir: str | Path | None = None
) -> tuple[torch.Tensor, str]:
    """``count`` input images of ``shape`` ``(C, H, W)`` and a sentence saying what they are.

    The first ``count`` images of ``dataset``'s test split, normalised as in training and resized
    to ``shape`` if need be; random images (standard normal, seed :data:`RANDOM_SEED`) when there
    is no data set or it cannot be loaded into memory.

    Raises:
        ConfigError: if the test split has fewer images or other channels than asked.
        DataError: if the data set's files are missing or corrupt.
    """
    from pimprune.training.datasets import DATASETS, load_data

    c, h, w = (int(s) for s in shape)
    known = dataset is not None and dataset in DATASETS.names() and DATASETS.get(dataset).load is not None
    if not known or dataset == "synthetic":
        gen = torch.Generator().manual_seed(RANDOM_SEED)
        why = "the model names no data set" if dataset is None else f"its data set {dataset!r} is not stored in files"
        return torch.randn((count, c, h, w), generator=gen), (
            f"{count} random image{'s' if count > 1 else ''} (standard normal, seed {RANDOM_SEED}): {why}"
        )
    images, _ = load_data(dataset, "test", data_dir)
    if images.shape[0] < count:
        raise ConfigError(f"--images {count}: the {dataset} test split has only {images.shape[0]} images")
    if images.shape[1] != c:
        raise ConfigError(f"the {dataset} images have {images.shape[1]} channels, the model takes {c}")
    definition = DATASETS.get(dataset)
    x = images[:count].float() / 255.0
    mean = torch.tensor(definition.mean).reshape(-1, 1, 1)
    std = torch.tensor(definition.std).reshape(-1, 1, 1)
    x = (x - mean) / std
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    first = f"the first {count} images" if count > 1 else "the first image"
    return x, f"{first} of the {dataset} test split, normalised as in training"


def line_input(line: NeuroSimLayer, x: torch.Tensor) -> np.ndarray:
    """The line's input matrix for one image: ``(weight rows, positions)``.

    Args:
        line: A line of :func:`neurosim_layers`.
        x: The layer's input on one image (batch of 1), as a forward hook records it.
    """
    if line.unfold is None:
        cols = x.reshape(x.shape[0], -1, x.shape[-1]).transpose(1, 2)
    else:
        cols = line.unfold.columns(x)
    cols = cols[0].detach().to(torch.float64).cpu().numpy()
    out = np.zeros((line.weight.shape[0], cols.shape[1]))
    out[: line.kept_rows.size] = cols[line.kept_rows]
    return out


def _layer_io(model: nn.Module, layers: list[LayerMatrix], image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Input of every layer's first call on one image."""
    return {name: inp for name, (inp, _) in record_layer_io(model, layers, image[None]).items()}


def _input_scales(model: nn.Module, layers: list[LayerMatrix], images: torch.Tensor, bits: int) -> dict[str, float]:
    """Per layer: the factor that maps its largest |input| over all images to NeuroSim's largest value."""
    peak = {lay.name: 0.0 for lay in layers}
    for image in images:
        for name, x in _layer_io(model, layers, image).items():
            peak[name] = max(peak[name], float(x.abs().max()))
    return {name: unit_scale(p, bits) for name, p in peak.items()}


# --------------------------------------------------------------------------- files


def _write_bits(path: Path, bits: np.ndarray) -> None:
    """Write a ``(rows, cols)`` 0/1 matrix as NeuroSim's CSV of ``0`` / ``1`` characters."""
    rows, cols = bits.shape
    buf = np.full((rows, 2 * cols), _COMMA, dtype=np.uint8)
    buf[:, 0::2] = bits + _ZERO
    buf[:, -1] = _NEWLINE
    path.write_bytes(buf.tobytes())


def _write_inputs(folder: Path, lines: list[NeuroSimLayer], io: dict[str, torch.Tensor], scales, bits: int) -> None:
    """``input<L>.csv`` of every line for one image."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, line in enumerate(lines, start=1):
        q = to_grid(line_input(line, io[line.layer]), scales[line.layer], bits)  # (rows, positions)
        _write_bits(folder / f"input{i}.csv", encode_bits(q, bits).reshape(q.shape[0], -1))


def _write_weights(folder: Path, lines: list[NeuroSimLayer], bits: int) -> list[float]:
    """``weight<L>.csv`` of every line on NeuroSim's grid; returns each line's weight scale."""
    scales = []
    for i, line in enumerate(lines, start=1):
        scale = unit_scale(float(np.abs(line.weight).max()), bits)
        values = to_grid(line.weight, scale, bits) / 2 ** (bits - 1)
        np.savetxt(folder / f"weight{i}.csv", values, delimiter=",", fmt="%.17g")
        scales.append(scale)
    return scales


def _scales_json(lines, weight_scales, input_scales, wbits: int, ibits: int, images: int, note: str) -> str:
    """``scales.json``: the weight scale of every line, the input scale of its layer, and what they mean."""
    entries = [
        {"line": i, "name": line.name, "layer": line.layer, "weight_scale": ws, "input_scale": input_scales[line.layer]}
        for i, (line, ws) in enumerate(zip(lines, weight_scales, strict=True), start=1)
    ]
    doc = {
        "weight_bits": wbits,
        "input_bits": ibits,
        "images": images,
        "inputs": note,
        "meaning": "file weight = round(w * weight_scale * 2^(weight_bits-1)) / 2^(weight_bits-1); "
        "file input = x * input_scale, rounded the same way on input_bits (one input scale per layer, "
        "over all images)",
        "lines": entries,
    }
    return json.dumps(doc, indent=2) + "\n"


def _check_out(out: Path) -> None:
    """Refuse a file, or a folder that already holds an export."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; choose a new --out folder")
    for name in ("NetWork.csv", "README.md", "run_neurosim.sh", "scales.json", "images"):
        if (out / name).exists():
            raise OutputError(f"{out} already holds a {name}; choose a new --out folder")


def _publish(tmp: Path, out: Path) -> list[Path]:
    """Move everything in ``tmp`` into ``out`` (a rename of the folder when ``out`` does not exist yet)."""
    names = sorted(p.name for p in tmp.iterdir())
    if not out.exists():
        os.replace(tmp, out)
    else:
        for name in names:
            shutil.move(str(tmp / name), str(out / name))
    return [out / n for n in names]


def _images(
    model: nn.Module, images: torch.Tensor | None, note: str | None, shape: tuple[int, ...]
) -> tuple[torch.Tensor, str]:
    """The export's images on the model's device and dtype (default: one random image) and their note."""
    if images is None:
        images, note = example_images(None, 1, shape)
    if images.dim() != 4 or tuple(images.shape[1:]) != shape or images.shape[0] < 1:
        raise ConfigError(f"images must be (N, {', '.join(map(str, shape))}), got {tuple(images.shape)}")
    param = next(model.parameters(), None)
    images = images.to(param.device, param.dtype) if param is not None else images
    return images, note or f"{images.shape[0]} image(s) given by the caller"


def _write_export(work: Path, model: nn.Module, lines: list[NeuroSimLayer], images: torch.Tensor, opts: dict) -> None:
    """Every file of the export into the empty folder ``work``."""
    wbits, ibits, n = opts["weight_bits"], opts["input_bits"], int(images.shape[0])
    layers = [lay for lay in extract_layers(model) if lay.name in {line.layer for line in lines}]
    input_scales = _input_scales(model, layers, images, ibits)
    for k, image in enumerate(images, start=1):
        folder = work if k == 1 else work / "images" / str(k)
        _write_inputs(folder, lines, _layer_io(model, layers, image), input_scales, ibits)
    weight_scales = _write_weights(work, lines, wbits)
    note = opts["note"]
    (work / "scales.json").write_text(_scales_json(lines, weight_scales, input_scales, wbits, ibits, n, note))
    (work / "NetWork.csv").write_text("".join(",".join(map(str, line.row)) + "\n" for line in lines))
    (work / "run_neurosim.sh").write_text(run_script(len(lines), wbits, ibits, opts["xbar"].rows, n))
    (work / "run_neurosim.sh").chmod(_MODE_SCRIPT)
    text = readme(lines, opts["xbar"], opts["label"], opts["check"], wbits, ibits, n, note, opts["empty"])
    (work / "README.md").write_text(text)
    work.chmod(_MODE_FOLDER)


def export_neurosim(
    model: nn.Module,
    input_shape: Sequence[int],
    xbar: Crossbar | str,
    out_dir: str | Path,
    label: str = "model",
    *,
    images: torch.Tensor | None = None,
    image_note: str | None = None,
    weight_bits: int = DEFAULT_BITS,
    input_bits: int = DEFAULT_BITS,
    mapping: str = "novel",
) -> NeuroSimExport:
    """Write ``NetWork.csv``, weight and input files, ``scales.json``, ``run_neurosim.sh`` and ``README.md``.

    Args:
        model: Dense or pruned network (pruned weights exactly 0).
        input_shape: ``(C, H, W)`` of one input.
        xbar: Crossbar geometry: its rows are NeuroSim's sub-array rows (command line), its
            columns NeuroSim's ``numColSubArray`` (``Param.cpp``; the README says how to change it).
        out_dir: Folder to write (created; must not hold an export yet).
        label: Name of the model in the README.
        images: ``(N, C, H, W)`` inputs (default: one random image, :func:`example_images`).
        image_note: What the images are, for the README.
        weight_bits: NeuroSim's synapse bits.
        input_bits: NeuroSim's input bits.
        mapping: ``novel`` (NeuroSim's default) or ``conventional`` (``novelMapping = false``).

    Raises:
        ConfigError: for bad bits, an input shape that does not fit the model, images of another
            shape, or lines NeuroSim's floorplan cannot place (the message says what to change).
        OutputError: if ``out_dir`` is a file, already holds an export, or cannot be written.
    """
    wbits, ibits = check_bits(weight_bits, "--weight-bits"), check_bits(input_bits, "--input-bits")
    xbar = Crossbar.parse(xbar)
    out = Path(out_dir)
    _check_out(out)
    shape = tuple(int(s) for s in input_shape)[-3:]
    lines, traced = _lines(model, shape)
    check = check_mapping([line.row for line in lines], wbits, xbar.rows, mapping)
    images, note = _images(model, images, image_note, shape)
    kept = {line.layer for line in lines}
    opts = {
        "weight_bits": wbits, "input_bits": ibits, "xbar": xbar, "label": label, "check": check, "note": note,
        "empty": [name for name in traced if name not in kept],
    }
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out if out.exists() else out.parent))
        try:
            _write_export(work, model, lines, images, opts)
            files = _publish(work, out)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    return NeuroSimExport(out, lines, files, check, int(images.shape[0]))
