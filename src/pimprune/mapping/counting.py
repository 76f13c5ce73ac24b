"""Counting the crossbars a (pruned) weight matrix occupies under each compaction scheme.

Every function takes a layer's non-zero mask ``(g, M, N)`` and a :class:`Crossbar`. ``dense``
tiles the whole matrix; ``unstructured`` and ``crossbar`` skip empty tiles; ``row`` and ``filter``
drop empty rows (and columns); ``subrow`` and ``subcolumn`` keep the non-empty rows of each column
block (columns of each row block). The formulas and the packing bound: docs/design.md sections 4 and 5.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from pimprune.geometry import Crossbar
from pimprune.mapping.matrices import LayerMatrix
from pimprune.numeric import any_blocks, bool_array, cdiv, from_numpy, json_ratio

SCHEMES: tuple[str, ...] = (
    "dense",
    "unstructured",
    "crossbar",
    "row",
    "filter",
    "subrow",
    "subcolumn",
)


def dense_count(rows: int, cols: int, groups: int, xbar: Crossbar) -> int:
    """Crossbars of ``groups`` dense ``rows x cols`` matrices tiled on ``xbar``."""
    return groups * cdiv(rows, xbar.rows) * cdiv(cols, xbar.cols)


class _MaskReductions:
    """The reductions of one ``(g, M, N)`` mask that the counters need, each computed once.

    Block reductions are cached by block size, so counting one mask under every
    scheme, or on several geometries that share a side, reads the mask once per
    distinct side.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        self._tensor = mask
        self._mask: np.ndarray | None = None
        self.shape: tuple[int, ...] = tuple(int(s) for s in mask.shape)
        self._row_blocks: dict[int, np.ndarray] = {}
        self._col_blocks: dict[int, np.ndarray] = {}
        self._kept_rows: np.ndarray | None = None
        self._kept_cols: np.ndarray | None = None
        self._nnz: int | None = None

    @property
    def mask(self) -> np.ndarray:
        """The mask as a numpy boolean array (converted on first use)."""
        if self._mask is None:
            self._mask = bool_array(self._tensor)
        return self._mask

    def nnz(self) -> int:
        """Non-zeros of the mask."""
        if self._nnz is None:
            self._nnz = int(np.count_nonzero(self.mask))
        return self._nnz

    def kept_rows(self) -> np.ndarray:
        """``(g,)`` int64: rows holding a non-zero, per group."""
        if self._kept_rows is None:
            self._kept_rows = self.mask.any(2).sum(1, dtype=np.int64)
        return self._kept_rows

    def kept_cols(self) -> np.ndarray:
        """``(g,)`` int64: columns holding a non-zero, per group."""
        if self._kept_cols is None:
            self._kept_cols = self.mask.any(1).sum(1, dtype=np.int64)
        return self._kept_cols

    def row_blocks(self, rows: int) -> np.ndarray:
        """``(g, ceil(M/rows), N)`` bool: column ``n`` has a non-zero inside row block ``r``."""
        if rows not in self._row_blocks:
            self._row_blocks[rows] = any_blocks(self.mask, rows, 1)
        return self._row_blocks[rows]

    def col_blocks(self, cols: int) -> np.ndarray:
        """``(g, M, ceil(N/cols))`` bool: row ``m`` has a non-zero inside column block ``b``."""
        if cols not in self._col_blocks:
            self._col_blocks[cols] = any_blocks(self.mask, cols, 2)
        return self._col_blocks[cols]

    def tiles(self, xbar: Crossbar) -> np.ndarray:
        """``(g, ceil(M/R), ceil(N/C))`` bool: tiles holding a non-zero."""
        if xbar.cols in self._col_blocks or xbar.rows not in self._row_blocks:
            return any_blocks(self.col_blocks(xbar.cols), xbar.rows, 1)
        return any_blocks(self.row_blocks(xbar.rows), xbar.cols, 2)

    def subrow_counts(self, xbar: Crossbar) -> np.ndarray:
        """``(g, ceil(N/C))`` int64: kept sub-rows in each column block."""
        return self.col_blocks(xbar.cols).sum(1, dtype=np.int64)

    def subcolumn_counts(self, xbar: Crossbar) -> np.ndarray:
        """``(g, ceil(M/R))`` int64: kept sub-columns in each row block."""
        return self.row_blocks(xbar.rows).sum(2, dtype=np.int64)


def subrow_counts(mask: torch.Tensor, xbar: Crossbar) -> torch.Tensor:
    """``(g, ceil(N/C))``: kept sub-rows ``k_b`` in each column block."""
    return from_numpy(_MaskReductions(mask).subrow_counts(xbar)).to(mask.device)


def subcolumn_counts(mask: torch.Tensor, xbar: Crossbar) -> torch.Tensor:
    """``(g, ceil(M/R))``: kept sub-columns ``k_r`` in each row block."""
    return from_numpy(_MaskReductions(mask).subcolumn_counts(xbar)).to(mask.device)


def _count_dense(red: _MaskReductions, xbar: Crossbar) -> int:
    g, m, n = red.shape
    return dense_count(m, n, g, xbar)


def _count_tiles(red: _MaskReductions, xbar: Crossbar) -> int:
    return int(np.count_nonzero(red.tiles(xbar)))


def _count_row(red: _MaskReductions, xbar: Crossbar) -> int:
    return int((cdiv(red.kept_rows(), xbar.rows) * cdiv(red.shape[2], xbar.cols)).sum())


def _count_filter(red: _MaskReductions, xbar: Crossbar) -> int:
    return int((cdiv(red.kept_rows(), xbar.rows) * cdiv(red.kept_cols(), xbar.cols)).sum())


def _count_subrow(red: _MaskReductions, xbar: Crossbar) -> int:
    return int(cdiv(red.subrow_counts(xbar), xbar.rows).sum())


def _count_subcolumn(red: _MaskReductions, xbar: Crossbar) -> int:
    return int(cdiv(red.subcolumn_counts(xbar), xbar.cols).sum())


_COUNTERS: dict[str, Callable[[_MaskReductions, Crossbar], int]] = {
    "dense": _count_dense,
    "unstructured": _count_tiles,
    "crossbar": _count_tiles,
    "row": _count_row,
    "filter": _count_filter,
    "subrow": _count_subrow,
    "subcolumn": _count_subcolumn,
}


def _counter(scheme: str) -> Callable[[_MaskReductions, Crossbar], int]:
    try:
        return _COUNTERS[scheme]
    except KeyError:
        from pimprune.errors import UnknownNameError

        raise UnknownNameError(f"unknown counting scheme {scheme!r}; choose one of: {', '.join(SCHEMES)}") from None


def _check_mask(mask: torch.Tensor) -> None:
    if mask.dim() != 3:
        raise ValueError(f"mask must have shape (groups, rows, cols), got {tuple(mask.shape)}")


def count(mask: torch.Tensor, xbar: Crossbar, scheme: str) -> int:
    """Crossbars that a layer with non-zero ``mask`` ``(g, M, N)`` occupies under ``scheme``."""
    counter = _counter(scheme)
    _check_mask(mask)
    return counter(_MaskReductions(mask), xbar)


def packing_bound(mask: torch.Tensor, xbar: Crossbar) -> int:
    """``ceil(nnz / (R*C))``: the fewest crossbars that could hold the layer's non-zeros."""
    return int(cdiv(_MaskReductions(mask).nnz(), xbar.cells))


@dataclass
class LayerCount:
    """Crossbar counts of one layer on one geometry.

    Attributes:
        name: Qualified layer name.
        kind: ``"conv"`` or ``"linear"``.
        rows: Matrix rows ``M`` per group.
        cols: Matrix columns ``N`` per group.
        groups: Number of matrices.
        dense: Dense count of the unpruned layer.
        nnz: Non-zero weights.
        weights: All weights.
        bound: Packing bound ``ceil(nnz/(R*C))``.
        counts: Count under every scheme (see :data:`SCHEMES`).
    """

    name: str
    kind: str
    rows: int
    cols: int
    groups: int
    dense: int
    nnz: int
    weights: int
    bound: int
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready dictionary."""
        return {
            "name": self.name,
            "kind": self.kind,
            "rows": self.rows,
            "cols": self.cols,
            "groups": self.groups,
            "crossbars": self.dense,
            "nnz": self.nnz,
            "weights": self.weights,
            "packing_bound": self.bound,
            "compacted": dict(self.counts),
        }


def count_layer(
    layer: LayerMatrix,
    xbar: Crossbar,
    mask: torch.Tensor | None = None,
    schemes: Iterable[str] = SCHEMES,
) -> LayerCount:
    """Count one layer; ``mask`` defaults to the non-zeros of its current weight.

    With ``schemes=("dense",)`` nothing but the shape is looked at (fast path).
    """
    schemes = tuple(schemes)
    if schemes == ("dense",) and mask is None:
        dense = dense_count(layer.rows, layer.cols, layer.groups, xbar)
        n = layer.groups * layer.rows * layer.cols
        return LayerCount(
            layer.name,
            layer.kind,
            layer.rows,
            layer.cols,
            layer.groups,
            dense,
            nnz=n,
            weights=n,
            bound=int(cdiv(n, xbar.cells)),
            counts={"dense": dense},
        )
    if mask is None:
        mask = layer.matrix() != 0
    return _count_layer(layer, xbar, _MaskReductions(mask), schemes)


def _count_layer(layer: LayerMatrix, xbar: Crossbar, red: _MaskReductions, schemes: tuple[str, ...]) -> LayerCount:
    """:func:`count_layer` of a mask's (possibly shared) reductions."""
    counters = {s: _counter(s) for s in schemes}
    if counters:
        _check_mask(red._tensor)
    nnz = red.nnz()
    return LayerCount(
        name=layer.name,
        kind=layer.kind,
        rows=layer.rows,
        cols=layer.cols,
        groups=layer.groups,
        dense=dense_count(layer.rows, layer.cols, layer.groups, xbar),
        nnz=nnz,
        weights=red._tensor.numel(),
        bound=int(cdiv(nnz, xbar.cells)),
        counts={s: c(red, xbar) for s, c in counters.items()},
    )


@dataclass
class NetworkCount:
    """Counts of every mapped layer of a network on one geometry."""

    crossbar: Crossbar
    layers: list[LayerCount]

    def total(self, scheme: str = "dense", kind: str | None = None) -> int:
        """Sum of a scheme's counts (``"dense"``: of the unpruned network), optionally one kind."""
        return sum(
            (lc.dense if scheme == "dense" else lc.counts[scheme])
            for lc in self.layers
            if kind is None or lc.kind == kind
        )

    def bound(self, kind: str | None = None) -> int:
        """Sum of packing bounds."""
        return sum(lc.bound for lc in self.layers if kind is None or lc.kind == kind)

    def network_bound(self) -> int:
        """``ceil(kept cells of the network / (R*C))``: the crossbars no placement, shared or not, beats."""
        return cdiv(sum(lc.nnz for lc in self.layers), self.crossbar.cells)

    def compression(self, scheme: str, kind: str | None = None) -> float:
        """Dense count of the unpruned network / count under ``scheme`` (same layers)."""
        pruned = self.total(scheme, kind)
        dense = self.total("dense", kind)
        return dense / pruned if pruned else float("inf")

    def as_dict(self, schemes: Iterable[str] | None = None) -> dict:
        """JSON-ready summary: totals, compression over all and over conv layers."""
        schemes = list(schemes) if schemes is not None else (list(self.layers[0].counts) if self.layers else ["dense"])
        return {
            "crossbar": str(self.crossbar),
            "total_crossbars": self.total("dense"),
            "total_crossbars_conv": self.total("dense", "conv"),
            "nnz": sum(lc.nnz for lc in self.layers),
            "weights": sum(lc.weights for lc in self.layers),
            "packing_bound_per_layer": self.bound(),
            "packing_bound_network": self.network_bound(),
            "compacted": {s: self.total(s) for s in schemes},
            "compression": {s: json_ratio(self.compression(s)) for s in schemes},
            "compression_conv": {s: json_ratio(self.compression(s, "conv")) for s in schemes},
            "layers": [lc.as_dict() for lc in self.layers],
        }


def count_network(
    layers: list[LayerMatrix],
    xbar: Crossbar,
    masks: Mapping[str, torch.Tensor] | None = None,
    schemes: Iterable[str] = SCHEMES,
) -> NetworkCount:
    """Count every layer on one geometry.

    Args:
        layers: The mapped layers (:func:`pimprune.mapping.matrices.extract_layers`).
        xbar: Crossbar geometry.
        masks: Layer name -> ``(g, M, N)`` non-zero mask; default: the non-zeros of
            each layer's current weight.
        schemes: Schemes to count; ``("dense",)`` alone only reads shapes.
    """
    masks = masks or {}
    schemes = tuple(schemes)
    return NetworkCount(xbar, [count_layer(lay, xbar, masks.get(lay.name), schemes) for lay in layers])


def count_geometries(
    layers: list[LayerMatrix],
    geometries: Iterable[Crossbar],
    masks: Mapping[str, torch.Tensor] | None = None,
    schemes: Iterable[str] = SCHEMES,
) -> list[NetworkCount]:
    """:func:`count_network` for several geometries, reading each layer's mask once."""
    schemes = tuple(schemes)
    if masks is None and schemes != ("dense",):
        masks = {lay.name: lay.matrix() != 0 for lay in layers}
    masks = masks or {}
    # One set of reductions per layer, shared by every geometry and scheme.
    reductions = {lay.name: _MaskReductions(masks[lay.name]) for lay in layers if lay.name in masks}
    if schemes != ("dense",):  # layers without a mask: the non-zeros of their weight
        for lay in layers:
            if lay.name not in reductions:
                reductions[lay.name] = _MaskReductions(lay.matrix() != 0)

    def layer_count(lay: LayerMatrix, xbar: Crossbar) -> LayerCount:
        red = reductions.get(lay.name)
        return count_layer(lay, xbar, None, schemes) if red is None else _count_layer(lay, xbar, red, schemes)

    return [NetworkCount(x, [layer_count(lay, x) for lay in layers]) for x in geometries]
