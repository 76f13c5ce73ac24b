"""Network packing: the compacted blocks of several layers share crossbars.

Under per-layer mapping every layer's crossbars are its own; under network
packing the blocks of all layers (the crossbars :func:`pimprune.mapping.packing.pack`
gives each layer, stacked per column set) are placed together on as few
``RxC`` crossbars as a lane rule finds (:func:`place_blocks`), never more than
per-layer mapping. It is valid because layers take turns: an *activation*
drives only its layer's rows and reads only its columns (:func:`activations`).
Details and measurements: docs/packing.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pimprune.geometry import Crossbar
from pimprune.mapping.packing import PackingError, pack
from pimprune.numeric import cdiv, index_bits

__all__ = [
    "PACKINGS",
    "Activation",
    "Block",
    "LayerShape",
    "NetworkPlacement",
    "Piece",
    "activation_summary",
    "activations",
    "check_placement",
    "crossbar_layers",
    "extract_blocks",
    "index_tables",
    "pack_layers",
    "pack_network",
    "place_blocks",
]

#: Ways of mapping a network onto crossbars.
PACKINGS: tuple[str, ...] = ("layer", "network")

#: Crossbar counts tried one by one above the packing bound before bisecting.
_LINEAR_TRIES = 8


@dataclass(frozen=True)
class LayerShape:
    """Shape of one layer's ``(g, M, N)`` matrices.

    Attributes:
        name: Qualified layer name.
        groups: Number of matrices ``g``.
        rows: Rows ``M`` per matrix (inputs).
        cols: Columns ``N`` per matrix (outputs).
    """

    name: str
    groups: int
    rows: int
    cols: int


@dataclass
class Block:
    """One layer's compacted rectangle: matrix ``rows`` x ``cols`` of one group.

    Attributes:
        layer: Layer name.
        group: Group (matrix) index.
        rows: ``(h,)`` int64 matrix rows, in physical order.
        cols: ``(w,)`` int64 matrix columns, in physical order (``w <= C``).
    """

    layer: str
    group: int
    rows: np.ndarray
    cols: np.ndarray

    @property
    def height(self) -> int:
        """Rows of the block."""
        return int(self.rows.size)

    @property
    def width(self) -> int:
        """Columns of the block."""
        return int(self.cols.size)


@dataclass
class Piece:
    """A block, or a run of its rows, placed on one crossbar.

    Attributes:
        layer: Layer name.
        group: Group (matrix) index.
        rows: ``(h,)`` matrix rows on crossbar rows ``row_offset .. row_offset+h-1``.
        cols: ``(w,)`` matrix columns on crossbar columns ``col_offset .. col_offset+w-1``.
        row_offset: First crossbar row.
        col_offset: First crossbar column.
        block: Index of the block (in :attr:`NetworkPlacement.blocks` order) it comes from.
    """

    layer: str
    group: int
    rows: np.ndarray
    cols: np.ndarray
    row_offset: int
    col_offset: int
    block: int

    @property
    def row_span(self) -> range:
        """Crossbar rows it occupies."""
        return range(self.row_offset, self.row_offset + int(self.rows.size))

    @property
    def col_span(self) -> range:
        """Crossbar columns it occupies."""
        return range(self.col_offset, self.col_offset + int(self.cols.size))


@dataclass
class NetworkPlacement:
    """Blocks of a network placed on crossbars.

    Attributes:
        xbar: Crossbar geometry.
        packing: ``"network"`` (shared crossbars) or ``"layer"`` (each crossbar one layer's).
        scheme: Compaction the blocks come from (:data:`pimprune.mapping.counting.SCHEMES`).
        layers: Shapes of the placed layers, by name, in network order.
        crossbars: Pieces of every crossbar.
        n_blocks: Number of blocks before splitting.
    """

    xbar: Crossbar
    packing: str
    scheme: str
    layers: dict[str, LayerShape]
    crossbars: list[list[Piece]] = field(default_factory=list)
    n_blocks: int = 0

    @property
    def n_crossbars(self) -> int:
        """Crossbars used."""
        return len(self.crossbars)

    def cells_used(self) -> int:
        """Cells covered by pieces (the *kept cells* of the blocks)."""
        return sum(int(p.rows.size * p.cols.size) for pieces in self.crossbars for p in pieces)

    def bound(self) -> int:
        """``ceil(cells_used / (R*C))``: the fewest crossbars that could hold the blocks."""
        return int(cdiv(self.cells_used(), self.xbar.cells))

    def as_json(self) -> dict:
        """The placement file (``map --placement``).

        ``rows`` index the layer's weight matrix as docs/design.md orients it (inputs
        ``c_in*kh*kw`` of one group, in ``weight.reshape(c_out, -1).t()`` order) and
        ``cols`` its outputs (the output channel ``group * N + column``).
        """
        out = []
        for pieces in self.crossbars:
            blocks = []
            for p in pieces:
                n = self.layers[p.layer].cols
                blocks.append(
                    {
                        "layer": p.layer,
                        "rows": [int(r) for r in p.rows],
                        "cols": [int(c) + p.group * n for c in p.cols],
                        "row_offset": int(p.row_offset),
                        "col_offset": int(p.col_offset),
                    }
                )
            out.append({"blocks": blocks})
        return {
            "crossbar": str(self.xbar),
            "packing": self.packing,
            "scheme": self.scheme,
            "total_crossbars": self.n_crossbars,
            "crossbars": out,
        }


# --------------------------------------------------------------------------- blocks


def _shape(name: str, matrix: torch.Tensor) -> LayerShape:
    if matrix.dim() != 3:
        raise ValueError(f"{name}: matrices must have shape (groups, rows, cols), got {tuple(matrix.shape)}")
    g, m, n = (int(s) for s in matrix.shape)
    return LayerShape(name, g, m, n)


def extract_blocks(name: str, matrix: torch.Tensor, xbar: Crossbar, scheme: str) -> list[Block]:
    """The compacted blocks of one layer under ``scheme`` (zeros of ``matrix`` are pruned).

    The crossbars :func:`pimprune.mapping.packing.pack` gives the layer are cut to
    their valid lines; those of one group with the same columns are stacked into
    one block (their rows never repeat: a packing reaches no entry twice).

    Args:
        name: Layer name.
        matrix: ``(g, M, N)`` weights or mask (non-zero = kept).
        xbar: Crossbar geometry.
        scheme: A scheme of :data:`pimprune.mapping.counting.SCHEMES`.

    Returns:
        Blocks in the packer's order (groups outer).
    """
    _shape(name, matrix)
    if scheme == "subrow":
        return _subrow_blocks(name, (matrix.detach() != 0).cpu().numpy(), xbar)
    packed = pack((matrix.detach() != 0).to(torch.float32), xbar, scheme)
    merged: dict[tuple[int, bytes], list[np.ndarray]] = {}
    cols_of: dict[tuple[int, bytes], np.ndarray] = {}
    group = packed.group.cpu().numpy()
    ri, rv = packed.row_index.cpu().numpy(), packed.row_valid.cpu().numpy()
    ci, cv = packed.col_index.cpu().numpy(), packed.col_valid.cpu().numpy()
    for k in range(packed.n_crossbars):
        cols = ci[k][cv[k]].astype(np.int64)
        key = (int(group[k]), cols.tobytes())
        merged.setdefault(key, []).append(ri[k][rv[k]].astype(np.int64))
        cols_of[key] = cols
    return [Block(name, key[0], np.concatenate(rows), cols_of[key]) for key, rows in merged.items()]


def _subrow_blocks(name: str, mask: np.ndarray, xbar: Crossbar) -> list[Block]:
    """:func:`extract_blocks` under ``subrow`` without building the packing (the same blocks, in order).

    Per group and ``C``-column block, the rows holding a kept weight in that block, ascending
    (what :func:`pimprune.mapping.packing.pack` stacks ``R`` at a time), by all the block's columns.
    """
    g, m, n = mask.shape
    nb = cdiv(n, xbar.cols)
    padded = np.zeros((g, m, nb * xbar.cols), dtype=bool)
    padded[:, :, :n] = mask
    kept = padded.reshape(g, m, nb, xbar.cols).any(3)  # (g, M, nb)
    out = []
    for group in range(g):
        for b in range(nb):
            rows = np.flatnonzero(kept[group, :, b]).astype(np.int64)
            if rows.size:
                cols = np.arange(b * xbar.cols, min((b + 1) * xbar.cols, n), dtype=np.int64)
                out.append(Block(name, group, rows, cols))
    return out


# --------------------------------------------------------------------------- placement


#: Lane choice rules tried in turn: among the free lanes a block fits, the one with the smallest key.
_LANE_RULES: tuple[Callable[[tuple[int, int, int]], tuple[int, ...]], ...] = (
    lambda lane: (lane[1] - lane[0], -lane[2], lane[0]),  # narrowest, most filled (wrap-around)
    lambda lane: (lane[1] - lane[0], lane[2], lane[0]),  # narrowest, least filled (levelling)
    lambda lane: (-lane[2], lane[1] - lane[0], lane[0]),  # most filled, then narrowest
)


def _try_place(
    blocks: Sequence[Block], order: Sequence[int], xbar: Crossbar, k: int, rule: Callable = _LANE_RULES[0]
) -> list[list[Piece]] | None:
    """Place ``blocks`` (in ``order``) on ``k`` crossbars with the lane rule, or ``None``."""
    height = k * xbar.rows
    lanes: list[tuple[int, int, int]] = [(0, xbar.cols, 0)]  # (x0, x1, y): free from y to the top
    strip: list[tuple[int, int, int, int, int]] = []  # (block, first row, x0, y, rows) of each piece
    for b in order:
        w, left, done = blocks[b].width, blocks[b].height, 0
        while left:
            fits = [i for i, (x0, x1, _) in enumerate(lanes) if x1 - x0 >= w]
            if not fits:
                return None
            i = min(fits, key=lambda j: rule(lanes[j]))
            x0, x1, y = lanes.pop(i)
            take = min(left, height - y)
            strip.append((b, done, x0, y, take))
            if y + take < height:
                lanes.append((x0, x0 + w, y + take))
            if x0 + w < x1:
                lanes.append((x0 + w, x1, y))
            left, done = left - take, done + take
    return _cut(blocks, strip, xbar, k)


def _cut(blocks: Sequence[Block], strip: list, xbar: Crossbar, k: int) -> list[list[Piece]]:
    """Cut strip pieces at every multiple of ``R`` into pieces of crossbars."""
    crossbars: list[list[Piece]] = [[] for _ in range(k)]
    for b, first, x0, y, take in strip:
        blk = blocks[b]
        while take:
            xb, row = divmod(y, xbar.rows)
            n = min(take, xbar.rows - row)
            rows = blk.rows[first : first + n]
            crossbars[xb].append(Piece(blk.layer, blk.group, rows, blk.cols, row, x0, b))
            first, y, take = first + n, y + n, take - n
    return [pieces for pieces in crossbars if pieces]


def _per_layer(blocks: Sequence[Block], xbar: Crossbar) -> list[list[Piece]]:
    """Each block on crossbars of its own, ``R`` rows at a time (the per-layer mapping)."""
    out = []
    for b, blk in enumerate(blocks):
        for start in range(0, blk.height, xbar.rows):
            rows = blk.rows[start : start + xbar.rows]
            out.append([Piece(blk.layer, blk.group, rows, blk.cols, 0, 0, b)])
    return out


def _fill(queue: list[list[int]], blocks: Sequence[Block], lane: tuple[int, int, int, int], strip: list) -> list:
    """Stack queued blocks (``[block, rows done]``) into ``lane`` (x0, x1, y, top), wrapping at its top.

    Returns:
        The free lanes left: beside the pieces and above them (full lane width).
    """
    x0, x1, y, top = lane
    start, w = y, blocks[queue[0][0]].width
    while queue and y < top:
        b, done = queue[0]
        take = min(blocks[b].height - done, top - y)
        strip.append((b, done, x0, y, take))
        y += take
        queue[0][1] += take
        if queue[0][1] == blocks[b].height:
            queue.pop(0)
    left = [(x0 + w, x1, start, y)] if x0 + w < x1 and y > start else []
    return left + ([(x0, x1, y, top)] if y < top else [])


def _try_levels(blocks: Sequence[Block], order: Sequence[int], xbar: Crossbar, k: int) -> list[list[Piece]] | None:
    """Level rule: each width class fills free side lanes, then a level of ``C // w`` equal lanes.

    A class of width ``w`` and total height ``H`` left opens a level of
    ``ceil(H / (C // w))`` rows split into ``C // w`` lanes filled with wrap-around;
    the columns beside them and the top of the last lane become side lanes for
    narrower classes. Returns ``None`` when the levels pass ``k*R`` rows.
    """
    strip: list[tuple[int, int, int, int, int]] = []
    side: list[tuple[int, int, int, int]] = []
    base = 0
    for w, members in itertools.groupby(order, key=lambda b: blocks[b].width):
        queue = [[b, 0] for b in members]
        while queue:
            fits = sorted((lane for lane in side if lane[1] - lane[0] >= w), key=lambda ln: (ln[1] - ln[0], ln[2]))
            if not fits:
                break
            side.remove(fits[0])
            side += _fill(queue, blocks, fits[0], strip)
        if not queue:
            continue
        n = xbar.cols // w
        h = cdiv(sum(blocks[b].height - done for b, done in queue), n)
        if base + h > k * xbar.rows:
            return None
        if n * w < xbar.cols:
            side.append((n * w, xbar.cols, base, base + h))
        for i in range(n):
            side += _fill(queue, blocks, (i * w, (i + 1) * w, base, base + h), strip) if queue else [
                (i * w, (i + 1) * w, base, base + h)
            ]
        base += h
    return _cut(blocks, strip, xbar, k)


def _place_any(blocks: Sequence[Block], order: Sequence[int], xbar: Crossbar, k: int) -> list[list[Piece]] | None:
    """The first lane rule of :data:`_LANE_RULES` that fits everything on ``k`` crossbars."""
    placed = _try_levels(blocks, order, xbar, k)
    for rule in _LANE_RULES:
        if placed is not None:
            return placed
        placed = _try_place(blocks, order, xbar, k, rule)
    return placed


def place_blocks(blocks: Sequence[Block], xbar: Crossbar) -> list[list[Piece]]:
    """Place blocks into as few shared crossbars as the lane rule finds (see the module doc).

    Args:
        blocks: Blocks of any layers, in network order; none wider than ``C``.
        xbar: Crossbar geometry.

    Returns:
        The pieces of every crossbar (no crossbar empty). Never more crossbars
        than placing each block on crossbars of its own.
    """
    for blk in blocks:
        if blk.width > xbar.cols or not blk.width or not blk.height:
            raise ValueError(f"{blk.layer}: a block of {blk.height}x{blk.width} cannot be placed on {xbar}")
    cells = sum(blk.height * blk.width for blk in blocks)
    lo, hi = int(cdiv(cells, xbar.cells)), sum(int(cdiv(blk.height, xbar.rows)) for blk in blocks)  # hi: _per_layer's
    order = sorted(range(len(blocks)), key=lambda b: -blocks[b].width)  # stable: network order within a width
    for k in range(lo, min(hi, lo + _LINEAR_TRIES)):
        placed = _place_any(blocks, order, xbar, k)
        if placed is not None:
            return placed
    best, lo = None, min(hi, lo + _LINEAR_TRIES)
    while lo < hi:  # bisection above the linear tries; keeps the best placement found
        mid = (lo + hi) // 2
        placed = _place_any(blocks, order, xbar, mid)
        if placed is None:
            lo = mid + 1
        else:
            best, hi = placed, mid
    return _per_layer(blocks, xbar) if best is None else best


def pack_network(matrices: Mapping[str, torch.Tensor], xbar: Crossbar, scheme: str = "subrow") -> NetworkPlacement:
    """Network packing of every layer's compacted blocks into shared crossbars.

    Args:
        matrices: Layer name -> ``(g, M, N)`` weights or mask (non-zero = kept), network order.
        xbar: Crossbar geometry.
        scheme: Compaction of every layer (:data:`pimprune.mapping.counting.SCHEMES`).

    Returns:
        The placement (``packing="network"``).
    """
    xbar = Crossbar.parse(xbar)
    shapes = {name: _shape(name, m) for name, m in matrices.items()}
    blocks = [blk for name, m in matrices.items() for blk in extract_blocks(name, m, xbar, scheme)]
    return NetworkPlacement(xbar, "network", scheme, shapes, place_blocks(blocks, xbar), len(blocks))


def pack_layers(matrices: Mapping[str, torch.Tensor], xbar: Crossbar, scheme: str = "subrow") -> NetworkPlacement:
    """Per-layer mapping written as a placement: every crossbar holds one layer's blocks.

    The crossbars are exactly those of :func:`pimprune.mapping.packing.pack`
    (one piece each, at offset 0), so the count equals
    :func:`pimprune.mapping.counting.count` summed over the layers.
    """
    xbar = Crossbar.parse(xbar)
    shapes = {name: _shape(name, m) for name, m in matrices.items()}
    crossbars: list[list[Piece]] = []
    n_blocks = 0
    for name, m in matrices.items():
        packed = pack((m.detach() != 0).to(torch.float32), xbar, scheme)
        ri, rv = packed.row_index.cpu().numpy(), packed.row_valid.cpu().numpy()
        ci, cv = packed.col_index.cpu().numpy(), packed.col_valid.cpu().numpy()
        for k in range(packed.n_crossbars):
            rows, cols = ri[k][rv[k]].astype(np.int64), ci[k][cv[k]].astype(np.int64)
            crossbars.append([Piece(name, int(packed.group[k]), rows, cols, 0, 0, n_blocks)])
            n_blocks += 1
    return NetworkPlacement(xbar, "layer", scheme, shapes, crossbars, n_blocks)


# --------------------------------------------------------------------------- validity


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PackingError(message)


def _owner_grid(pieces: Sequence[Piece], xbar: Crossbar, where: str) -> np.ndarray:
    """``(R, C)`` int: index of the piece owning each cell, -1 where free; checks bounds and overlap."""
    owner = np.full((xbar.rows, xbar.cols), -1, dtype=np.int64)
    for i, p in enumerate(pieces):
        h, w = int(p.rows.size), int(p.cols.size)
        _require(h > 0 and w > 0, f"{where}: an empty piece of {p.layer}")
        _require(
            p.row_offset >= 0 and p.col_offset >= 0 and p.row_offset + h <= xbar.rows and p.col_offset + w <= xbar.cols,
            f"{where}: a piece of {p.layer} lies outside the {xbar} crossbar",
        )
        area = owner[p.row_offset : p.row_offset + h, p.col_offset : p.col_offset + w]
        _require(bool((area == -1).all()), f"{where}: pieces overlap ({p.layer})")
        area[...] = i
    return owner


def check_placement(placement: NetworkPlacement, matrices: Mapping[str, torch.Tensor]) -> None:
    """Prove a placement realisable and complete for ``matrices``.

    Checks: pieces inside their crossbar and disjoint; matrix indices in range;
    no (layer, group, row, column) in two pieces; every non-zero of every
    matrix in a piece; no crossbar empty.

    Raises:
        PackingError: naming the first violated property.
    """
    xbar = placement.xbar
    reach = {name: np.zeros(s.groups * s.rows * s.cols, dtype=np.int64) for name, s in placement.layers.items()}
    for k, pieces in enumerate(placement.crossbars):
        _require(bool(pieces), f"crossbar {k} holds no block")
        _owner_grid(pieces, xbar, f"crossbar {k}")
        for p in pieces:
            s = placement.layers.get(p.layer)
            _require(s is not None, f"crossbar {k}: unknown layer {p.layer!r}")
            _require(0 <= p.group < s.groups, f"crossbar {k}: {p.layer} group {p.group} out of range")
            _require(bool((p.rows >= 0).all() and (p.rows < s.rows).all()), f"crossbar {k}: {p.layer} row out of range")
            _require(bool((p.cols >= 0).all() and (p.cols < s.cols).all()), f"crossbar {k}: {p.layer} col out of range")
            flat = ((p.group * s.rows + p.rows)[:, None] * s.cols + p.cols[None, :]).ravel()
            np.add.at(reach[p.layer], flat, 1)
    for name, m in matrices.items():
        _require(name in reach, f"layer {name} is not in the placement")
        r = reach[name]
        _require(r.size == m.numel(), f"{name}: placement shape differs from the matrix {tuple(m.shape)}")
        _require(int(r.max(initial=0)) <= 1, f"{name}: a matrix entry is in two pieces")
        nonzero = (m.detach() != 0).cpu().numpy().ravel()
        _require(bool((r[nonzero] == 1).all()), f"{name}: a non-zero weight is in no piece")


# --------------------------------------------------------------------------- activations


@dataclass
class Activation:
    """One activation: a layer drives some rows of a crossbar and reads some of its columns.

    Attributes:
        layer: Layer name.
        crossbar: Crossbar index.
        pieces: Indices (into the crossbar's piece list) of the pieces it computes.
        inputs: ``(R,)`` int64: flat input ``group*M + row`` driving each crossbar row, -1 where not driven.
        outputs: ``(C,)`` int64: flat output ``group*N + col`` each column adds into, -1 where not read.
    """

    layer: str
    crossbar: int
    pieces: list[int]
    inputs: np.ndarray
    outputs: np.ndarray

    @property
    def driven_rows(self) -> int:
        """Rows driven (DAC inputs)."""
        return int((self.inputs >= 0).sum())

    @property
    def read_cols(self) -> int:
        """Columns read (ADC conversions per input bit)."""
        return int((self.outputs >= 0).sum())


def _lines(pieces: Sequence[Piece], members: Sequence[int], shape: LayerShape, xbar: Crossbar):
    """Input per row and output per column of a set of pieces, or ``None`` when they disagree."""
    inputs = np.full(xbar.rows, -1, dtype=np.int64)
    outputs = np.full(xbar.cols, -1, dtype=np.int64)
    for i in members:
        p = pieces[i]
        for line, span, want in (
            (inputs, slice(p.row_offset, p.row_offset + p.rows.size), p.group * shape.rows + p.rows),
            (outputs, slice(p.col_offset, p.col_offset + p.cols.size), p.group * shape.cols + p.cols),
        ):
            have = line[span]
            if ((have >= 0) & (have != want)).any():
                return None
            line[span] = want
    return inputs, outputs


def _valid(owner: np.ndarray, members: Sequence[int], lines) -> bool:
    """Every cell at a driven row and a read column is free or in a member piece."""
    if lines is None:
        return False
    inputs, outputs = lines
    cross = owner[np.ix_(inputs >= 0, outputs >= 0)]
    return bool(np.isin(cross, [-1, *members]).all())


def activations(placement: NetworkPlacement) -> list[Activation]:
    """Group every layer's pieces on every crossbar into activations (first fit).

    Pieces of one layer join the same activation when, together, every driven
    row carries one input, every read column one output, and no other piece
    (of any layer) sits at a driven row and a read column. Stacked pieces of one
    block always share an activation; blocks of one layer that share physical
    columns (feeding different outputs) never do.

    Returns:
        Activations, crossbar by crossbar, layers in order of appearance.
    """
    xbar = placement.xbar
    out: list[Activation] = []
    for k, pieces in enumerate(placement.crossbars):
        owner = _owner_grid(pieces, xbar, f"crossbar {k}")
        by_layer: dict[str, list[int]] = {}
        for i, p in enumerate(pieces):
            by_layer.setdefault(p.layer, []).append(i)
        for layer, members in by_layer.items():
            shape = placement.layers[layer]
            groups: list[list[int]] = []
            for i in members:
                for grp in groups:
                    if _valid(owner, [*grp, i], _lines(pieces, [*grp, i], shape, xbar)):
                        grp.append(i)
                        break
                else:
                    groups.append([i])
            for grp in groups:
                inputs, outputs = _lines(pieces, grp, shape, xbar)
                out.append(Activation(layer, k, grp, inputs, outputs))
    return out


def activation_summary(placement: NetworkPlacement) -> dict[str, dict[str, int]]:
    """Per layer, what one matrix-vector multiplication (one input vector) costs in activations.

    Returns:
        Layer name -> ``{"crossbars": crossbars holding it, "activations": activations
        per MVM, "serial": most activations of it on one crossbar (under layer-by-layer
        execution its crossbars run in parallel, these in series), "driven_rows",
        "read_cols": summed over its activations, "shared_crossbars": crossbars it
        shares with another layer}``.
    """
    acts = activations(placement)
    layers_on = crossbar_layers(placement)
    out = {
        name: {"crossbars": 0, "activations": 0, "serial": 0, "driven_rows": 0, "read_cols": 0, "shared_crossbars": 0}
        for name in placement.layers
    }
    per_xbar: dict[tuple[str, int], int] = {}
    for a in acts:
        s = out[a.layer]
        s["activations"] += 1
        s["driven_rows"] += a.driven_rows
        s["read_cols"] += a.read_cols
        per_xbar[(a.layer, a.crossbar)] = per_xbar.get((a.layer, a.crossbar), 0) + 1
    for (layer, k), n in per_xbar.items():
        s = out[layer]
        s["crossbars"] += 1
        s["serial"] = max(s["serial"], n)
        s["shared_crossbars"] += int(len(layers_on[k]) > 1)
    return out


def crossbar_layers(placement: NetworkPlacement) -> list[frozenset[str]]:
    """Per crossbar, the set of layers sharing it (one layer under per-layer mapping).

    Under a pipelined (ISAAC-style) execution model the layers of one set are
    serialised on that crossbar; under layer-by-layer execution sharing costs no time.
    """
    return [frozenset(p.layer for p in pieces) for pieces in placement.crossbars]


@dataclass
class CrossbarIndex:
    """Index tables of one crossbar.

    Attributes:
        rows: Per crossbar row, the ``(layer, flat input group*M + row)`` pairs that drive it
            (one per layer with a piece on that row; empty for an unused row).
        cols: Per crossbar column, the ``(layer, flat output group*N + col)`` pairs it feeds.
        input_bits: Index storage of the rows: ``ceil(log2(g*M))`` bits per (row, layer) entry,
            plus ``ceil(log2(layers on the crossbar))`` bits of layer tag per entry when shared.
        output_bits: Same for the columns, with ``ceil(log2(g*N))``.
    """

    rows: list[list[tuple[str, int]]]
    cols: list[list[tuple[str, int]]]
    input_bits: int
    output_bits: int


def index_tables(placement: NetworkPlacement) -> list[CrossbarIndex]:
    """Row and column index tables of every crossbar (see :class:`CrossbarIndex`)."""
    xbar = placement.xbar
    out = []
    for pieces in placement.crossbars:
        rows: list[set[tuple[str, int]]] = [set() for _ in range(xbar.rows)]
        cols: list[set[tuple[str, int]]] = [set() for _ in range(xbar.cols)]
        for p in pieces:
            s = placement.layers[p.layer]
            for r, i in zip(p.row_span, p.rows.tolist(), strict=True):
                rows[r].add((p.layer, p.group * s.rows + i))
            for c, j in zip(p.col_span, p.cols.tolist(), strict=True):
                cols[c].add((p.layer, p.group * s.cols + j))
        tag = index_bits(len({p.layer for p in pieces}))
        in_bits = sum(index_bits(placement.layers[name].groups * placement.layers[name].rows) + tag
                      for line in rows for name, _ in line)
        out_bits = sum(index_bits(placement.layers[name].groups * placement.layers[name].cols) + tag
                       for line in cols for name, _ in line)
        out.append(CrossbarIndex([sorted(x) for x in rows], [sorted(x) for x in cols], in_bits, out_bits))
    return out
