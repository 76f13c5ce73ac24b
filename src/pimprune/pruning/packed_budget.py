"""Any pattern under a budget of *shared* crossbars (network packing), by bisection of its own projection.

Sub-rows have a segment-level strategy of their own (:mod:`pimprune.pruning.network_budget`). Every other
pattern keeps its projection (per-layer budgets from its allocation, or the filter / channel search) and
is re-targeted over its per-layer compression until the network packing of its masks, with the kept-dense
layers, fits the budget: the smallest per-layer compression that fits keeps the most weights. The packing
count is monotone in practice but not provably so; the search keeps the best fitting point it saw.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

from pimprune.errors import ConfigError
from pimprune.mapping.network import pack_network
from pimprune.pruning.ranking import Tensors

#: Bisection steps over log(per-layer compression); 2**-14 relative precision over a 1-1000x range.
BISECTION_STEPS = 14
#: Doublings of the per-layer compression tried when the network target itself does not fit.
MAX_DOUBLINGS = 8


class PackedBudgetStrategy:
    """The pattern's projection at the smallest per-layer compression whose network packing fits the budget.

    Args:
        proj: The outer :class:`~pimprune.pruning.projector.Projector` (``packing="network"``).
        model: The network (its kept-dense weights are placed as they are).
        example_input: One input batch, for patterns that trace the model.
        make_projector: Builds the inner per-layer projector (the Projector class; passed in to avoid a cycle).
    """

    def __init__(self, proj, model: nn.Module, example_input: torch.Tensor, make_projector: Callable) -> None:
        self.proj = proj
        inner = dataclasses.replace(proj.target, packing="layer")
        self.inner = make_projector(model, inner, example_input, proj.units_cache)
        self.params = list(self.inner.params)
        self.model_weights = {f"{lay.name}.weight": lay.module.weight for lay in proj.plan.all_layers}
        self.last_compression = float(proj.target.target_compression)

    def retarget(self) -> None:
        """The outer target changed: the next call searches again."""

    def _packed(self, t: float, weights: Tensors, scores: Tensors) -> tuple[int, dict[str, torch.Tensor]]:
        self.inner.retarget(t)
        masks = self.inner(weights, scores)
        mats = {}
        for lay in self.proj.plan.all_layers:
            name = f"{lay.name}.weight"
            kept = masks[name] if name in masks else self.model_weights[name].detach() != 0
            mats[lay.name] = lay.matrix(kept.detach().cpu().to(torch.float32))
        return pack_network(mats, self.proj.crossbar, self.proj.pattern.scheme).n_crossbars, masks

    def _upper(self, weights: Tensors, scores: Tensors, budget: int) -> tuple[float, dict[str, torch.Tensor]]:
        """A per-layer compression that fits, starting at the network target (per-layer counts bound packing)."""
        t = float(self.proj.target.target_compression)
        for _ in range(MAX_DOUBLINGS):
            try:
                used, masks = self._packed(t, weights, scores)
            except ConfigError:
                break
            if used <= budget:
                return t, masks
            t *= 2
        raise ConfigError(
            f"{self.proj.pattern.name} cannot fit {budget} shared {self.proj.crossbar} crossbars at any per-layer "
            "compression it can reach; allow more crossbars (a lower --target-compression)"
        )

    def __call__(self, weights: Tensors, scores: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """Masks of :attr:`params` and the per-layer crossbars of every prunable layer."""
        budget = int(self.proj.plan.network_budget)
        hi, best = self._upper(weights, scores, budget)
        lo = 1.0
        for _ in range(BISECTION_STEPS):
            if hi / lo < 1.001:
                break
            mid = math.sqrt(lo * hi)
            used, masks = self._packed(mid, weights, scores)
            if used <= budget:
                hi, best = mid, masks
            else:
                lo = mid
        self.inner.retarget(hi)  # leave the inner projector where the masks came from
        self.last_compression = hi
        counts = self.proj.layer_crossbars(best)
        return best, {lay.name: counts[lay.name] for lay in self.proj.layers}
