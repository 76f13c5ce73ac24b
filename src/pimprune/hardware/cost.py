"""Energy, area and latency of a network mapped on crossbars (docs/hardware.md sections 1 and 3).

A logical ``RxC`` crossbar (one weight per cell, the unit :mod:`pimprune.mapping.counting`
counts) is ``slices x sign factor`` physical arrays with their DACs, sample-and-holds, ADCs
and shift-and-add units. Only the rows and columns a crossbar uses cost energy (its ADC
resolution follows the active rows); every occupied crossbar is built in full for area. A
layer's energy and latency per inference scale with its MVMs (output positions);
:mod:`pimprune.hardware.latency` adds the chip and the execution models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.hardware.components import CostTotals
from pimprune.hardware.config import HardwareConfig
from pimprune.mapping.matrices import MAPPED_TYPES, LayerMatrix, extract_layers
from pimprune.mapping.packing import crossbar_stats, index_widths
from pimprune.mapping.tracing import trace_zeros
from pimprune.numeric import cdiv

__all__ = [
    "COMPONENTS",
    "LayerCost",
    "NetworkCost",
    "crossbar_area_um2",
    "crossbar_cycle_ns",
    "crossbar_energy_pj",
    "adcs_per_array",
    "dense_stats",
    "layer_cost",
    "layer_mvms",
    "network_cost",
]

#: Energy / area components, in report order.
COMPONENTS: tuple[str, ...] = (
    "array",
    "adc",
    "dac",
    "sample_hold",
    "shift_add",
    "registers",
    "index",
)

_PJ_PER_NJ = 1e3
_UM2_PER_MM2 = 1e6
_NS_PER_US = 1e3


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.int64).reshape(-1)


def _adc_bits(hw: HardwareConfig, rows: np.ndarray) -> np.ndarray:
    """Vectorised :meth:`HardwareConfig.adc_resolution` (0 where no row is active)."""
    if hw.adc.bits is not None:
        return np.where(rows > 0, hw.adc.bits, 0)
    levels = ((1 << hw.cell_bits) - 1) * ((1 << hw.dac_bits) - 1)
    max_sum = rows.astype(np.float64) * levels
    bits = np.frexp(max_sum)[1]  # = bit_length for positive integers = ceil(log2(x + 1))
    return np.where(rows > 0, np.maximum(bits - hw.adc_bits_saved, 1), 0)


def _per_bits(values: np.ndarray, fn: Any) -> np.ndarray:
    """Apply a scalar function of the ADC resolution to an array of resolutions."""
    if values.size == 0:
        return np.zeros(0)
    table = np.array([fn(int(b)) for b in range(int(values.max()) + 1)], dtype=np.float64)
    return table[values]


def _cycle_components(
    hw: HardwareConfig,
    rows: np.ndarray,
    cols_phys: np.ndarray,
    logical_cols: np.ndarray,
    arrays: int,
) -> dict[str, np.ndarray]:
    """Energy (pJ) of one read cycle of crossbars, by component (index excluded).

    Args:
        hw: Hardware configuration.
        rows: Active rows of each crossbar.
        cols_phys: Read bitlines of each physical array (used columns + extra columns).
        logical_cols: Used logical columns (partial sums written to the output register).
        arrays: Physical arrays per crossbar.
    """
    bits = _adc_bits(hw, rows)
    e_adc = _per_bits(bits, hw.adc.energy_pj)
    return {
        "array": arrays * rows * cols_phys * hw.array.energy_pj_per_cell_read,
        "adc": arrays * cols_phys * e_adc,
        "dac": arrays * rows * hw.dac.energy_pj_per_conversion,
        "sample_hold": arrays * cols_phys * hw.sample_hold.energy_pj_per_sample,
        "shift_add": arrays * cols_phys * hw.shift_add.energy_pj_per_op,
        "registers": arrays * rows * hw.dac_bits * hw.registers.input_energy_pj_per_bit
        + logical_cols * hw.registers.partial_sum_bits * hw.registers.output_energy_pj_per_bit,
    }


def _used(hw: HardwareConfig, used_rows: Any, used_cols: Any) -> tuple[np.ndarray, ...]:
    r = _as_array(used_rows)
    c = _as_array(used_cols)
    if r.shape != c.shape:
        raise ValueError(f"used_rows {r.shape} and used_cols {c.shape} differ in length")
    if (r < 0).any() or (c < 0).any():
        raise ValueError("used rows and columns must be >= 0")
    active = (r > 0) & (c > 0)
    r = np.where(active, r, 0)
    c = np.where(active, c, 0)
    cp = np.where(active, c + hw.sign.extra_columns, 0)
    return r, c, cp


def crossbar_energy_pj(
    hw: HardwareConfig,
    used_rows: Any,
    used_cols: Any,
    index_bits_per_row: int = 0,
    index_bits_per_col: int = 0,
) -> dict[str, np.ndarray]:
    """Energy (pJ) of one matrix-vector product on each crossbar, by component.

    Args:
        hw: Hardware configuration.
        used_rows: ``(K,)`` used rows of each logical crossbar.
        used_cols: ``(K,)`` used columns of each logical crossbar.
        index_bits_per_row: Input-index bits per used row (``subrow``: ``ceil(log2 M)``).
        index_bits_per_col: Output-index bits per used column (``subcolumn``: ``ceil(log2 N)``).

    Returns:
        Component name (:data:`COMPONENTS`) -> ``(K,)`` energies in pJ.
    """
    r, c, cp = _used(hw, used_rows, used_cols)
    n = hw.input_cycles
    per_cycle = _cycle_components(hw, r, cp, c, hw.physical_arrays)
    out = {k: n * v for k, v in per_cycle.items()}
    ix = hw.index
    lines = r * (index_bits_per_row > 0) + c * (index_bits_per_col > 0)
    out["index"] = (r * index_bits_per_row + c * index_bits_per_col) * (
        ix.register_energy_pj_per_bit
    ) + n * lines * ix.mux_energy_pj_per_line_cycle
    return {k: out[k].astype(np.float64) for k in COMPONENTS}


def adcs_per_array(hw: HardwareConfig, data_cols: int) -> int:
    """ADCs of one physical array of ``data_cols`` weight columns: ``ceil(C / columns_per_adc)``.

    The sign scheme's extra (reference) columns are converted by the same ADCs: they
    cost one more conversion each, not another converter (ISAAC: one ADC per 128x128 array).
    """
    return max(1, cdiv(data_cols, hw.columns_per_adc))


def crossbar_cycle_ns(hw: HardwareConfig, xbar: Crossbar, used_rows: Any, used_cols: Any) -> np.ndarray:
    """``(K,)`` read-cycle time (ns) of each crossbar: ``max(read cycle, ADC time)``."""
    r, _, cp = _used(hw, used_rows, used_cols)
    adcs = adcs_per_array(hw, xbar.cols)
    rate = _per_bits(_adc_bits(hw, r), hw.adc.rate_gsps)
    adc_ns = np.where(cp > 0, cdiv(cp, adcs) / np.where(rate > 0, rate, 1.0), 0.0)
    return np.maximum(hw.read_cycle_ns, adc_ns)


def _tile_area_um2(hw: HardwareConfig, rows: int, cols: int, arrays: int) -> dict[str, float]:
    """Area (um^2) of one built logical crossbar of ``rows x cols`` (``arrays`` arrays), by component."""
    bits = hw.adc_resolution(rows)
    adcs = arrays * adcs_per_array(hw, cols)
    cols_phys = cols + hw.sign.extra_columns
    logical_cols = cols
    reg = hw.registers
    return {
        "array": arrays * rows * cols_phys * hw.array.area_um2_per_cell,
        "adc": adcs * hw.adc.area_um2(bits),
        "dac": arrays * rows * hw.dac.area_um2,
        "sample_hold": arrays * cols_phys * hw.sample_hold.area_um2,
        "shift_add": adcs * hw.shift_add.area_um2_per_adc,
        "registers": arrays * rows * hw.input_bits * reg.input_area_um2_per_bit
        + logical_cols * reg.partial_sum_bits * reg.output_area_um2_per_bit,
        "index": 0.0,
    }


def crossbar_area_um2(
    hw: HardwareConfig,
    xbar: Crossbar,
    used_rows: Any,
    used_cols: Any,
    index_bits_per_row: int = 0,
    index_bits_per_col: int = 0,
) -> dict[str, float]:
    """Total area (um^2) of the crossbars listed, by component.

    Every listed crossbar is built in full; the index adds storage and
    multiplexers for its used rows / columns only.
    """
    r, c, _ = _used(hw, used_rows, used_cols)
    k = r.size
    one = _tile_area_um2(hw, xbar.rows, xbar.cols, hw.physical_arrays)
    out = {name: k * v for name, v in one.items()}
    ix = hw.index
    index_bits = int((r * index_bits_per_row + c * index_bits_per_col).sum())
    out["index"] = index_bits * (ix.register_area_um2_per_bit + ix.mux_area_um2_per_select_bit)
    return out


# --------------------------------------------------------------------------- network


def dense_stats(rows: int, cols: int, groups: int, xbar: Crossbar) -> tuple[np.ndarray, np.ndarray]:
    """Used rows and columns of the ``dense`` tiling of ``groups`` full ``rows x cols`` matrices.

    Equals :func:`pimprune.mapping.packing.crossbar_stats` of an all-non-zero mask under
    ``"dense"`` (tiles in the same order), without reading any weight.
    """
    r = np.minimum(xbar.rows, rows - xbar.rows * np.arange(cdiv(rows, xbar.rows)))
    c = np.minimum(xbar.cols, cols - xbar.cols * np.arange(cdiv(cols, xbar.cols)))
    used_rows = np.tile(np.repeat(r, c.size), groups)
    used_cols = np.tile(np.tile(c, r.size), groups)
    return used_rows.astype(np.int64), used_cols.astype(np.int64)


def layer_mvms(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Matrix-vector products per inference of every Conv2d / Linear of ``model``.

    Runs the model once on a zero input of ``input_shape`` (``(C, H, W)`` or
    ``(1, C, H, W)``, :func:`pimprune.mapping.tracing.trace_zeros`). Every
    crossbar of a conv computes one MVM per output position (``H_out * W_out``;
    each group's crossbars see their own input slice); a linear layer one per
    input vector. A module called several times adds up.

    Raises:
        ConfigError: if the input shape does not fit the model.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
        raise ConfigError(f"input shape must be (C, H, W) or (1, C, H, W), got {tuple(input_shape)}")
    counts: dict[str, int] = {}
    names = {m: n for n, m in model.named_modules() if isinstance(m, MAPPED_TYPES)}

    def hook(module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        name = names[module]
        if isinstance(module, nn.Conv2d):
            n = out.shape[0] * out.shape[-2] * out.shape[-1]
        else:
            n = out.numel() // out.shape[-1]
        counts[name] = counts.get(name, 0) + int(n)

    trace_zeros(model, shape, names, hook)
    return counts


@dataclass
class LayerCost:
    """Cost of one mapped layer per inference.

    Attributes:
        name: Qualified layer name.
        kind: ``"conv"`` or ``"linear"``.
        mvms: Matrix-vector products per inference.
        crossbars: Logical crossbars occupied.
        energy_nj: Energy per inference by component (nJ).
        area_mm2: Area by component (mm^2).
        latency_us: Latency per inference (us).
        cycle_ns: Read cycle of the layer's slowest crossbar (ns).
        adc_bits_max: Widest ADC resolution the layer's crossbars need.
    """

    name: str
    kind: str
    mvms: int
    crossbars: int
    energy_nj: dict[str, float]
    area_mm2: dict[str, float]
    latency_us: float
    cycle_ns: float
    adc_bits_max: int

    @property
    def total_energy_nj(self) -> float:
        """Energy per inference (nJ)."""
        return sum(self.energy_nj.values())

    @property
    def total_area_mm2(self) -> float:
        """Area (mm^2)."""
        return sum(self.area_mm2.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "name": self.name,
            "kind": self.kind,
            "mvms": self.mvms,
            "crossbars": self.crossbars,
            "energy_nj": round(self.total_energy_nj, 4),
            "area_mm2": round(self.total_area_mm2, 6),
            "latency_us": round(self.latency_us, 4),
            "cycle_ns": round(self.cycle_ns, 3),
            "adc_bits_max": self.adc_bits_max,
            "energy_breakdown_nj": {k: round(v, 4) for k, v in self.energy_nj.items()},
            "area_breakdown_mm2": {k: round(v, 7) for k, v in self.area_mm2.items()},
        }


def layer_cost(
    hw: HardwareConfig,
    xbar: Crossbar,
    used_rows: Any,
    used_cols: Any,
    mvms: int,
    *,
    name: str = "layer",
    kind: str = "conv",
    index_bits_per_row: int = 0,
    index_bits_per_col: int = 0,
) -> LayerCost:
    """Cost of one layer from the used rows / columns of its crossbars.

    Args:
        hw: Hardware configuration.
        xbar: Crossbar geometry.
        used_rows: ``(K,)`` used rows per crossbar.
        used_cols: ``(K,)`` used columns per crossbar.
        mvms: Matrix-vector products per inference.
        name: Layer name for reports.
        kind: ``"conv"`` or ``"linear"``.
        index_bits_per_row: Input-index bits per used row.
        index_bits_per_col: Output-index bits per used column.
    """
    r = _as_array(used_rows)
    energy = crossbar_energy_pj(hw, r, used_cols, index_bits_per_row, index_bits_per_col)
    area = crossbar_area_um2(hw, xbar, r, used_cols, index_bits_per_row, index_bits_per_col)
    cycle = crossbar_cycle_ns(hw, xbar, r, used_cols)
    cycle_ns = float(cycle.max()) if cycle.size else hw.read_cycle_ns
    bits = _adc_bits(hw, r)
    return LayerCost(
        name=name,
        kind=kind,
        mvms=int(mvms),
        crossbars=int(r.size),
        energy_nj={k: mvms * float(v.sum()) / _PJ_PER_NJ for k, v in energy.items()},
        area_mm2={k: v / _UM2_PER_MM2 for k, v in area.items()},
        latency_us=(mvms * hw.input_cycles * cycle_ns / _NS_PER_US) if r.size else 0.0,
        cycle_ns=cycle_ns,
        adc_bits_max=int(bits.max()) if bits.size else 0,
    )


@dataclass
class NetworkCost(CostTotals):
    """Cost of a whole network per inference on one geometry.

    Attributes:
        crossbar: Crossbar geometry.
        scheme: Counting / packing scheme.
        hardware: Name of the hardware configuration.
        input_shape: Input shape the MVMs were counted for.
        layers: Per-layer costs, in module order.
    """

    crossbar: Crossbar
    scheme: str
    hardware: str
    input_shape: tuple[int, ...]
    layers: list[LayerCost] = field(default_factory=list)

    @property
    def crossbars(self) -> int:
        """Logical crossbars occupied."""
        return sum(lc.crossbars for lc in self.layers)

    @property
    def energy_breakdown(self) -> dict[str, float]:
        """Energy per inference by component (nJ)."""
        return {k: sum(lc.energy_nj[k] for lc in self.layers) for k in COMPONENTS}

    @property
    def area_breakdown(self) -> dict[str, float]:
        """Area by component (mm^2)."""
        return {k: sum(lc.area_mm2[k] for lc in self.layers) for k in COMPONENTS}

    @property
    def latency_us(self) -> float:
        """Latency per inference (us): layers one after the other."""
        return sum(lc.latency_us for lc in self.layers)

    @property
    def edp(self) -> float:
        """Energy-delay product (nJ * us)."""
        return self.energy_nj * self.latency_us

    def as_dict(self, layers: bool = True) -> dict[str, Any]:
        """JSON-ready dictionary (with per-layer costs unless ``layers=False``)."""
        out: dict[str, Any] = {
            "crossbar": str(self.crossbar),
            "scheme": self.scheme,
            "hardware": self.hardware,
            "input_shape": list(self.input_shape),
            "crossbars": self.crossbars,
            "energy_nj": round(self.energy_nj, 4),
            "area_mm2": round(self.area_mm2, 6),
            "latency_us": round(self.latency_us, 4),
            "edp": round(self.edp, 4),
            "energy_breakdown": {k: round(v, 4) for k, v in self.energy_breakdown.items()},
            "area_breakdown": {k: round(v, 7) for k, v in self.area_breakdown.items()},
        }
        if layers:
            out["layers"] = [lc.as_dict() for lc in self.layers]
        return out


def network_cost(
    model: nn.Module,
    xbar: Crossbar | str,
    scheme: str,
    hw: HardwareConfig,
    input_shape: Sequence[int],
    *,
    masks: Mapping[str, torch.Tensor] | None = None,
    mvms: Mapping[str, int] | None = None,
    layers: list[LayerMatrix] | None = None,
    stats: Mapping[str, tuple[Any, Any]] | None = None,
) -> NetworkCost:
    """Energy, area and latency per inference of ``model`` mapped on ``xbar`` under ``scheme``.

    Args:
        model: Dense or pruned network (pruned weights exactly 0).
        xbar: Crossbar geometry.
        scheme: Packing scheme, one of :data:`pimprune.mapping.counting.SCHEMES`.
        hw: Hardware configuration.
        input_shape: ``(C, H, W)`` or ``(1, C, H, W)`` of one input.
        masks: Layer name -> ``(g, M, N)`` non-zero mask (default: ``weight != 0``).
        mvms: Layer name -> MVMs per inference (default: counted by :func:`layer_mvms`).
        layers: The mapped layers (default: :func:`pimprune.mapping.matrices.extract_layers`).
        stats: Layer name -> ``(used_rows, used_cols)`` of its crossbars, overriding
            :func:`pimprune.mapping.packing.crossbar_stats` of the mask (e.g. :func:`dense_stats`).

    Returns:
        Per-layer and per-component costs. Layers that never run on this input
        (no MVM) are skipped.
    """
    xbar = Crossbar.parse(xbar)
    layers = extract_layers(model) if layers is None else layers
    mvms = layer_mvms(model, input_shape) if mvms is None else mvms
    masks = masks or {}
    stats = stats or {}
    shape = tuple(int(s) for s in input_shape)
    out = NetworkCost(xbar, scheme, hw.name, shape[-3:])
    for lay in layers:
        n = int(mvms.get(lay.name, 0))
        if n:
            used = stats[lay.name] if lay.name in stats else _mask_stats(lay, masks.get(lay.name), xbar, scheme)
            out.layers.append(_mapped_layer_cost(hw, xbar, scheme, lay, used, n))
    return out


def _mask_stats(lay: LayerMatrix, mask: torch.Tensor | None, xbar: Crossbar, scheme: str) -> tuple[Any, Any]:
    """Used rows and columns of the layer's crossbars for ``mask`` (default: its non-zeros)."""
    return crossbar_stats(lay.matrix() != 0 if mask is None else mask, xbar, scheme)


def _mapped_layer_cost(
    hw: HardwareConfig, xbar: Crossbar, scheme: str, lay: LayerMatrix, used: tuple[Any, Any], mvms: int
) -> LayerCost:
    """:func:`layer_cost` of a mapped layer, with the index widths of ``scheme``."""
    i_row, i_col = index_widths(scheme, lay.rows, lay.cols)
    return layer_cost(
        hw, xbar, *used, mvms, name=lay.name, kind=lay.kind, index_bits_per_row=i_row, index_bits_per_col=i_col
    )
