"""Counting the crossbars a (pruned) weight matrix occupies.

DESIGN.md sections 4 and 5. Every function takes a layer's non-zero mask of
shape ``(g, M, N)`` (see :mod:`pimprune.matrices`) and a :class:`Crossbar`.
A *scheme* is the compaction a mapping applies after pruning:

========================  ===================================================
scheme                    crossbars for one ``M x N`` matrix
========================  ===================================================
``dense``                 ``ceil(M/R) * ceil(N/C)`` (no pruning considered)
``unstructured``          non-zero ``RxC`` tiles (empty tiles skipped)
``crossbar``              non-zero ``RxC`` tiles
``row``                   ``ceil(M'/R) * ceil(N/C)``, ``M'`` non-empty rows
``filter``                ``ceil(M'/R) * ceil(N'/C)``, empty rows and columns dropped
``subrow``                sum over column blocks of ``ceil(k_b/R)``
``subcolumn``             sum over row blocks of ``ceil(k_r/C)``
========================  ===================================================

``k_b`` is the number of rows with a non-zero inside column block ``b`` (the
kept sub-rows), ``k_r`` the number of columns with a non-zero inside row block
``r`` (the kept sub-columns). Any mask can be mapped under any scheme; a
pattern's projection makes its own scheme cheap. The *packing bound* is
``ceil(nnz / (R*C))`` per layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch

from pimprune.geometry import Crossbar
from pimprune.matrices import LayerMatrix

SCHEMES: tuple[str, ...] = (
    "dense",
    "unstructured",
    "crossbar",
    "row",
    "filter",
    "subrow",
    "subcolumn",
)


def _cdiv(a: torch.Tensor | int, b: int) -> torch.Tensor | int:
    return -(-a // b)


def dense_count(rows: int, cols: int, groups: int, xbar: Crossbar) -> int:
    """Crossbars of ``groups`` dense ``rows x cols`` matrices tiled on ``xbar``."""
    return groups * _cdiv(rows, xbar.rows) * _cdiv(cols, xbar.cols)


def _pad(mask: torch.Tensor, xbar: Crossbar) -> torch.Tensor:
    g, m, n = mask.shape
    pm, pn = (-m) % xbar.rows, (-n) % xbar.cols
    if pm or pn:
        mask = torch.nn.functional.pad(mask, (0, pn, 0, pm))
    return mask


def tile_occupancy(mask: torch.Tensor, xbar: Crossbar) -> torch.Tensor:
    """``(g, ceil(M/R), ceil(N/C))`` boolean: which dense tiles hold a non-zero."""
    p = _pad(mask.bool(), xbar)
    g, m, n = p.shape
    return p.reshape(g, m // xbar.rows, xbar.rows, n // xbar.cols, xbar.cols).any(4).any(2)


def subrow_counts(mask: torch.Tensor, xbar: Crossbar) -> torch.Tensor:
    """``(g, ceil(N/C))``: kept sub-rows ``k_b`` in each column block."""
    p = _pad(mask.bool(), xbar)
    g, m, n = p.shape
    return p.reshape(g, m, n // xbar.cols, xbar.cols).any(3).sum(1)


def subcolumn_counts(mask: torch.Tensor, xbar: Crossbar) -> torch.Tensor:
    """``(g, ceil(M/R))``: kept sub-columns ``k_r`` in each row block."""
    p = _pad(mask.bool(), xbar)
    g, m, n = p.shape
    return p.reshape(g, m // xbar.rows, xbar.rows, n).any(2).sum(2)


def _count_dense(mask: torch.Tensor, xbar: Crossbar) -> int:
    g, m, n = mask.shape
    return dense_count(m, n, g, xbar)


def _count_tiles(mask: torch.Tensor, xbar: Crossbar) -> int:
    return int(tile_occupancy(mask, xbar).sum())


def _count_row(mask: torch.Tensor, xbar: Crossbar) -> int:
    kept_rows = mask.bool().any(2).sum(1)
    return int((_cdiv(kept_rows, xbar.rows) * _cdiv(mask.shape[2], xbar.cols)).sum())


def _count_filter(mask: torch.Tensor, xbar: Crossbar) -> int:
    b = mask.bool()
    kept_rows = b.any(2).sum(1)
    kept_cols = b.any(1).sum(1)
    return int((_cdiv(kept_rows, xbar.rows) * _cdiv(kept_cols, xbar.cols)).sum())


def _count_subrow(mask: torch.Tensor, xbar: Crossbar) -> int:
    return int(_cdiv(subrow_counts(mask, xbar), xbar.rows).sum())


def _count_subcolumn(mask: torch.Tensor, xbar: Crossbar) -> int:
    return int(_cdiv(subcolumn_counts(mask, xbar), xbar.cols).sum())


_COUNTERS: dict[str, Callable[[torch.Tensor, Crossbar], int]] = {
    "dense": _count_dense,
    "unstructured": _count_tiles,
    "crossbar": _count_tiles,
    "row": _count_row,
    "filter": _count_filter,
    "subrow": _count_subrow,
    "subcolumn": _count_subcolumn,
}


def count(mask: torch.Tensor, xbar: Crossbar, scheme: str) -> int:
    """Crossbars that a layer with non-zero ``mask`` ``(g, M, N)`` occupies under ``scheme``."""
    try:
        counter = _COUNTERS[scheme]
    except KeyError:
        from pimprune.errors import UnknownNameError

        raise UnknownNameError(
            f"unknown counting scheme {scheme!r}; choose one of: {', '.join(SCHEMES)}"
        ) from None
    if mask.dim() != 3:
        raise ValueError(f"mask must have shape (groups, rows, cols), got {tuple(mask.shape)}")
    return counter(mask, xbar)


def count_all(mask: torch.Tensor, xbar: Crossbar) -> dict[str, int]:
    """Counts under every scheme of :data:`SCHEMES`."""
    return {s: count(mask, xbar, s) for s in SCHEMES}


def packing_bound(mask: torch.Tensor, xbar: Crossbar) -> int:
    """``ceil(nnz / (R*C))``: the fewest crossbars that could hold the layer's non-zeros."""
    return int(_cdiv(int(mask.bool().sum()), xbar.cells))


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
            layer.name, layer.kind, layer.rows, layer.cols, layer.groups, dense,
            nnz=n, weights=n, bound=int(_cdiv(n, xbar.cells)), counts={"dense": dense},
        )
    if mask is None:
        mask = layer.matrix() != 0
    mask = mask.bool()
    return LayerCount(
        name=layer.name,
        kind=layer.kind,
        rows=layer.rows,
        cols=layer.cols,
        groups=layer.groups,
        dense=dense_count(layer.rows, layer.cols, layer.groups, xbar),
        nnz=int(mask.sum()),
        weights=mask.numel(),
        bound=packing_bound(mask, xbar),
        counts={s: count(mask, xbar, s) for s in schemes},
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

    def compression(self, scheme: str, kind: str | None = None) -> float:
        """Dense count of the unpruned network / count under ``scheme`` (same layers)."""
        pruned = self.total(scheme, kind)
        dense = self.total("dense", kind)
        return dense / pruned if pruned else float("inf")

    def as_dict(self, schemes: Iterable[str] | None = None) -> dict:
        """JSON-ready summary: totals, compression over all and over conv layers."""
        schemes = list(schemes) if schemes is not None else (
            list(self.layers[0].counts) if self.layers else ["dense"]
        )
        return {
            "crossbar": str(self.crossbar),
            "total_crossbars": self.total("dense"),
            "total_crossbars_conv": self.total("dense", "conv"),
            "nnz": sum(lc.nnz for lc in self.layers),
            "weights": sum(lc.weights for lc in self.layers),
            "packing_bound": self.bound(),
            "compacted": {s: self.total(s) for s in schemes},
            "compression": {s: _json_ratio(self.compression(s)) for s in schemes},
            "compression_conv": {s: _json_ratio(self.compression(s, "conv")) for s in schemes},
            "layers": [lc.as_dict() for lc in self.layers],
        }


def _json_ratio(x: float) -> float | None:
    return None if x == float("inf") else round(x, 4)


def count_network(
    layers: list[LayerMatrix],
    xbar: Crossbar,
    masks: Mapping[str, torch.Tensor] | None = None,
    schemes: Iterable[str] = SCHEMES,
) -> NetworkCount:
    """Count every layer on one geometry.

    Args:
        layers: The mapped layers (:func:`pimprune.matrices.extract_layers`).
        xbar: Crossbar geometry.
        masks: Layer name -> ``(g, M, N)`` non-zero mask; default: the non-zeros of
            each layer's current weight.
        schemes: Schemes to count; ``("dense",)`` alone only reads shapes.
    """
    masks = masks or {}
    schemes = tuple(schemes)
    return NetworkCount(
        xbar, [count_layer(lay, xbar, masks.get(lay.name), schemes) for lay in layers]
    )


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
    return [count_network(layers, x, masks, schemes) for x in geometries]
