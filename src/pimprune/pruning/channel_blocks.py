"""``subrow-channel``: PIM-Prune's sub-rows, where a whole column block may go as output channels.

Under per-layer mapping every column block that keeps anything costs a crossbar,
a floor of about 16x on ResNet18 at 32x32. Here a column block of a layer whose
output channels are coupled to nothing else may be dropped whole: its channels are
removed as in ``filter`` pruning, with the consumers' rows. The global ranking
guards one chunk of every output group except removable blocks (only the best one
of a layer); a removable block whose chunks all lose goes, and a second ranking
spends what the removal freed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.matrices import LayerMatrix
from pimprune.numeric import cdiv
from pimprune.pruning.dependency import FilterGraph, module_parameters
from pimprune.pruning.ranking import Ranking, Tensors, layer_scales, rank_units, ranked_tensor


@dataclass(frozen=True)
class ChannelBlock:
    """One removable column block: ``C`` output channels of one layer, coupled to nothing else.

    Attributes:
        layer: The producing layer.
        block: Column block index (chain id of the layer's sub-row units).
        group: Index of the dependency group in :attr:`FilterGraph.groups`.
        channels: ``(K,)`` group channels the block holds.
    """

    layer: str
    block: int
    group: int
    channels: torch.Tensor


def removable_blocks(graph: FilterGraph, layers: list[LayerMatrix], xbar: Crossbar) -> list[ChannelBlock]:
    """Column blocks of ``layers`` that can go as channels (single-producer groups, ungrouped layers)."""
    by_name = {lay.name: lay for lay in layers}
    blocks = []
    for gi, group in enumerate(graph.groups):
        if len(group.producers) != 1 or group.producers[0] not in by_name:
            continue
        lay = by_name[group.producers[0]]
        if lay.groups != 1:
            continue
        out = next((s for s in group.slices if s.param == f"{lay.name}.weight" and s.dim == 0), None)
        if out is None:
            continue
        to_group = dict(zip(out.index.tolist(), out.root.tolist(), strict=True))
        for b in range(cdiv(lay.cols, xbar.cols)):
            cols = range(b * xbar.cols, min(lay.cols, (b + 1) * xbar.cols))
            if all(c in to_group for c in cols):
                blocks.append(ChannelBlock(lay.name, b, gi, torch.tensor([to_group[c] for c in cols])))
    return blocks


class ChannelSubrowStrategy:
    """The ``subrow-channel`` projection of one :class:`pimprune.pruning.projector.Projector`.

    Args:
        proj: The projector (its plan gives the layers, kept-dense layers and budget).
        model: The network (traced once for its channel groups).
        example_input: An input batch for tracing.
    """

    def __init__(self, proj, model: nn.Module, example_input: torch.Tensor) -> None:
        if proj.target.allocation != "global":
            raise ConfigError(
                f"allocation {proj.target.allocation!r} is not available for the subrow-channel pattern "
                "(which column blocks go is a global choice); use --allocation global"
            )
        self.proj = proj
        self.graph = FilterGraph(model, example_input, protect=proj.kept_dense)
        self.blocks = removable_blocks(self.graph, list(proj.layers), proj.crossbar)
        untouched = module_parameters(model, proj.kept_dense)
        weights = [f"{lay.name}.weight" for lay in proj.layers]
        coupled = {s.param for b in self.blocks for s in self.graph.groups[b.group].slices}
        self.params = weights + [p for p in self.graph.params if p in coupled and p not in set(weights) | untouched]
        self.removed_blocks: list[ChannelBlock] = []

    def retarget(self) -> None:
        """The projector's plan changed (nothing is cached here)."""

    def __call__(self, weights: Tensors, scores: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """Masks of :attr:`params` and the crossbars of every prunable layer."""
        layers = {lay.name: lay for lay in self.proj.layers}
        mats = {
            n: lay.matrix(ranked_tensor(weights, scores, f"{n}.weight", lay.weight_shape)) for n, lay in layers.items()
        }
        _, empty = self._rank(mats, excluded=set())
        gone = {b for b in self.blocks if (b.layer, b.block) in empty}
        removed = self._decision(gone)
        channel_masks = self.graph.masks(removed)
        cleared = {n: m * layers[n].matrix(channel_masks.get(f"{n}.weight", _ones(layers[n]))).to(m.dtype)
                   for n, m in mats.items()}
        kept, _ = self._rank(cleared, excluded={(b.layer, b.block) for b in gone})
        self.removed_blocks = sorted(gone, key=lambda b: (b.layer, b.block))
        masks = {}
        for n, lay in layers.items():
            m = lay.to_weight(kept[n])
            masks[f"{n}.weight"] = m & channel_masks.get(f"{n}.weight", torch.ones_like(m)).to(m.device)
        for p in self.params[len(layers):]:
            masks[p] = channel_masks[p].to(weights[p].device) if p in weights else channel_masks[p]
        counts = self.proj.layer_crossbars(masks)
        return masks, {n: counts[n] for n in layers}

    def _decision(self, gone: set[ChannelBlock]) -> list[torch.Tensor]:
        removed = self.graph.nothing_removed()
        for b in gone:
            removed[b.group][b.channels] = True
        return removed

    def _rank(self, mats: Tensors, excluded: set[tuple[str, int]]) -> tuple[dict[str, torch.Tensor], set]:
        """Global sub-row ranking, every output group guarded but the removable ones.

        Returns the layer masks and the removable ``(layer, block)`` pairs that keep no chunk.
        """
        p, x, plan = self.proj.pattern, self.proj.crossbar, self.proj.plan
        units = {n: p.units(m, x) for n, m in mats.items()}
        removable = {(b.layer, b.block) for b in self.blocks}
        ranking = rank_units(
            units, layer_scales(mats, plan, self.proj.target.normalize_layers), keep_every_layer=True,
            unit_costs=plan.costs if plan.weighted else None, guarded=_guarded(units, removable, excluded),
        )  # fmt: skip
        _exclude(ranking, excluded)
        selected = ranking.select(plan.prunable_budget)
        empty, start = set(), 0
        for n, u in units.items():
            sel = selected[start : start + len(u)]
            empty |= {(n, b) for (lay, b) in removable if lay == n and not bool(sel[u.chain == b].any())}
            start += len(u)
        return ranking.split(selected)[0], empty


def _guarded(units, removable: set[tuple[str, int]], excluded: set[tuple[str, int]]) -> dict[str, torch.Tensor]:
    """Per layer, the first chunks that outrank everything.

    Every output group's first chunk, except where blocks may go: there only the best live one's,
    so a layer is never emptied.
    """
    out = {}
    for n, u in units.items():
        first = torch.nonzero(u.position == 0).flatten().tolist()
        keep = [i for i in first if (n, int(u.chain[i])) not in removable]
        free = [i for i in first if (n, int(u.chain[i])) in removable]
        if not keep and free:
            live = [i for i in free if (n, int(u.chain[i])) not in excluded] or free
            keep = [max(live, key=lambda i: float(u.gains[i]))]
        out[n] = torch.tensor(keep, dtype=torch.int64)
    return out


def _exclude(ranking: Ranking, excluded: set[tuple[str, int]]) -> None:
    """Chunks of ``excluded`` blocks get zero gain and a cost no budget fits: never taken."""
    start = 0
    for n, u in ranking.units.items():
        hit = torch.zeros(len(ranking.gains), dtype=torch.bool)
        for blk in {b for (lay, b) in excluded if lay == n}:
            hit[start : start + len(u)] |= u.chain == blk
        ranking.gains[hit] = 0.0
        ranking.costs[hit] = int(1e12) if not ranking.costs.is_floating_point() else 1e12
        start += len(u)


def _ones(lay: LayerMatrix) -> torch.Tensor:
    return torch.ones(lay.weight_shape, dtype=torch.bool)
