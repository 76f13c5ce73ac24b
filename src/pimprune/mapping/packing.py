"""Packing pruned weight matrices into crossbars, with index tables (docs/design.md sections 4 to 6).

:func:`pack` places a layer's ``(g, M, N)`` matrices on ``RxC`` crossbars under a scheme of
:data:`pimprune.mapping.counting.SCHEMES`: each crossbar holds the sub-matrix of one group at its
rows x its columns, with the matrix row driving each wordline and the column each bitline adds
into. :func:`check_physical` proves a packing exact; :func:`crossbar_stats` gives the used rows
and columns of every crossbar without building the cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pimprune.geometry import Crossbar
from pimprune.mapping.counting import SCHEMES, count
from pimprune.numeric import any_blocks, bool_array, cdiv, from_numpy, index_bits, sum_blocks
from pimprune.registry import Registry

__all__ = [
    "PackedMatrix",
    "PackingError",
    "check_physical",
    "crossbar_stats",
    "index_widths",
    "pack",
]


class PackingError(AssertionError):
    """A packing is not physically valid (a bug in a packer, never a user error)."""


#: Scheme -> which side of the crossbar carries an index (docs/design.md section 6).
_INDEXED_SIDE: dict[str, str] = {"subrow": "input", "subcolumn": "output"}


def index_widths(scheme: str, rows: int, cols: int) -> tuple[int, int]:
    """Index bits per used row and per used column of one crossbar under ``scheme``.

    Args:
        scheme: Packing scheme (one of :data:`pimprune.mapping.counting.SCHEMES`).
        rows: Matrix rows ``M`` of the layer (per group).
        cols: Matrix columns ``N`` of the layer (per group).

    Returns:
        ``(input_bits_per_used_row, output_bits_per_used_col)``: ``ceil(log2(M))``
        for ``subrow`` inputs, ``ceil(log2(N))`` for ``subcolumn`` outputs, 0 else.
    """
    side = _INDEXED_SIDE.get(scheme)
    return (index_bits(rows) if side == "input" else 0, index_bits(cols) if side == "output" else 0)


@dataclass
class PackedMatrix:
    """A layer's matrices placed on crossbars.

    ``K`` is the number of crossbars, ``R x C`` the geometry.

    Attributes:
        xbar: Crossbar geometry.
        scheme: Packing scheme (one of :data:`pimprune.mapping.counting.SCHEMES`).
        groups: Number of matrices ``g`` of the layer.
        rows: Rows ``M`` of each matrix.
        cols: Columns ``N`` of each matrix.
        cells: ``(K, R, C)`` float, the weight stored in each cell.
        group: ``(K,)`` long, the group (matrix) each crossbar belongs to.
        row_index: ``(K, R)`` long, the matrix row driving each wordline (0 where invalid).
        row_valid: ``(K, R)`` bool, whether a wordline is connected to an input.
        col_index: ``(K, C)`` long, the matrix column each bitline adds into (0 where invalid).
        col_valid: ``(K, C)`` bool, whether a bitline is read.
    """

    xbar: Crossbar
    scheme: str
    groups: int
    rows: int
    cols: int
    cells: torch.Tensor
    group: torch.Tensor
    row_index: torch.Tensor
    row_valid: torch.Tensor
    col_index: torch.Tensor
    col_valid: torch.Tensor

    @property
    def n_crossbars(self) -> int:
        """Number of crossbars ``K``."""
        return int(self.cells.shape[0])

    def used_rows(self) -> torch.Tensor:
        """``(K,)`` long: wordlines of each crossbar holding at least one non-zero cell."""
        return (self.cells != 0).any(2).sum(1)

    def used_cols(self) -> torch.Tensor:
        """``(K,)`` long: bitlines of each crossbar holding at least one non-zero cell."""
        return (self.cells != 0).any(1).sum(1)

    def index_bits(self) -> dict[str, int]:
        """Index storage of the compaction (docs/design.md section 6).

        Returns:
            ``{"input": bits, "output": bits}``: ``ceil(log2(M))`` bits per used row
            under ``subrow``, ``ceil(log2(N))`` bits per used column under
            ``subcolumn``; 0 for the schemes that need no index.
        """
        per_row, per_col = index_widths(self.scheme, self.rows, self.cols)
        return {
            "input": per_row * int(self.used_rows().sum()),
            "output": per_col * int(self.used_cols().sum()),
        }

    @property
    def _entries(self) -> int:
        """Entries of the layer's matrices, ``g * M * N``."""
        return self.groups * self.rows * self.cols

    def _cell_targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Where every cell lands.

        Returns:
            ``(valid, target)``, each ``(K, R, C)``: whether a cell is connected, and
            the flat matrix entry ``(group * M + row) * N + col`` it lands on
            (``g*M*N`` when it is not connected).
        """
        valid = self.row_valid[:, :, None] & self.col_valid[:, None, :]
        # int32 halves the memory traffic of these (K, R, C) tables where it can hold them.
        dtype = torch.int32 if self._entries < 2**31 - 1 else torch.long
        row_base = (self.group[:, None] * self.rows + self.row_index) * self.cols
        target = row_base.to(dtype)[:, :, None] + self.col_index.to(dtype)[:, None, :]
        return valid, target.masked_fill_(~valid, self._entries)

    def unpack(self) -> torch.Tensor:
        """``(g, M, N)``: the matrix the crossbars compute (cells summed where they land)."""
        _, target = self._cell_targets()
        out = self.cells.new_zeros(self._entries + 1)
        out.index_add_(0, target.flatten(), self.cells.flatten())
        return out[: self._entries].view(self.groups, self.rows, self.cols)

    def to(self, device: torch.device | str) -> PackedMatrix:
        """A copy with every tensor on ``device``."""
        return PackedMatrix(
            self.xbar,
            self.scheme,
            self.groups,
            self.rows,
            self.cols,
            self.cells.to(device),
            self.group.to(device),
            self.row_index.to(device),
            self.row_valid.to(device),
            self.col_index.to(device),
            self.col_valid.to(device),
        )


# --------------------------------------------------------------------------- layouts

#: ``(index (n, size) long, valid (n, size) bool)``: ``n`` groups of physical lines.
_Lines = tuple[torch.Tensor, torch.Tensor]
#: ``(row_index, row_valid, col_index, col_valid)`` of some crossbars.
_Layout = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _chunks(indices: torch.Tensor, size: int) -> _Lines:
    """Split matrix line ``indices`` ``(k,)`` into ``ceil(k/size)`` groups of ``size`` lines."""
    k = int(indices.numel())
    n = cdiv(k, size)
    idx = torch.zeros(n * size, dtype=torch.long, device=indices.device)
    valid = torch.zeros(n * size, dtype=torch.bool, device=indices.device)
    idx[:k] = indices
    valid[:k] = True
    return idx.view(n, size), valid.view(n, size)


def _product(rows: _Lines, cols: _Lines) -> _Layout:
    """Every (row lines, column lines) pair as a crossbar, row lines outer."""
    (ri, rv), (ci, cv) = rows, cols
    a, r = ri.shape
    b, c = ci.shape
    return (
        ri[:, None].expand(a, b, r).reshape(a * b, r),
        rv[:, None].expand(a, b, r).reshape(a * b, r),
        ci[None].expand(a, b, c).reshape(a * b, c),
        cv[None].expand(a, b, c).reshape(a * b, c),
    )


def _cat(layouts: list[_Layout], xbar: Crossbar, device: torch.device) -> _Layout:
    if not layouts:
        return (
            torch.zeros(0, xbar.rows, dtype=torch.long, device=device),
            torch.zeros(0, xbar.rows, dtype=torch.bool, device=device),
            torch.zeros(0, xbar.cols, dtype=torch.long, device=device),
            torch.zeros(0, xbar.cols, dtype=torch.bool, device=device),
        )
    return tuple(torch.cat(parts) for parts in zip(*layouts, strict=True))  # type: ignore[return-value]


def _kept(flags: torch.Tensor) -> torch.Tensor:
    """Positions of the true entries of a 1-D boolean tensor, ascending."""
    return torch.nonzero(flags).flatten()


def _all(n: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n, device=device)


def _layout_dense(m: torch.Tensor, xbar: Crossbar) -> _Layout:
    rows, cols = m.shape
    return _product(_chunks(_all(rows, m.device), xbar.rows), _chunks(_all(cols, m.device), xbar.cols))


def _layout_tiles(m: torch.Tensor, xbar: Crossbar) -> _Layout:
    ri, rv, ci, cv = _layout_dense(m, xbar)
    held = m[ri[:, :, None], ci[:, None, :]] & rv[:, :, None] & cv[:, None, :]
    keep = held.flatten(1).any(1)
    return ri[keep], rv[keep], ci[keep], cv[keep]


def _layout_row(m: torch.Tensor, xbar: Crossbar) -> _Layout:
    return _product(_chunks(_kept(m.any(1)), xbar.rows), _chunks(_all(m.shape[1], m.device), xbar.cols))


def _layout_filter(m: torch.Tensor, xbar: Crossbar) -> _Layout:
    return _product(_chunks(_kept(m.any(1)), xbar.rows), _chunks(_kept(m.any(0)), xbar.cols))


def _layout_subrow(m: torch.Tensor, xbar: Crossbar) -> _Layout:
    blocks = _all(m.shape[1], m.device).split(xbar.cols)
    return _cat(
        [_product(_chunks(_kept(m[:, cols].any(1)), xbar.rows), _chunks(cols, xbar.cols)) for cols in blocks],
        xbar,
        m.device,
    )


def _layout_subcolumn(m: torch.Tensor, xbar: Crossbar) -> _Layout:
    blocks = _all(m.shape[0], m.device).split(xbar.rows)
    return _cat(
        [_product(_chunks(rows, xbar.rows), _chunks(_kept(m[rows].any(0)), xbar.cols)) for rows in blocks],
        xbar,
        m.device,
    )


#: Packing scheme -> its layout (filled in with the crossbar stats below, from one table).
_LAYOUTS: Registry[Callable[[torch.Tensor, Crossbar], _Layout]] = Registry("packing scheme")


def _check_matrix(matrix: torch.Tensor, what: str) -> None:
    if matrix.dim() != 3:
        raise ValueError(f"{what} must have shape (groups, rows, cols), got {tuple(matrix.shape)}")


def pack(matrix: torch.Tensor, xbar: Crossbar, scheme: str) -> PackedMatrix:
    """Place a layer's (pruned) matrices on crossbars under ``scheme``.

    The non-zero mask is ``matrix != 0``; the number of crossbars equals
    ``counting.count(matrix != 0, xbar, scheme)``.

    Args:
        matrix: ``(g, M, N)`` weight matrices (zeros are pruned weights).
        xbar: Crossbar geometry.
        scheme: One of :data:`pimprune.mapping.counting.SCHEMES`.

    Returns:
        The packing, with cells and index tables.

    Raises:
        UnknownNameError: if ``scheme`` is not a packing scheme.
    """
    layout = _LAYOUTS.get(scheme)
    _check_matrix(matrix, "matrix")
    matrix = matrix.detach()
    mask = matrix != 0
    device = matrix.device
    parts: list[_Layout] = []
    groups: list[torch.Tensor] = []
    for g in range(matrix.shape[0]):
        part = layout(mask[g], xbar)
        parts.append(part)
        groups.append(torch.full((part[0].shape[0],), g, dtype=torch.long, device=device))
    ri, rv, ci, cv = _cat(parts, xbar, device)
    grp = torch.cat(groups) if groups else torch.zeros(0, dtype=torch.long, device=device)
    valid = rv[:, :, None] & cv[:, None, :]
    gathered = matrix[grp[:, None, None], ri[:, :, None], ci[:, None, :]]
    cells = torch.where(valid, gathered, torch.zeros((), dtype=matrix.dtype, device=device))
    g, m, n = matrix.shape
    return PackedMatrix(xbar, scheme, g, m, n, cells, grp, ri, rv, ci, cv)


# --------------------------------------------------------------------------- validity


def _require(condition: bool | torch.Tensor, message: str) -> None:
    if not bool(condition):
        raise PackingError(message)


def check_physical(packed: PackedMatrix, matrix: torch.Tensor | None = None) -> None:
    """Prove that a packing is physically realisable (and, given ``matrix``, exact).

    Checks: consistent shapes; indices in range and 0 where invalid; every
    crossbar has a valid wordline and a valid bitline; cells on invalid lines
    are 0; no (group, row, column) of the matrix is reachable through two cells
    (a crossbar sums over all its wordlines, so a pair reached twice would be
    counted twice). With ``matrix``: same shape, crossbar count equal to
    :func:`pimprune.mapping.counting.count`, every reachable cell equal to the matrix
    entry, and every non-zero of the matrix reachable (so it sits in exactly
    one cell).

    Raises:
        PackingError: naming the first violated property.
    """
    p = packed
    k, r, c = p.cells.shape
    _require((r, c) == (p.xbar.rows, p.xbar.cols), f"cells {(r, c)} do not match {p.xbar}")
    for name, t, shape, dtype in (
        ("group", p.group, (k,), torch.long),
        ("row_index", p.row_index, (k, r), torch.long),
        ("row_valid", p.row_valid, (k, r), torch.bool),
        ("col_index", p.col_index, (k, c), torch.long),
        ("col_valid", p.col_valid, (k, c), torch.bool),
    ):
        _require(tuple(t.shape) == shape, f"{name} has shape {tuple(t.shape)}, expected {shape}")
        _require(t.dtype == dtype, f"{name} has dtype {t.dtype}, expected {dtype}")
    if k:
        _require(((p.group >= 0) & (p.group < p.groups)).all(), "group index out of range")
        _require(((p.row_index >= 0) & (p.row_index < p.rows)).all(), "row index out of range")
        _require(((p.col_index >= 0) & (p.col_index < p.cols)).all(), "column index out of range")
    _require((p.row_index[~p.row_valid] == 0).all(), "invalid wordline with a non-zero index")
    _require((p.col_index[~p.col_valid] == 0).all(), "invalid bitline with a non-zero index")
    _require(p.row_valid.any(1).all(), "a crossbar has no valid wordline")
    _require(p.col_valid.any(1).all(), "a crossbar has no valid bitline")
    valid, target = p._cell_targets()
    _require(not p.cells.masked_fill(valid, 0).any(), "a cell on an invalid line is not 0")
    reach = torch.bincount(target.flatten(), minlength=p._entries + 1)[: p._entries]
    _require(not (reach > 1).any(), "a matrix (row, column) is reachable twice")
    if matrix is None:
        return
    _require(
        tuple(matrix.shape) == (p.groups, p.rows, p.cols),
        f"matrix shape {tuple(matrix.shape)} differs from the packing's {(p.groups, p.rows, p.cols)}",
    )
    matrix = matrix.detach()
    expected = count(matrix != 0, p.xbar, p.scheme)
    _require(k == expected, f"{k} crossbars, but counting.count says {expected} for {p.scheme}")
    # No entry is reached twice, so the crossbars compute the matrix exactly when every
    # reached entry holds its cell and every unreached entry is 0.
    if torch.equal(p.unpack(), matrix):
        return
    unreached = (reach == 0).view(matrix.shape)
    _require(not (unreached & (matrix != 0)).any(), "a non-zero of the matrix is in no crossbar")
    _require(False, "a cell differs from the matrix entry it stands for")


# --------------------------------------------------------------------------- fast stats

#: ``(used_rows (K,), used_cols (K,))``, int64.
_Stats = tuple[np.ndarray, np.ndarray]

# The statistics run in numpy on the boolean mask: torch's boolean ``any`` over a
# non-innermost dimension is one to two orders of magnitude slower on CPU. Compaction
# never moves data: the kept lines of a chain, cut into chunks, are contiguous runs of
# the chain's lines (with empty lines in between), so ``reduceat`` over the chunk
# starts reduces every chunk at once.


def _chunk_stats(
    items: np.ndarray, chunk: int, width: int, kept: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compaction of chains of lines, reduced per chunk.

    ``items`` is ``(n_chains, L, W)`` bool: each chain holds ``L`` lines of ``W``
    positions. Per chain, the non-empty lines keep their order and are cut into
    chunks of ``chunk`` (the last one may be short). ``W`` is cut into blocks of
    ``width`` positions.

    Args:
        items: ``(n_chains, L, W)`` bool.
        chunk: Lines per chunk.
        width: Positions per block.
        kept: ``(n_chains, L)`` bool, ``items.any(2)`` if already known.

    Returns:
        ``(lines, positions, chain)``: ``(K, WB)`` int64 non-empty lines of each chunk
        inside each position block, ``(K, WB)`` int64 positions of each block holding
        a non-zero among the chunk's lines, and ``(K,)`` the chain of each chunk;
        chunks come chain by chain, in order.
    """
    n_chains, length, w = items.shape
    flat = items.reshape(n_chains * length, w)
    kept = flat.any(1) if kept is None else kept.reshape(-1)
    rank = np.cumsum(kept.reshape(n_chains, length), axis=1).reshape(-1)  # 1-based where kept
    starts = np.flatnonzero(kept & ((rank - 1) % chunk == 0))
    blocks = cdiv(w, width)
    if starts.size == 0:
        empty = np.zeros((0, blocks), dtype=np.int64)
        return empty, empty.copy(), np.zeros(0, dtype=np.int64)
    # Lines between the last chunk of a chain and the first of the next are empty.
    line_any = kept[:, None] if blocks == 1 else any_blocks(flat, width, 1)
    lines = np.add.reduceat(line_any, starts, axis=0, dtype=np.int64)
    positions = sum_blocks(np.logical_or.reduceat(flat, starts, axis=0), width, 1)
    return lines, positions, starts // length


def _tile_stats(mask: np.ndarray, xbar: Crossbar) -> tuple[np.ndarray, np.ndarray]:
    """``(g, MB, NB)`` used rows and used columns of every dense tile."""
    rows = sum_blocks(any_blocks(mask, xbar.cols, 2), xbar.rows, 1)
    cols = sum_blocks(any_blocks(mask, xbar.rows, 1), xbar.cols, 2)
    return rows, cols


def _stats_dense(mask: np.ndarray, xbar: Crossbar) -> _Stats:
    rows, cols = _tile_stats(mask, xbar)
    return rows.reshape(-1), cols.reshape(-1)


def _stats_tiles(mask: np.ndarray, xbar: Crossbar) -> _Stats:
    rows, cols = _tile_stats(mask, xbar)
    keep = rows > 0
    return rows[keep], cols[keep]


def _stats_row(mask: np.ndarray, xbar: Crossbar) -> _Stats:
    rows, cols, _ = _chunk_stats(mask, xbar.rows, xbar.cols)  # (K, NB): row chunk outer
    return rows.reshape(-1), cols.reshape(-1)


def _stats_filter(mask: np.ndarray, xbar: Crossbar) -> _Stats:
    kept_cols = mask.any(1)  # (g, N)
    order = np.argsort(~kept_cols, axis=1, kind="stable")  # kept columns first, in order
    compact = np.take_along_axis(mask, order[:, None, :], axis=2)
    rows, cols, chain = _chunk_stats(compact, xbar.rows, xbar.cols)
    col_blocks = cdiv(kept_cols.sum(1), xbar.cols)  # (g,)
    keep = np.arange(rows.shape[1])[None, :] < col_blocks[chain][:, None]
    return rows[keep], cols[keep]


def _block_lines(mask: np.ndarray, size: int) -> np.ndarray:
    """``(g, NB, M, size)``: the rows of ``mask`` cut into column blocks of ``size``, block outer."""
    g, m, n = mask.shape
    blocks = cdiv(n, size)
    if n == blocks * size:
        return mask.reshape(g, m, blocks, size).transpose(0, 2, 1, 3)
    out = np.zeros((g, blocks, m, size), dtype=bool)
    full = n - n % size
    out[:, : blocks - 1] = mask[:, :, :full].reshape(g, m, blocks - 1, size).transpose(0, 2, 1, 3)
    out[:, blocks - 1, :, : n - full] = mask[:, :, full:]
    return out


def _stats_subrow(mask: np.ndarray, xbar: Crossbar) -> _Stats:
    lines = _block_lines(mask, xbar.cols)  # (g, NB, M, C): chains = (group, column block)
    g, nb, m, c = lines.shape
    kept = any_blocks(mask, xbar.cols, 2).transpose(0, 2, 1)  # (g, NB, M), cheaper from the mask
    rows, cols, _ = _chunk_stats(lines.reshape(g * nb, m, c), xbar.rows, c, kept)
    return rows.reshape(-1), cols.reshape(-1)


def _stats_subcolumn(mask: np.ndarray, xbar: Crossbar) -> _Stats:
    lines = _block_lines(mask.transpose(0, 2, 1), xbar.rows)  # (g, MB, N, R): (group, row block)
    g, mb, n, r = lines.shape
    kept = any_blocks(mask, xbar.rows, 1)  # (g, MB, N)
    cols, rows, _ = _chunk_stats(lines.reshape(g * mb, n, r), xbar.cols, r, kept)
    return rows.reshape(-1), cols.reshape(-1)


_STATS: Registry[Callable[[np.ndarray, Crossbar], _Stats]] = Registry("packing scheme")

#: Scheme -> (layout, crossbar stats without the layout); every counting scheme has both.
_SCHEME_FUNCTIONS: dict[str, tuple[Callable, Callable]] = {
    "dense": (_layout_dense, _stats_dense),
    "unstructured": (_layout_tiles, _stats_tiles),
    "crossbar": (_layout_tiles, _stats_tiles),
    "row": (_layout_row, _stats_row),
    "filter": (_layout_filter, _stats_filter),
    "subrow": (_layout_subrow, _stats_subrow),
    "subcolumn": (_layout_subcolumn, _stats_subcolumn),
}
for _scheme, (_layout, _stats) in _SCHEME_FUNCTIONS.items():
    _LAYOUTS.add(_scheme, _layout)
    _STATS.add(_scheme, _stats)
assert set(_SCHEME_FUNCTIONS) == set(SCHEMES), "every counting scheme needs a packer and crossbar stats"


def crossbar_stats(mask: torch.Tensor, xbar: Crossbar, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Used rows and used columns of every crossbar of a packing, without building it.

    Vectorised over the whole layer; the crossbars come in the order of
    :func:`pack`, so the result equals ``pack(m, xbar, scheme).used_rows()`` and
    ``.used_cols()`` for any matrix ``m`` with ``m != 0`` equal to ``mask``.

    Args:
        mask: ``(g, M, N)`` non-zero mask of the layer (any dtype; non-zero = kept).
        xbar: Crossbar geometry.
        scheme: One of :data:`pimprune.mapping.counting.SCHEMES`.

    Returns:
        ``(used_rows, used_cols)``, each ``(K,)`` long with ``K`` the crossbar count:
        wordlines and bitlines of each crossbar that hold at least one non-zero.

    Raises:
        UnknownNameError: if ``scheme`` is not a packing scheme.
    """
    stats = _STATS.get(scheme)
    _check_matrix(mask, "mask")
    rows, cols = stats(bool_array(mask), xbar)
    rows, cols = rows.astype(np.int64, copy=False), cols.astype(np.int64, copy=False)
    return from_numpy(rows).to(mask.device), from_numpy(cols).to(mask.device)
