"""Energy, area and latency of a :class:`~pimprune.mapping.network.NetworkPlacement`, as the hardware pays it.

:func:`pimprune.hardware.cost.network_cost` costs the per-layer mapping from each layer's own
crossbars. A placement (network packing: blocks of several layers on shared crossbars, pieces
split along rows; or the per-layer mapping written as one, :func:`pimprune.mapping.network.pack_layers`)
is costed piece by piece (docs/hardware.md, "What sharing costs and what tiles cost"):

- every piece is one crossbar **activation** per MVM of its layer: its used rows driven by the
  DACs, its used columns read by the ADCs (resolution from the piece's used rows) in every input
  cycle, with the same per-crossbar energies as :func:`~pimprune.hardware.cost.crossbar_energy_pj`;
- an output computed by several pieces (a block split along its rows, a matrix taller than
  ``R``) has its partial sums added digitally: ``contributions - 1`` **adds** per MVM
  (``hw.adder``), and each layer gets the adder units that finish one MVM's adds in its cycles;
- the **index**: per used line the compaction's index (``subrow``: ``ceil(log2 M)`` bits per
  row), and on a network placement every used row and column carries its flat input / output
  index and, on a crossbar shared by ``t`` layers, a ``ceil(log2 t)``-bit layer tag
  (:func:`pimprune.mapping.network.index_tables`); registers and multiplexers of ``hw.index``;
- **area**: the placement's crossbars built in full, plus index and adders;
- **latency**: a crossbar runs the pieces of one layer in series, its layers in turn; layers
  that share crossbars are one stage holding the union of their crossbars
  (:func:`pimprune.hardware.latency.latency` with ``crossbar_sets``).

One activation per piece is what the hardware pays when pieces are driven separately; pieces of
one layer that :func:`pimprune.mapping.network.activations` could drive together cost the same
conversions (their rows and columns add up) but fewer activations in series.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pimprune.hardware.components import CostTotals
from pimprune.hardware.config import HardwareConfig
from pimprune.hardware.cost import COMPONENTS, crossbar_area_um2, crossbar_cycle_ns, crossbar_energy_pj
from pimprune.hardware.latency import LatencyReport, latency, sharing_groups
from pimprune.mapping.network import NetworkPlacement
from pimprune.mapping.packing import index_widths
from pimprune.numeric import cdiv, index_bits

__all__ = ["PLACEMENT_COMPONENTS", "PieceTable", "PlacementCost", "piece_table", "placement_cost"]

#: Energy / area components of a placement, in report order: :data:`~pimprune.hardware.cost.COMPONENTS` and the adders.
PLACEMENT_COMPONENTS: tuple[str, ...] = (*COMPONENTS, "adder")

_PJ_PER_NJ = 1e3
_UM2_PER_MM2 = 1e6
_NS_PER_US = 1e3


@dataclass
class PieceTable:
    """The pieces of a placement, one row each (one activation per MVM of its layer).

    Attributes:
        names: Layer names, in the placement's order.
        layer: ``(P,)`` index into ``names``.
        crossbar: ``(P,)`` crossbar of the piece.
        rows: ``(P,)`` used rows (holding a weight of the piece).
        cols: ``(P,)`` used columns.
        row_bits: ``(P,)`` index bits per used row.
        col_bits: ``(P,)`` index bits per used column.
        index_bits: Index storage of every crossbar, summed (bits).
        adds: Layer name -> adds of partial sums per MVM.
    """

    names: list[str]
    layer: np.ndarray
    crossbar: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    row_bits: np.ndarray
    col_bits: np.ndarray
    index_bits: int
    adds: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.layer.size)


def _bool_matrices(matrices: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {n: (m.detach() if m.dtype == torch.bool else m.detach() != 0).cpu().numpy() for n, m in matrices.items()}


class _FullRows:
    """Per layer, which rows are non-zero over a whole ``C``-column block (lazily, per layer).

    A set of pieces of such rows, on the columns of that block, uses every row and column:
    no gather of its cells is needed (the usual case for ``subrow`` blocks of dense weights).
    """

    def __init__(self, masks: Mapping[str, np.ndarray], width: int) -> None:
        self.masks, self.width = masks, width
        self._full: dict[str, np.ndarray] = {}

    def block(self, layer: str, cols: np.ndarray) -> int | None:
        """The column block ``cols`` is, or None."""
        b = int(cols[0]) // self.width if cols.size else -1
        n = self.masks[layer].shape[2]
        whole = cols.size == min(self.width, n - b * self.width) and b >= 0 and int(cols[0]) == b * self.width
        return b if whole and bool((np.diff(cols) == 1).all()) else None

    def full(self, layer: str) -> np.ndarray:
        """``(g, M, ceil(N / C))``: the row is non-zero on every column of the block."""
        if layer not in self._full:
            m = self.masks[layer]
            g, rows, n = m.shape
            nb = -(-n // self.width)
            padded = np.ones((g, rows, nb * self.width), dtype=bool)
            padded[:, :, :n] = m
            self._full[layer] = padded.reshape(g, rows, nb, self.width).all(3)
        return self._full[layer]


@dataclass
class _Group:
    """The pieces of one block (one layer, group and set of columns), their used lines.

    Attributes:
        layer: Layer index.
        group: Group of the layer's matrices.
        cols: ``(w,)`` the block's columns.
        members: ``(P,)`` indices of its pieces (placement order).
        crossbar: ``(P,)`` crossbar of each piece.
        row_offset: ``(P,)`` first crossbar row of each piece.
        col_offset: ``(P,)`` first crossbar column of each piece.
        sizes: ``(P,)`` rows of each piece.
        rows: ``(H,)`` the pieces' matrix rows, one piece after the other.
        any_row: ``(H,)`` the row holds a weight of its piece.
        any_col: ``(P, w)`` the column holds a weight of the piece.
    """

    layer: int
    group: int
    cols: np.ndarray
    members: np.ndarray
    crossbar: np.ndarray
    row_offset: np.ndarray
    col_offset: np.ndarray
    sizes: np.ndarray
    rows: np.ndarray
    any_row: np.ndarray
    any_col: np.ndarray

    @property
    def starts(self) -> np.ndarray:
        """First position of each piece in :attr:`rows`."""
        return np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)


def _groups(placement: NetworkPlacement, masks: Mapping[str, np.ndarray], ids: Mapping[str, int]) -> list[_Group]:
    """The pieces grouped by block, with their used lines (one gather per block, none for full rows)."""
    by_block: dict[int, list[tuple[int, int, object]]] = {}
    i = 0
    for k, on in enumerate(placement.crossbars):
        for p in on:
            by_block.setdefault(p.block, []).append((i, k, p))
            i += 1
    full = _FullRows(masks, placement.xbar.cols)
    out = []
    for members in by_block.values():
        pieces = [p for _, _, p in members]
        first = pieces[0]
        sizes = np.array([p.rows.size for p in pieces], dtype=np.int64)
        rows = np.concatenate([p.rows for p in pieces])
        b = full.block(first.layer, first.cols)
        if b is not None and bool(full.full(first.layer)[first.group, rows, b].all()):
            any_row, any_col = np.ones(rows.size, dtype=bool), np.ones((len(pieces), first.cols.size), dtype=bool)
        else:
            sub = masks[first.layer][first.group][np.ix_(rows, first.cols)]
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            any_row = sub.any(1)
            any_col = np.logical_or.reduceat(sub, starts, axis=0) if sub.size else np.zeros((len(pieces), 0), bool)
        out.append(_Group(
            ids[first.layer], first.group, first.cols, np.array([m[0] for m in members], dtype=np.int64),
            np.array([m[1] for m in members], dtype=np.int64), np.array([p.row_offset for p in pieces], dtype=np.int64),
            np.array([p.col_offset for p in pieces], dtype=np.int64), sizes, rows, any_row, any_col,
        ))  # fmt: skip
    return out


def _widths(placement: NetworkPlacement) -> np.ndarray:
    """``(layers, 2)`` index bits per used row and per used column of every layer, tags aside."""
    base = []
    for s in placement.layers.values():
        if placement.packing == "network":  # flat input / output of every line (index_tables)
            base.append((index_bits(s.groups * s.rows), index_bits(s.groups * s.cols)))
        else:  # per-layer mapping: the compaction's own index (cost.network_cost)
            base.append(index_widths(placement.scheme, s.rows, s.cols))
    return np.array(base, dtype=np.int64).reshape(-1, 2)


def _adds(placement: NetworkPlacement, groups: list[_Group]) -> dict[str, int]:
    """Adds of partial sums per MVM of every layer: per output, contributing pieces - 1."""
    names = list(placement.layers)
    contributions = np.zeros(len(names), dtype=np.int64)
    outs: list[list[np.ndarray]] = [[] for _ in names]
    for grp in groups:
        contributions[grp.layer] += int(grp.any_col.sum())
        width = placement.layers[names[grp.layer]].cols
        outs[grp.layer].append(grp.group * width + grp.cols[grp.any_col.any(0)])
    return {
        name: int(contributions[i] - (np.unique(np.concatenate(outs[i])).size if outs[i] else 0))
        for i, name in enumerate(names)
    }


def _entries(placement: NetworkPlacement, groups: list[_Group]) -> tuple[np.ndarray, ...]:
    """``(crossbar, layer, side, physical line, flat index)`` of every used line of every piece (side 0: rows)."""
    names = list(placement.layers)
    parts = []
    for grp in groups:
        shape = placement.layers[names[grp.layer]]
        piece = np.repeat(np.arange(grp.members.size), grp.sizes)  # piece of each row
        phys = grp.row_offset[piece] + np.arange(grp.rows.size) - np.repeat(grp.starts, grp.sizes)
        used = grp.any_row
        parts.append((grp.crossbar[piece][used], phys[used], grp.group * shape.rows + grp.rows[used], 0, grp.layer))
        cols = grp.col_offset[:, None] + np.arange(grp.cols.size)[None, :]
        flat = np.broadcast_to(grp.group * shape.cols + grp.cols[None, :], cols.shape)
        xbar = np.broadcast_to(grp.crossbar[:, None], cols.shape)
        parts.append((xbar[grp.any_col], cols[grp.any_col], flat[grp.any_col], 1, grp.layer))
    if not parts:
        return tuple(np.zeros(0, np.int64) for _ in range(5))
    k, phys, flat = (np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(3))
    side = np.concatenate([np.full(p[0].size, p[3], dtype=np.int64) for p in parts])
    layer = np.concatenate([np.full(p[0].size, p[4], dtype=np.int64) for p in parts])
    return k, layer, side, phys, flat


def _index_storage(placement: NetworkPlacement, groups: list[_Group], base: np.ndarray, tags: np.ndarray, table) -> int:
    """Index bits of every crossbar.

    Per-layer mapping: per used line the compaction's index (as :func:`~pimprune.hardware.cost.network_cost`).
    Network packing: each ``(line, layer, flat index)`` entry once (two pieces of one layer driving
    one row with the same input share it, as in :func:`pimprune.mapping.network.index_tables`), its
    flat index plus the crossbar's layer tag.
    """
    if placement.packing != "network":
        return int((table["rows"] * table["row_bits"] + table["cols"] * table["col_bits"]).sum())
    k, layer, side, phys, flat = _entries(placement, groups)
    if not k.size:
        return 0
    dims = [len(placement.layers), 2, max(placement.xbar.rows, placement.xbar.cols), int(flat.max()) + 1]
    if (int(k.max()) + 1) * math.prod(dims) < 2**62:  # one int64 per entry
        key = (((k * dims[0] + layer) * dims[1] + side) * dims[2] + phys) * dims[3] + flat
        _, first = np.unique(key, return_index=True)
    else:  # pragma: no cover - beyond int64: rows of a table
        _, first = np.unique(np.stack([k, layer, side, phys, flat], axis=1), axis=0, return_index=True)
    return int((base[layer[first], side[first]] + tags[k[first]]).sum())


def piece_table(placement: NetworkPlacement, matrices: Mapping[str, torch.Tensor]) -> PieceTable:
    """Used lines, index widths and adds of every piece of ``placement``.

    Args:
        placement: The placement.
        matrices: Layer name -> ``(g, M, N)`` weights or mask (non-zero = kept) of every placed layer.
    """
    names = list(placement.layers)
    ids = {name: i for i, name in enumerate(names)}
    groups = _groups(placement, _bool_matrices(matrices), ids)
    n = sum(grp.members.size for grp in groups)
    layer, crossbar, rows, cols = (np.zeros(n, dtype=np.int64) for _ in range(4))
    for grp in groups:
        layer[grp.members] = grp.layer
        crossbar[grp.members] = grp.crossbar
        rows[grp.members] = np.add.reduceat(grp.any_row.astype(np.int64), grp.starts) if grp.rows.size else 0
        cols[grp.members] = grp.any_col.sum(1)
    tags = np.zeros(placement.n_crossbars, dtype=np.int64)
    if placement.packing == "network" and n:  # ceil(log2(layers on the crossbar)) bits of layer tag
        pairs = np.unique(crossbar * len(names) + layer)
        on = np.bincount(pairs // len(names), minlength=placement.n_crossbars)
        tags = np.array([index_bits(int(t)) for t in range(int(on.max()) + 1)], dtype=np.int64)[on]
    base = _widths(placement)
    table = {
        "rows": rows, "cols": cols,
        "row_bits": base[layer, 0] + tags[crossbar], "col_bits": base[layer, 1] + tags[crossbar],
    }  # fmt: skip
    return PieceTable(
        names=names, layer=layer, crossbar=crossbar, **table,
        index_bits=_index_storage(placement, groups, base, tags, table), adds=_adds(placement, groups),
    )  # fmt: skip


@dataclass
class PlacementCost(CostTotals):
    """Cost of a placement per inference (see the module doc).

    Attributes:
        placement: ``"network"`` or ``"layer"`` (the placement's packing).
        crossbars: Crossbars of the placement.
        hardware: Name of the hardware configuration.
        mvms: Layer name -> MVMs per inference (layers that never run are left out).
        activations: Layer name -> activations per MVM (its pieces).
        column_reads: Layer name -> logical columns read per inference
            (``sum over its pieces of used columns x input cycles x MVMs``).
        adds: Layer name -> adds of partial sums per MVM.
        energy_layers_nj: Layer name -> energy per inference by component (nJ).
        area_breakdown: Area by component (mm^2).
        cycle_ns: Layer name -> one input cycle of an MVM, its activations on one crossbar in series (ns).
        crossbar_sets: Layer name -> the crossbars holding it.
        stage_crossbars: Crossbars of every stage (a layer, or layers sharing crossbars).
        latency: Both execution models on the chip.
        latency_cycles: Input cycles of one MVM.
    """

    placement: str
    crossbars: int
    hardware: str
    mvms: dict[str, int]
    activations: dict[str, int]
    column_reads: dict[str, int]
    adds: dict[str, int]
    energy_layers_nj: dict[str, dict[str, float]]
    area_breakdown: dict[str, float]
    cycle_ns: dict[str, float]
    crossbar_sets: dict[str, set[int]]
    stage_crossbars: list[int]
    latency: LatencyReport
    latency_cycles: int = 1

    @property
    def energy_breakdown(self) -> dict[str, float]:
        """Energy per inference by component (nJ)."""
        return {c: sum(e[c] for e in self.energy_layers_nj.values()) for c in PLACEMENT_COMPONENTS}

    @property
    def latency_us(self) -> float:
        """Latency per inference (us), layers one after the other on one copy, no chip limit.

        The counterpart of :attr:`pimprune.hardware.cost.NetworkCost.latency_us`; :attr:`latency`
        has the chip's execution models.
        """
        return sum(m * self.cycle_ns[n] for n, m in self.mvms.items()) * self.latency_cycles / _NS_PER_US

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the ``hardware`` entry of a ``--packing network`` result)."""
        lbl, pipe = self.latency["layer_by_layer"], self.latency["pipelined"]
        return {
            "packing": self.placement,
            "crossbars": self.crossbars,
            "energy_nj": round(self.energy_nj, 4),
            "area_mm2": round(self.area_mm2, 6),
            "latency_us": round(self.latency_us, 3),
            "latency_layer_by_layer_us": round(lbl.latency_us, 3),
            "latency_pipelined_us": round(pipe.latency_us, 3),
            "throughput_pipelined_ips": round(pipe.throughput_ips, 3),
            "activations_per_inference": sum(self.mvms[n] * a for n, a in self.activations.items()),
            "column_reads_per_inference": sum(self.column_reads.values()),
            "adds_per_inference": sum(self.mvms[n] * a for n, a in self.adds.items()),
            "stages": len(self.stage_crossbars),
            "energy_breakdown": {k: round(v, 4) for k, v in self.energy_breakdown.items()},
            "area_breakdown": {k: round(v, 7) for k, v in self.area_breakdown.items()},
        }


def _piece_energy_pj(hw: HardwareConfig, t: PieceTable) -> dict[str, np.ndarray]:
    """Energy (pJ) of one activation of every piece, by component (index with per-piece widths)."""
    out = crossbar_energy_pj(hw, t.rows, t.cols)
    active = (t.rows > 0) & (t.cols > 0)
    r, c = np.where(active, t.rows, 0), np.where(active, t.cols, 0)
    ix = hw.index
    lines = r * (t.row_bits > 0) + c * (t.col_bits > 0)
    out["index"] = (r * t.row_bits + c * t.col_bits) * ix.register_energy_pj_per_bit + (
        hw.input_cycles * lines * ix.mux_energy_pj_per_line_cycle
    )
    return out


def _layer_sums(t: PieceTable, values: np.ndarray) -> np.ndarray:
    return np.bincount(t.layer, weights=values.astype(np.float64), minlength=len(t.names))


def _serial_cycles(hw: HardwareConfig, placement: NetworkPlacement, t: PieceTable) -> np.ndarray:
    """Per layer: the most time one crossbar spends on its activations in one input cycle (ns)."""
    cycle = crossbar_cycle_ns(hw, placement.xbar, t.rows, t.cols)
    key = t.layer * max(1, placement.n_crossbars) + t.crossbar
    uniq, inv = np.unique(key, return_inverse=True)
    per_xbar = np.bincount(inv, weights=cycle)
    out = np.zeros(len(t.names))
    np.maximum.at(out, uniq // max(1, placement.n_crossbars), per_xbar)
    return out


def _area_um2(hw: HardwareConfig, placement: NetworkPlacement, t: PieceTable, mvms: Mapping[str, int]) -> dict:
    """Area (um^2) by component: the crossbars built in full, the index storage and the adder units."""
    k = placement.n_crossbars
    area = crossbar_area_um2(hw, placement.xbar, np.ones(k, dtype=np.int64), np.ones(k, dtype=np.int64))
    ix = hw.index
    area["index"] = t.index_bits * (ix.register_area_um2_per_bit + ix.mux_area_um2_per_select_bit)
    per_unit = hw.adder.adds_per_unit_per_cycle * hw.input_cycles
    units = sum(int(cdiv(a, per_unit)) for n, a in t.adds.items() if mvms.get(n, 0))
    area["adder"] = units * hw.adder.area_um2_per_unit
    return area


def placement_cost(
    placement: NetworkPlacement,
    matrices: Mapping[str, torch.Tensor],
    hw: HardwareConfig,
    mvms: Mapping[str, int],
) -> PlacementCost:
    """Energy, area and latency per inference of ``placement`` (see the module doc).

    Args:
        placement: The placement (network packing, or the per-layer mapping as a placement).
        matrices: Layer name -> ``(g, M, N)`` weights or mask (non-zero = kept) of every placed layer.
        hw: Hardware configuration.
        mvms: Layer name -> MVMs per inference (:func:`pimprune.hardware.cost.layer_mvms`).
    """
    t = piece_table(placement, matrices)
    n_mvm = np.array([int(mvms.get(n, 0)) for n in t.names], dtype=np.float64)
    energy = _piece_energy_pj(hw, t)
    layers = {n: {} for n, m in zip(t.names, n_mvm, strict=True) if m}
    for comp in COMPONENTS:
        per_layer = _layer_sums(t, energy[comp]) * n_mvm / _PJ_PER_NJ
        for i, n in enumerate(t.names):
            if n in layers:
                layers[n][comp] = float(per_layer[i])
    for n in layers:
        layers[n]["adder"] = mvms[n] * t.adds[n] * hw.adder.energy_pj_per_add / _PJ_PER_NJ
    sets = {n: set() for n in t.names}
    for i, k in zip(t.layer.tolist(), t.crossbar.tolist(), strict=True):
        sets[t.names[i]].add(k)
    cycles = dict(zip(t.names, _serial_cycles(hw, placement, t).tolist(), strict=True))
    acts = np.bincount(t.layer, minlength=len(t.names))
    reads = _layer_sums(t, t.cols) * hw.input_cycles * n_mvm
    run = [n for n in t.names if n in layers]
    report = latency({n: len(sets[n]) for n in run}, {n: mvms[n] for n in run}, hw, cycle_ns=cycles,
                     total_crossbars=placement.n_crossbars, crossbar_sets={n: sets[n] for n in run})
    groups = sharing_groups(sets)
    grouped = {n for g in groups for n in g}
    stages = [len(set().union(*(sets[n] for n in g))) for g in groups]
    stages += [len(sets[n]) for n in t.names if n not in grouped and sets[n]]
    return PlacementCost(
        placement=placement.packing, crossbars=placement.n_crossbars, hardware=hw.name,
        mvms={n: int(mvms[n]) for n in run},
        activations={n: int(acts[i]) for i, n in enumerate(t.names) if n in layers},
        column_reads={n: int(reads[i]) for i, n in enumerate(t.names) if n in layers},
        adds={n: t.adds[n] for n in run}, energy_layers_nj=layers,
        area_breakdown={c: v / _UM2_PER_MM2 for c, v in _area_um2(hw, placement, t, mvms).items()},
        cycle_ns=cycles, crossbar_sets=sets, stage_crossbars=stages, latency=report, latency_cycles=hw.input_cycles,
    )  # fmt: skip
