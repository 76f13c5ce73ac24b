"""Packing-aware sub-row budgets: prune to a number of *shared* crossbars (``packing="network"``).

Under network packing (:mod:`pimprune.mapping.network`) partly filled crossbars are
filled by other layers, so single sub-row segments (one matrix row within one
``C``-column block) are ranked across the network against the cells of the shared
crossbars: the kept-dense layers take their cells, every output group keeps its best
segment, the others go by score per cell; while the packed result needs more
crossbars than allowed, the cell budget shrinks and the selection is redone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.matrices import LayerMatrix
from pimprune.mapping.network import extract_blocks, pack_network
from pimprune.pruning.ranking import Tensors, ranked_tensor, take_tensor
from pimprune.pruning.target import resolve_keep_dense

__all__ = ["NetworkPackedStrategy", "network_subrow_masks"]

#: Rounds of shrinking the cell budget before giving up (each round at least ``R*C/8`` cells).
_MAX_ROUNDS = 64


@dataclass
class _Segments:
    """All sub-row segments of the prunable layers, flattened.

    Attributes:
        layer: ``(S,)`` index of the layer (in ``names`` order).
        flat: ``(S,)`` position ``(group * n_blocks + block) * M + row`` in its layer.
        cost: ``(S,)`` cells (width of the column block).
        score: ``(S,)`` score per cell.
        forced: ``(S,)`` whether the segment is the best of its output group.
    """

    layer: np.ndarray
    flat: np.ndarray
    cost: np.ndarray
    score: np.ndarray
    forced: np.ndarray


def _layer_segments(score: np.ndarray, xbar: Crossbar, normalize: bool) -> tuple[np.ndarray, ...]:
    """``(flat, cost, score per cell, forced)`` of one layer's ``(g, M, N)`` scores."""
    g, m, n = score.shape
    nb = -(-n // xbar.cols)
    starts = np.arange(0, n, xbar.cols)
    seg = np.add.reduceat(score, starts, axis=2) if n else np.zeros((g, m, 0))  # (g, M, nb)
    width = np.minimum(xbar.cols, n - starts).astype(np.int64)  # (nb,)
    per_cell = seg / width[None, None, :]
    if normalize:
        mean = float(score.sum()) / max(score.size, 1)
        per_cell = per_cell / mean if mean > 0 else np.zeros_like(per_cell)
    per_cell = per_cell.transpose(0, 2, 1)  # (g, nb, M)
    forced = np.zeros_like(per_cell, dtype=bool)
    if m:
        best = per_cell.argmax(2)
        np.put_along_axis(forced, best[..., None], True, axis=2)
    cost = np.broadcast_to(width[None, :, None], per_cell.shape)
    return np.arange(g * nb * m), cost.ravel().copy(), per_cell.ravel(), forced.ravel()


def _segments(scores: list[np.ndarray], xbar: Crossbar, normalize: bool) -> _Segments:
    parts = [_layer_segments(s, xbar, normalize) for s in scores]
    return _Segments(
        layer=np.concatenate([np.full(p[0].size, i, dtype=np.int64) for i, p in enumerate(parts)]),
        flat=np.concatenate([p[0] for p in parts]),
        cost=np.concatenate([p[1] for p in parts]),
        score=np.concatenate([p[2] for p in parts]),
        forced=np.concatenate([p[3] for p in parts]),
    )


def _select(seg: _Segments, cells: int) -> np.ndarray:
    """Forced segments, then the best per cell while the cumulative cost fits ``cells``."""
    keep = seg.forced.copy()
    left = cells - int(seg.cost[keep].sum())
    if left < 0:
        return keep
    rest = np.flatnonzero(~keep)
    order = rest[np.argsort(-seg.score[rest], kind="stable")]
    take = np.cumsum(seg.cost[order]) <= left
    keep[order[take]] = True
    return keep


def _masks(seg: _Segments, keep: np.ndarray, layers: Sequence[LayerMatrix], xbar: Crossbar) -> list[torch.Tensor]:
    """``(g, M, N)`` boolean masks of the prunable layers from the kept segments."""
    out = []
    for i, lay in enumerate(layers):
        g, m, n = lay.groups, lay.rows, lay.cols
        nb = -(-n // xbar.cols)
        kept = np.zeros(g * nb * m, dtype=bool)
        kept[seg.flat[(seg.layer == i) & keep]] = True
        per_block = kept.reshape(g, nb, m).transpose(0, 2, 1)  # (g, M, nb)
        out.append(torch.from_numpy(np.repeat(per_block, xbar.cols, axis=2)[:, :, :n].copy()))
    return out


def network_subrow_masks(
    weights: Mapping[str, torch.Tensor],
    scores: Mapping[str, torch.Tensor] | None,
    layers: Sequence[LayerMatrix],
    crossbar: Crossbar | str,
    total_crossbars: int,
    keep_dense: Sequence[str] = ("first", "last"),
    *,
    normalize_layers: bool = True,
) -> dict[str, torch.Tensor]:
    """Sub-row masks whose network packing fits ``total_crossbars`` shared crossbars.

    Args:
        weights: Parameter name (``"layer1.0.conv1.weight"``) -> weight, for every
            layer of ``layers`` (kept-dense ones too: their non-zeros are placed).
        scores: Parameter name -> non-negative score of each weight (same shapes), or
            ``None`` for squared weights.
        layers: Every mapped layer, in network order
            (:func:`pimprune.mapping.matrices.extract_layers`).
        crossbar: Crossbar geometry.
        total_crossbars: Shared crossbars allowed for the whole network.
        keep_dense: Layers left untouched: ``"first"``, ``"last"`` or names.
        normalize_layers: Divide each layer's scores by its mean score per weight.

    Returns:
        Boolean masks of the weight shape, by parameter name, for the layers not kept
        dense (as :class:`pimprune.pruning.projector.Projector` returns them). Network
        packing of the masked weights needs at most ``total_crossbars`` crossbars.

    Raises:
        ConfigError: if the kept-dense layers plus one segment per output group do not fit.
    """
    xbar = Crossbar.parse(crossbar)
    if isinstance(total_crossbars, bool) or int(total_crossbars) != total_crossbars or total_crossbars < 1:
        raise ConfigError(f"total crossbars must be a positive integer, got {total_crossbars!r}")
    kept = resolve_keep_dense(keep_dense, layers)
    prunable = [lay for lay in layers if lay.name not in kept]
    mats = {lay.name: lay.matrix(_weight(weights, lay)) for lay in layers}
    raw = [_score(scores, lay, mats[lay.name]) for lay in prunable]
    seg = _segments(raw, xbar, normalize_layers)
    forced_cells = int(seg.cost[seg.forced].sum())
    dense_cells = sum(b.height * b.width for n in kept for b in extract_blocks(n, mats[n], xbar, "subrow"))
    cells = int(total_crossbars) * xbar.cells - dense_cells
    for _ in range(_MAX_ROUNDS):
        if cells < forced_cells:
            break
        keep = _select(seg, cells)
        masks = _masks(seg, keep, prunable, xbar)
        packed = dict(mats)
        packed.update({lay.name: mats[lay.name] * mk for lay, mk in zip(prunable, masks, strict=True)})
        used = pack_network(packed, xbar, "subrow").n_crossbars
        if used <= total_crossbars:
            return {f"{lay.name}.weight": lay.to_weight(mk) for lay, mk in zip(prunable, masks, strict=True)}
        cells -= max(xbar.cells // 8, (used - total_crossbars) * xbar.cells // 2)
    raise ConfigError(
        f"{total_crossbars} shared {xbar} crossbars cannot hold the kept-dense layers "
        f"({', '.join(sorted(kept)) or 'none'}) and one sub-row per output group; allow more crossbars"
    )


def _score(scores: Mapping[str, torch.Tensor] | None, lay: LayerMatrix, matrix: torch.Tensor) -> np.ndarray:
    if scores is None:
        return (matrix.to(torch.float64) ** 2).numpy()
    return lay.matrix(_weight(scores, lay)).to(torch.float64).abs().numpy()


def _weight(tensors: Mapping[str, torch.Tensor], lay: LayerMatrix) -> torch.Tensor:
    return take_tensor(tensors, f"{lay.name}.weight", lay.weight_shape).cpu()


class NetworkPackedStrategy:
    """Sub-row segments ranked across the network against shared crossbars, for one projector.

    Args:
        proj: The :class:`~pimprune.pruning.projector.Projector` (its plan gives the
            layers, the kept-dense layers and the budget).
    """

    def __init__(self, proj) -> None:
        self.proj = proj
        self.params = [f"{lay.name}.weight" for lay in proj.layers]

    def retarget(self) -> None:
        """The projector's plan changed (nothing is cached here)."""

    def __call__(self, weights: Tensors, scores: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """Masks of :attr:`params` and the crossbars of every prunable layer."""
        plan = self.proj.plan
        full = {f"{lay.name}.weight": lay.module.weight.detach() for lay in plan.all_layers}
        full.update({p: weights[p] for p in self.params})
        ranked = {p: ranked_tensor(weights, scores, p, full[p].shape) for p in self.params}
        squared = {p: (r.detach().cpu().double() ** 2) for p, r in ranked.items()}
        for lay in plan.all_layers:  # kept-dense layers are placed, not ranked
            squared.setdefault(f"{lay.name}.weight", full[f"{lay.name}.weight"].detach().cpu().double() ** 2)
        masks = network_subrow_masks(
            full, squared, plan.all_layers, self.proj.crossbar, int(plan.network_budget),
            self.proj.target.keep_dense, normalize_layers=self.proj.target.normalize_layers,
        )  # fmt: skip
        masks = {p: masks[p].to(weights[p].device) for p in self.params}
        counts = self.proj.layer_crossbars(masks)
        return masks, {lay.name: counts[lay.name] for lay in self.proj.layers}
