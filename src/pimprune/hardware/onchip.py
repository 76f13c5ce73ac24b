"""Compute a model's mapped layers as the crossbar chip would: quantized, bit-sliced, read by ADCs, faulty.

Each ``Conv2d`` / ``Linear`` is packed on ``RxC`` crossbars under its pruning's scheme
(:func:`pimprune.mapping.packing.pack`, the plan of :func:`pimprune.mapping.simulate.packing_plan`);
the cells then hold the layer's weights as the :class:`~pimprune.hardware.numerics.NumericsConfig`
says (codes per output column, differential pair, ``b_c``-bit slices), one device sample per seed
(variation and stuck-at faults per cell). Two ways compute a layer:

- ``reads``: every read of every crossbar (input cycle x weight slice x sign array) goes through
  the ADC of the crossbar's active rows, then shift-and-add and the partial sums of the
  crossbars are added digitally (:class:`ChipPlan`, run chunk by chunk by
  :func:`pimprune.mapping.simulate.compute_layer`);
- ``collapsed``: with a lossless ADC and no read noise the chip is linear in its input codes,
  so the reads sum to one matrix product with the *effective* weight (the varied cells,
  shifted, subtracted and scaled, put back where the index tables say): exact, and as fast as
  the layer itself. ``auto`` takes it whenever it applies.

:func:`on_chip` swaps the layers' ``forward`` for the chip's for the duration of a ``with`` block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.hardware.numerics import (
    NumericsConfig,
    adc_steps,
    convert_reads,
    input_cycles,
    input_scale,
    quantize_inputs,
    quantize_weights,
    sample_cells,
    weight_planes,
)
from pimprune.mapping.matrices import LayerMatrix, extract_layers
from pimprune.mapping.packing import pack
from pimprune.mapping.simulate import CrossbarPlan, compute_layer, conv_padding, packing_plan
from pimprune.mapping.tracing import trace_calls

__all__ = [
    "PATHS",
    "ChipLayer",
    "ChipPlan",
    "InputRange",
    "LayerCells",
    "OnChipModel",
    "calibrate_inputs",
    "on_chip",
]

#: Ways of computing a layer: every ADC read, the collapsed matrix product, or the fastest exact one.
PATHS: tuple[str, ...] = ("auto", "reads", "collapsed")


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class InputRange:
    """What a layer received during calibration.

    Attributes:
        max_abs: Largest ``|x|`` seen (input units); sets the input scale.
        signed: Whether an input was negative (then two's complement codes, else unsigned).
    """

    max_abs: float
    signed: bool


def calibrate_inputs(
    model: nn.Module, layers: Sequence[LayerMatrix], batches: torch.Tensor | Iterable[torch.Tensor]
) -> dict[str, InputRange]:
    """The input range of every mapped layer over calibration batches (fp32 forward, eval mode).

    Args:
        model: The model (its training mode is restored).
        layers: Its mapped layers.
        batches: One input batch, or several.

    Returns:
        Layer name -> :class:`InputRange`, for the layers the forward passes called.
    """
    names = {lay.module: lay.name for lay in layers}
    seen: dict[str, tuple[float, bool]] = {}

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        x = args[0].detach()
        name = names[module]
        peak, neg = seen.get(name, (0.0, False))
        seen[name] = (max(peak, float(x.abs().max())) if x.numel() else peak, neg or bool((x < 0).any()))

    for batch in [batches] if isinstance(batches, torch.Tensor) else batches:
        param = next(model.parameters(), None)
        trace_calls(model, batch.to(param.device) if param is not None else batch, names, hook)
    return {name: InputRange(peak, neg) for name, (peak, neg) in seen.items()}


# --------------------------------------------------------------------------- cells of one layer


@dataclass
class LayerCells:
    """A layer's crossbars and their nominal cells (everything but the device sample).

    ``K`` crossbars of ``C`` read bitlines by ``R`` wordlines (cut to the lines in use), ``P``
    planes (``2 * slices``: the positive array's slices, then the negative array's).

    Attributes:
        layer: The mapped layer.
        plan: Index tables of its crossbars; only active rows are driven (the others are dead).
        targets: ``(K, C, R)`` long: the flat entry ``(group*M + row)*N + col`` of the layer's
            matrices each cell stands for (``g*M*N`` for a cell no read sees).
        live: ``(K, C, R)`` bool: cells on an active row and a read column.
        levels: ``(P, K, C, R)`` nominal cell levels.
        plane_weights: ``(P,)`` digital factor of each plane (``+-2^(s*b_c)``).
        on_level: Level of a stuck-at-one cell (``(K, C, 1)`` for fp32 weights).
        cell_scale: ``(K, C, 1)`` weight scale ``s_w`` of each bitline's output column.
        col_scale: ``(g*N,)`` weight scale of every output column.
        active_rows: ``(K,)`` rows each crossbar drives (those holding a non-zero weight).
        steps: ``(K,)`` ADC step of each crossbar (cell-level units).
        input_range: Calibrated input range (None: not calibrated or not needed).
    """

    layer: LayerMatrix
    plan: CrossbarPlan
    targets: torch.Tensor
    live: torch.Tensor
    levels: torch.Tensor
    plane_weights: torch.Tensor
    on_level: torch.Tensor | float
    cell_scale: torch.Tensor
    col_scale: torch.Tensor
    active_rows: torch.Tensor
    steps: torch.Tensor
    input_range: InputRange | None = None

    @property
    def n_crossbars(self) -> int:
        """Logical crossbars of the layer."""
        return int(self.plan.cells_t.shape[0])


def _active_plan(plan: CrossbarPlan) -> tuple[CrossbarPlan, torch.Tensor, torch.Tensor]:
    """Drive only the rows holding a non-zero cell on a read bitline (what the cost model counts).

    Returns:
        ``(plan, active (K, R) bool, read (K, C) bool)``.
    """
    k, c, r = plan.cells_t.shape
    driven = torch.ones(k * r, dtype=torch.bool, device=plan.cells_t.device)
    driven[plan.dead_rows] = False
    read = (plan.flat_out != plan.outputs).view(k, c)
    used = ((plan.cells_t != 0) & read[:, :, None]).any(1)  # (K, R)
    active = driven.view(k, r) & used
    dead = torch.nonzero(~active.reshape(-1)).flatten()
    cells = plan.cells_t * (active[:, None, :] & read[:, :, None])
    return CrossbarPlan(plan.flat_rows, dead, cells, plan.flat_out, plan.inputs, plan.outputs), active, read


def _targets(plan: CrossbarPlan, lay: LayerMatrix, live: torch.Tensor) -> torch.Tensor:
    """``(K, C, R)`` flat matrix entry of every cell (``g*M*N`` where not live)."""
    k, c, r = plan.cells_t.shape
    rows = plan.flat_rows.view(k, r)  # g*M + row
    outs = plan.flat_out.view(k, c)  # g*N + col
    same_group = (rows // lay.rows)[:, None, :] == (outs // lay.cols)[:, :, None]
    if not bool(same_group[live].all()):  # pragma: no cover - a packer bug
        raise AssertionError(f"{lay.name}: a live cell joins an input and an output of different groups")
    target = rows[:, None, :] * lay.cols + (outs % lay.cols)[:, :, None]
    return torch.where(live, target, torch.full_like(target, lay.groups * lay.rows * lay.cols))


def layer_cells(lay: LayerMatrix, xbar: Crossbar, scheme: str, cfg: NumericsConfig) -> LayerCells:
    """Pack one layer under ``scheme`` and write its quantized weights into the cells.

    The packing is the one of the fp32 (pruned) weights, so a weight whose code rounds to 0
    keeps its place (the crossbar count is the pruning's).
    """
    matrix = lay.matrix().float()
    device = matrix.device
    plan, active, read = _active_plan(packing_plan(pack(matrix, xbar, scheme), torch.float32, device))
    live = active[:, None, :] & read[:, :, None]
    targets = _targets(plan, lay, live)
    codes, col_scale = quantize_weights(matrix, cfg)
    cell_codes = torch.cat((codes.reshape(-1), codes.new_zeros(1)))[targets]
    levels, plane_weights = weight_planes(cell_codes, cfg)
    outs = plan.flat_out.view(*plan.cells_t.shape[:2])
    cell_scale = torch.cat((col_scale, col_scale.new_ones(1)))[outs][:, :, None]
    if cfg.weight_bits is None:  # an fp32 cell's "on" state: the largest magnitude its column holds
        peak = matrix.abs().amax(1).reshape(-1)
        peak = peak.amax().expand_as(peak) if cfg.weight_scale == "layer" else peak
        on_level: torch.Tensor | float = torch.cat((peak, peak.new_zeros(1)))[outs][:, :, None]
    else:
        on_level = float(cfg.cell_levels)
    rows = active.sum(1)
    return LayerCells(
        lay, plan, targets, live, levels, plane_weights, on_level, cell_scale, col_scale, rows, adc_steps(rows, cfg)
    )


# --------------------------------------------------------------------------- the read-by-read path


@dataclass
class ChipPlan(CrossbarPlan):
    """A :class:`~pimprune.mapping.simulate.CrossbarPlan` whose crossbars compute as the chip does.

    :meth:`run` takes input *codes*: every input cycle drives its digits, every plane (slice of
    one sign array) is read, each read goes through the crossbar's ADC, and the reads are
    shifted and added (the cycles in float64); the partial sums of the crossbars are added per
    output and scaled by ``s_x * s_w``. ``cells_t`` holds the first plane (unused by :meth:`run`).
    """

    planes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, 0))  # (K, P*C, R) sampled levels
    plane_weights: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # (P,)
    steps: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # (K,) ADC steps
    out_scale: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # (outputs,) s_x * s_w
    numerics: NumericsConfig = field(default_factory=NumericsConfig)
    signed: bool = False
    generator: torch.Generator | None = None

    @property
    def workspace(self) -> int:
        """Elements of workspace per input vector (digits, every plane's reads, the sums)."""
        k, pc, r = self.planes.shape
        c = self.cells_t.shape[1]
        return k * (r + pc + 3 * c) + self.outputs

    def run(self, xt: torch.Tensor) -> torch.Tensor:
        """``(g*M, *rest)`` input codes -> ``(g*N, *rest)`` outputs (bias not added)."""
        k, pc, r = self.planes.shape
        p = self.plane_weights.numel()
        rest = xt.shape[1:]
        n = xt[0].numel()
        driven = xt.index_select(0, self.flat_rows).reshape(k * r, n)
        driven.index_fill_(0, self.dead_rows, 0)
        driven = driven.view(k, r, n)
        c = pc // p
        step = self.steps.view(k, 1, 1, 1)
        acc = torch.zeros(k, c, n, dtype=torch.float64, device=xt.device)
        for cycle_weight, digits in input_cycles(driven, self.signed, self.numerics):
            reads = torch.bmm(self.planes, digits).view(k, p, c, n)  # every plane's bitlines at once
            reads = convert_reads(reads, step, self.numerics, self.generator)
            # the slices of one cycle merge exactly in float32 (integer reads below 2^24); cycles in float64
            merged = torch.matmul(self.plane_weights, reads.view(k, p, c * n))  # (K, C*n)
            acc += cycle_weight * merged.view(k, c, n).to(torch.float64)
        out = torch.zeros(self.outputs + 1, n, dtype=torch.float64, device=xt.device)
        out.index_add_(0, self.flat_out, acc.reshape(-1, n))
        y = out[: self.outputs] * self.out_scale.to(torch.float64)[:, None]
        return y.to(xt.dtype).view(self.outputs, *rest)


# --------------------------------------------------------------------------- one device sample of a layer


def _generator(seed: int, index: int, stream: int) -> torch.Generator:
    """A CPU generator for (device sample ``seed``, layer ``index``, ``stream``), independent of the others."""
    state = np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _conv(module: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``module`` applied to ``x`` with another weight (same padding, stride, groups, bias)."""
    if module.padding_mode != "zeros":
        mode = module.padding_mode
        x = F.pad(x, conv_padding(module), mode=mode)
        return F.conv2d(x, weight, module.bias, module.stride, 0, module.dilation, module.groups)
    return F.conv2d(x, weight, module.bias, module.stride, module.padding, module.dilation, module.groups)


class ChipLayer:
    """One device sample of a layer; called in place of the layer's ``forward``.

    Attributes:
        cells: The layer's crossbars (:class:`LayerCells`).
        path: ``reads`` or ``collapsed``.
        levels: ``(P, K, C, R)`` sampled cell levels.
        effective: ``(g, M, N)`` effective weight matrix (``collapsed``), else None.
    """

    def __init__(self, cells: LayerCells, cfg: NumericsConfig, seed: int, index: int, path: str) -> None:
        self.cells, self.cfg, self.path = cells, cfg, path
        self.levels = sample_cells(cells.levels, cells.on_level, cells.live, cfg, _generator(seed, index, 0))
        rng = cells.input_range
        if cfg.input_bits is not None and rng is None:
            raise ValueError(f"layer {cells.layer.name} has no calibrated input range; calibrate on a batch first")
        self.signed = bool(rng.signed) if rng is not None else True
        self.x_scale = input_scale(rng.max_abs, self.signed, cfg) if rng is not None else 1.0
        self.effective: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None
        self.plan: ChipPlan | None = None
        if path == "collapsed":
            self.effective = self._effective()
            self.weight = cells.layer.to_weight(self.effective).to(cells.layer.module.weight.dtype)
        else:
            self.plan = self._chip_plan(_generator(seed, index, 1))

    def _effective(self) -> torch.Tensor:
        """``(g, M, N)``: the matrix the layer's crossbars compute on dequantized inputs."""
        c = self.cells
        cell_values = torch.tensordot(c.plane_weights, self.levels, dims=1) * c.cell_scale
        lay = c.layer
        flat = cell_values.new_zeros(lay.groups * lay.rows * lay.cols)
        flat.index_add_(0, c.targets[c.live], cell_values[c.live])
        return flat.view(lay.groups, lay.rows, lay.cols)

    def _chip_plan(self, generator: torch.Generator) -> ChipPlan:
        p = self.cells.plan
        planes, k, c, r = self.levels.shape
        return ChipPlan(
            p.flat_rows, p.dead_rows, self.levels[0], p.flat_out, p.inputs, p.outputs,
            planes=self.levels.transpose(0, 1).reshape(k, planes * c, r),  # (K, P*C, R): one bmm per cycle
            plane_weights=self.cells.plane_weights, steps=self.cells.steps,
            out_scale=self.cells.col_scale * self.x_scale, numerics=self.cfg, signed=self.signed,
            generator=generator,
        )  # fmt: skip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output for input ``x``, as the chip computes it."""
        codes = quantize_inputs(x, self.x_scale, self.signed, self.cfg)
        module = self.cells.layer.module
        if self.plan is not None:
            plan = self.plan
            if plan.planes.dtype != x.dtype:
                raise TypeError(f"on-chip layers compute in float32, got {x.dtype} inputs")
            return compute_layer(module, plan, codes)
        xq = codes * self.x_scale if self.cfg.input_bits is not None else codes
        assert self.weight is not None
        if isinstance(module, nn.Conv2d):
            return _conv(module, xq, self.weight)
        return F.linear(xq, self.weight, module.bias)


# --------------------------------------------------------------------------- the model


class OnChipModel:
    """A model's mapped layers on crossbars, ready to draw device samples.

    Packs every ``Conv2d`` / ``Linear`` once, quantizes its weights into cells and calibrates
    the input scales; :meth:`attach` then draws one device sample and swaps the layers'
    ``forward`` for the chip's until :meth:`detach`.

    Args:
        model: The (pruned) model; its weights must not change while this object is used.
        xbar: Crossbar geometry.
        scheme: Packing scheme of the pruning (:data:`pimprune.mapping.counting.SCHEMES`).
        numerics: The chip's numerics.
        calibration: Input batch(es) for the input scales (needed when ``input_bits`` is set).
        path: ``auto`` (``collapsed`` when the readout is exact, else ``reads``), ``reads`` or
            ``collapsed``.

    Raises:
        ConfigError: on an unknown path, ``collapsed`` with a lossy readout, or no calibration
            data for quantized inputs.
    """

    def __init__(
        self,
        model: nn.Module,
        xbar: Crossbar,
        scheme: str,
        numerics: NumericsConfig,
        calibration: torch.Tensor | Iterable[torch.Tensor] | None = None,
        *,
        path: str = "auto",
    ) -> None:
        if path not in PATHS:
            raise ConfigError(f"unknown on-chip path {path!r}; choose one of {', '.join(PATHS)}")
        if path == "collapsed" and not numerics.exact_readout:
            raise ConfigError("the collapsed path needs a lossless ADC and no read noise (adc_bits null, "
                              "read_noise_lsb 0); use path 'reads'")  # fmt: skip
        if numerics.input_bits is not None and calibration is None:
            raise ConfigError("quantized inputs need calibration data for their scales")
        self.model, self.xbar, self.scheme, self.numerics = model, xbar, scheme, numerics
        self.path = ("collapsed" if numerics.exact_readout else "reads") if path == "auto" else path
        layers = extract_layers(model)
        ranges = calibrate_inputs(model, layers, calibration) if calibration is not None else {}
        with torch.no_grad():
            self.layers = [layer_cells(lay, xbar, scheme, numerics) for lay in layers]
        for cells in self.layers:
            cells.input_range = ranges.get(cells.layer.name)
        self.chip: list[ChipLayer] = []

    @property
    def n_crossbars(self) -> int:
        """Logical crossbars of all mapped layers."""
        return sum(c.n_crossbars for c in self.layers)

    def attach(self, seed: int = 0) -> list[ChipLayer]:
        """Draw device sample ``seed`` and compute the mapped layers on it (until :meth:`detach`).

        Layers the calibration pass never called keep their own ``forward`` (with quantized
        inputs they have no input scale).
        """
        self.detach()
        with torch.no_grad():
            for index, cells in enumerate(self.layers):
                if self.numerics.input_bits is not None and cells.input_range is None:
                    continue
                chip = ChipLayer(cells, self.numerics, seed, index, self.path)
                cells.layer.module.forward = chip
                self.chip.append(chip)
        return list(self.chip)

    def detach(self) -> None:
        """Give the layers their own ``forward`` back."""
        for chip in self.chip:
            module = chip.cells.layer.module
            if module.__dict__.get("forward") is chip:
                del module.forward
        self.chip = []


@contextmanager
def on_chip(
    model: nn.Module,
    xbar: Crossbar | str,
    scheme: str,
    numerics: NumericsConfig,
    seed: int = 0,
    calibration: torch.Tensor | Iterable[torch.Tensor] | None = None,
    *,
    path: str = "auto",
) -> Iterator[OnChipModel]:
    """Compute ``model``'s mapped layers on crossbars (device sample ``seed``) inside a ``with`` block.

    Example::

        with on_chip(model, "32x32", "subrow", load_numerics("isaac"), seed=0, calibration=x):
            logits = model(x)

    The model's own ``forward`` methods are restored on leaving the block, also on an error.
    Arguments as for :class:`OnChipModel`.
    """
    chip = OnChipModel(model, Crossbar.parse(xbar), scheme, numerics, calibration, path=path)
    try:
        chip.attach(seed)
        yield chip
    finally:
        chip.detach()
