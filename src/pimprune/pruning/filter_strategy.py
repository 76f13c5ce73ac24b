"""The network-level ``filter`` projection: coupled channel groups pruned together.

Channels are removed through :class:`~pimprune.pruning.dependency.FilterGraph`, so
the consumers' rows go with the producers' columns. ``uniform`` keeps the same
fraction of every group's channels; ``global`` ranks all channels by their
importance over their group's mean. Either way the pruning level meeting the
target is found by bisection, and every group keeps at least one channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pimprune.errors import ConfigError
from pimprune.pruning.dependency import FilterGraph, module_parameters
from pimprune.pruning.ranking import Tensors, ranked_tensor
from pimprune.registry import Registry


class FilterStrategy:
    """Dependency-aware filter pruning for one :class:`~pimprune.pruning.projector.Projector`.

    Args:
        proj: The projector (its plan gives the layers, kept-dense layers and budget).
        model: The network (traced once for its channel groups).
        example_input: An input batch for tracing.
    """

    def __init__(self, proj, model: nn.Module, example_input: torch.Tensor) -> None:
        self.proj = proj
        self.graph = FilterGraph(model, example_input, protect=proj.kept_dense)
        untouched = module_parameters(model, proj.kept_dense)
        self.params = [p for p in self.graph.params if p not in untouched]
        if proj.target.allocation not in FILTER_ALLOCATIONS:
            raise ConfigError(
                f"allocation {proj.target.allocation!r} is not available for the filter pattern; "
                f"choose one of: {', '.join(FILTER_ALLOCATIONS.names())}"
            )
        self.search = FILTER_ALLOCATIONS.get(proj.target.allocation)
        self.lowest = self.total(self.graph.remove_by_ratio(self.graph.importance(), 0.0))
        self.retarget()

    def retarget(self) -> None:
        """Check that the projector's (new) target is reachable (every group keeps a channel)."""
        plan = self.proj.plan
        if self.lowest > plan.network_budget:
            raise ConfigError(
                f"filter pruning cannot reach {plan.target_compression:g}x on "
                f"{plan.crossbar} crossbars (every channel group keeps one channel); "
                f"the highest reachable compression is {plan.cost_total / self.lowest:.3f}"
            )

    def layer_counts(self, removed: Sequence[torch.Tensor]) -> dict[str, int]:
        """Crossbars of every prunable layer after ``removed``."""
        counts = self.graph.layer_counts(removed, self.proj.crossbar)
        return {lay.name: counts[lay.name] for lay in self.proj.layers}

    def total(self, removed: Sequence[torch.Tensor]) -> int | float:
        """Budget units (crossbars, or costs) of the network after ``removed``."""
        plan = self.proj.plan
        return plan.cost({n: plan.dense[n] for n in plan.kept_dense}) + plan.cost(self.layer_counts(removed))

    def __call__(self, weights: Tensors, scores: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """Masks of :attr:`params` and the crossbars of every prunable layer."""
        ranked = {name: ranked_tensor(weights, scores, name, self.graph.shapes[name]) for name in self.params}
        importance = self.graph.importance({**scores, **ranked})
        removed = self.search(self, importance)
        masks = self.graph.masks(removed)
        out = {p: masks[p].to(weights[p].device) for p in self.params}
        return out, self.layer_counts(removed)


def filter_uniform(strategy: FilterStrategy, importance: list[torch.Tensor]) -> list[torch.Tensor]:
    """Largest common keep ratio meeting the budget.

    The kept channel counts only change at ratios ``k/n`` (``n`` a group size), so
    the search is a bisection over those candidate ratios; the count of
    crossbars never decreases with the ratio.
    """
    graph, budget = strategy.graph, strategy.proj.network_budget
    sizes = sorted({imp.numel() for imp in importance})
    ratios = sorted({k / n for n in sizes for k in range(n + 1)})
    lo, hi = 0, len(ratios) - 1  # ratios[0] = 0 is feasible (checked at construction)
    if strategy.total(graph.remove_by_ratio(importance, ratios[hi])) <= budget:
        return graph.remove_by_ratio(importance, ratios[hi])
    while hi - lo > 1:  # invariant: ratios[lo] feasible, ratios[hi] not
        mid = (lo + hi) // 2
        if strategy.total(graph.remove_by_ratio(importance, ratios[mid])) <= budget:
            lo = mid
        else:
            hi = mid
    return graph.remove_by_ratio(importance, ratios[lo])


def filter_global(strategy: FilterStrategy, importance: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fewest channels, lowest normalised importance first, removed to meet the budget."""
    budget = strategy.proj.network_budget
    normalize = strategy.proj.target.normalize_layers
    scores, group_ids, channel_ids = [], [], []
    for gi, imp in enumerate(importance):
        mean = float(imp.mean()) if imp.numel() else 0.0
        if not normalize:
            norm = imp
        else:
            norm = imp / mean if mean > 0 else torch.zeros_like(imp)
        keep_best = torch.argmax(imp)
        others = torch.tensor(
            [c for c in range(imp.numel()) if c != int(keep_best)], dtype=torch.int64
        )
        scores.append(norm[others])
        group_ids.append(torch.full_like(others, gi))
        channel_ids.append(others)
    if not scores:
        return []
    score = torch.cat(scores)
    order = torch.argsort(score, stable=True)
    gid, cid = torch.cat(group_ids)[order], torch.cat(channel_ids)[order]

    def decision(k: int) -> list[torch.Tensor]:
        removed = [torch.zeros(imp.numel(), dtype=torch.bool) for imp in importance]
        for g, c in zip(gid[:k].tolist(), cid[:k].tolist(), strict=True):
            removed[g][c] = True
        return removed

    lo, hi = 0, int(score.numel())  # hi feasible (checked at construction)
    if strategy.total(decision(0)) <= budget:
        return decision(0)
    while hi - lo > 1:  # invariant: lo infeasible, hi feasible
        mid = (lo + hi) // 2
        if strategy.total(decision(mid)) <= budget:
            hi = mid
        else:
            lo = mid
    return decision(hi)


#: Allocation name -> search for the filter pattern.
FILTER_ALLOCATIONS: Registry = Registry("filter allocation")
FILTER_ALLOCATIONS.add("uniform", filter_uniform)
FILTER_ALLOCATIONS.add("global", filter_global)
