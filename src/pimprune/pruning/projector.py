"""From a network-wide compression target to per-parameter masks: :class:`Projector`.

The projector reads the model's layers once (:class:`~pimprune.pruning.plan.BudgetPlan`)
and then projects any weights it is given onto the target: the ADMM Z-step, the hard
prune and gradual pruning's mask updates all call it. Layer-wise patterns go through an
allocator (:mod:`pimprune.pruning.allocation`); network-level patterns (``filter``,
``subrow-channel``) and network packing have strategies of their own. A projector can be
re-targeted (:meth:`Projector.retarget`) without re-reading the model.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch
from torch import nn

from pimprune.errors import ConfigError
from pimprune.numeric import bool_array
from pimprune.pruning.allocation import LAYER_ALLOCATIONS
from pimprune.pruning.channel_blocks import ChannelSubrowStrategy
from pimprune.pruning.dependency import logical_parameters
from pimprune.pruning.filter_strategy import FilterStrategy
from pimprune.pruning.network_budget import NetworkPackedStrategy
from pimprune.pruning.packed_budget import PackedBudgetStrategy
from pimprune.pruning.patterns import Pattern, UnitsCache, get_pattern
from pimprune.pruning.plan import BudgetPlan
from pimprune.pruning.ranking import Tensors, ranked_tensor
from pimprune.pruning.target import PruneTarget
from pimprune.registry import Registry


class Strategy(Protocol):
    """How one projector computes masks (layer-wise patterns or a network-level one).

    Attributes:
        params: Parameter names the strategy masks.
    """

    params: list[str]

    def retarget(self) -> None:
        """The projector's plan changed."""

    def __call__(self, weights: Tensors, scores: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """Masks by parameter name and the crossbars of each prunable layer."""


class LayerStrategy:
    """Layer-wise projection (every pattern without a network-level strategy)."""

    def __init__(self, proj: Projector) -> None:
        self.proj = proj
        self.params = [f"{lay.name}.weight" for lay in proj.layers]
        self.allocator = LAYER_ALLOCATIONS.get(proj.target.allocation)(proj)

    def retarget(self) -> None:  # noqa: D102
        self.allocator.retarget()

    def matrices(self, weights: Tensors, scores: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """``(g, M, N)`` masks by layer name and the crossbars of each prunable layer."""
        pairs = list(zip(self.proj.layers, self.params, strict=True))
        mats = {lay.name: lay.matrix(ranked_tensor(weights, scores, pn, lay.weight_shape)) for lay, pn in pairs}
        return self.allocator.allocate(mats)

    def __call__(self, weights: Tensors, scores: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:  # noqa: D102
        layer_masks, budgets = self.matrices(weights, scores)
        pairs = zip(self.proj.layers, self.params, strict=True)
        return {pn: lay.to_weight(layer_masks[lay.name]) for lay, pn in pairs}, budgets


#: Pattern name -> strategy of a pattern projected network-wide (built from the projector,
#: the model and an example input). Other patterns are projected layer by layer.
NETWORK_STRATEGIES: Registry = Registry("network-level pattern")
NETWORK_STRATEGIES.add("filter", FilterStrategy)
NETWORK_STRATEGIES.add("subrow-channel", ChannelSubrowStrategy)


class Projector:
    """Projects a network's weights onto a :class:`PruneTarget` (ADMM Z-step and hard pruning).

    Args:
        model: The network; its weights are read at construction only for the
            ``global`` and ``filter`` allocations' first :attr:`budgets`.
        target: What to prune to.
        example_input: An input batch (tracing for ``filter``; e.g. ``torch.randn(1, 3, 32, 32)``).
        units_cache: A :class:`pimprune.pruning.patterns.UnitsCache` of the pattern, for
            callers that project the *same* weights many times (the design-space sweep):
            the ``global`` allocation then reuses the sorted items of every layer. Never
            for weights that change between calls (training).

    Attributes:
        target: The target (:meth:`retarget` replaces its compression).
        pattern: The pattern instance.
        crossbar: The geometry.
        plan: The :class:`BudgetPlan`; its attributes are also readable on the projector
            (``all_layers``, ``layers``, ``kept_dense``, ``dense_total``, ``network_budget``, ...).
        params: Parameter names the projector masks (exactly the keys of its result).
        budgets: Crossbars of each prunable layer: the fixed budgets (uniform, file) or
            those of the latest call (global, filter).

    Raises:
        ConfigError: when the target cannot be reached (kept-dense layers alone, or
            filter pruning at its limit, exceed it) or the budgets file is invalid.
    """

    def __init__(
        self, model: nn.Module, target: PruneTarget, example_input: torch.Tensor, units_cache: UnitsCache | None = None
    ) -> None:
        self.target = target
        self.units_cache = units_cache
        self.pattern: Pattern = get_pattern(target.pattern)
        self.crossbar = target.crossbar
        self.plan = BudgetPlan.build(model, target)
        network_level = NETWORK_STRATEGIES.get(self.pattern.name) if self.pattern.name in NETWORK_STRATEGIES else None
        self._strategy: Strategy = (
            NetworkPackedStrategy(self) if target.packing == "network" and self.pattern.name == "subrow"
            else PackedBudgetStrategy(self, model, example_input, Projector) if target.packing == "network"
            else LayerStrategy(self) if network_level is None
            else network_level(self, model, example_input)
        )  # fmt: skip
        self.params: list[str] = list(self._strategy.params)
        self._silenced: dict[str, int] | None = {}
        self._pending: dict[str, torch.Tensor] = {}
        if not self._fixed_budgets():
            self.project_model(model, matrices=True)  # the first budgets (masks in matrix form: no round trip)

    def __getattr__(self, name: str):
        # the plan's bookkeeping, readable on the projector (all_layers, dense_total, ...)
        if name in _PLAN_ATTRIBUTES:
            return getattr(self.__dict__["plan"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _fixed_budgets(self) -> bool:
        fixed = getattr(getattr(self._strategy, "allocator", None), "budgets", None)
        if fixed is not None:
            self.budgets: dict[str, int] = dict(fixed)
        return fixed is not None

    def retarget(self, target_compression: float) -> None:
        """Aim at another compression, keeping the layers, the pattern and any traced graph.

        Fixed budgets (uniform, file) are recomputed at once; those of ``global`` and
        ``filter`` at the next call.

        Raises:
            ConfigError: when the new target cannot be reached (the projector then
                keeps its previous target).
        """
        old_plan, old_target = self.plan, self.target
        self.plan = self.plan.retarget(target_compression)
        self.target = dataclasses.replace(self.target, target_compression=self.plan.target_compression)
        try:
            self._strategy.retarget()
        except ConfigError:
            self.plan, self.target = old_plan, old_target
            self._strategy.retarget()
            raise
        self._fixed_budgets()

    def __call__(self, weights: Tensors, scores: Tensors | None = None) -> dict[str, torch.Tensor]:
        """Boolean masks, by parameter name, for exactly :attr:`params`.

        Args:
            weights: Parameter name -> tensor of the parameter's shape (e.g. ``W+U``);
                must hold every name of :attr:`params` (``filter`` reads the coupled
                slices of kept-dense layers from the model when they are not given).
            scores: Parameter name -> importance of every weight, the parameter's shape:
                the masks keep the units of most score energy. A parameter without a
                score is ranked by its weight; None ranks every parameter by its weight.
        """
        masks, budgets = self._strategy(weights, scores or {})
        self.budgets = budgets
        self._silenced = self._count_silenced(masks)
        return masks

    def project_matrices(self, weights: Tensors, scores: Tensors | None = None) -> dict[str, torch.Tensor]:
        """:meth:`__call__` as ``(g, M, N)`` masks by layer name, for the masked mapped layers only.

        The same masks, in matrix form; layer-wise patterns skip the round trip through the
        weight shape (the design-space sweep projects hundreds of times). Its
        :meth:`silenced_outputs` are counted when asked for: the masks must not change until then.
        """
        matrices = getattr(self._strategy, "matrices", None)
        if matrices is None:
            by_param = {f"{lay.name}.weight": lay for lay in self.plan.all_layers}
            return {by_param[pn].name: by_param[pn].matrix(m) for pn, m in self(weights, scores).items()
                    if pn in by_param}
        masks, self.budgets = matrices(weights, scores or {})
        self._silenced = None
        self._pending = masks
        return masks

    def project_model(self, model: nn.Module, matrices: bool = False) -> dict[str, torch.Tensor]:
        """:meth:`__call__` on the tensors the model's forward pass uses (masked, if masked).

        With ``matrices=True``: :meth:`project_matrices` of the same tensors.
        """
        refs = logical_parameters(model)
        weights = {name: getattr(*refs[name]).detach() for name in self.params}
        return self.project_matrices(weights) if matrices else self(weights)

    @property
    def packed_layer_compression(self) -> float | None:
        """Under a shared-crossbar budget, the per-layer compression the last call projected at (else None)."""
        return getattr(self._strategy, "last_compression", None)

    def silenced_outputs(self) -> dict[str, int]:
        """Layers of the latest call whose budget left outputs (columns) without any weight.

        Returns:
            Layer name -> number of output channels with no kept weight (only
            layers with at least one; kept-dense layers never appear). For
            ``filter`` these are the removed channels themselves.
        """
        if self._silenced is None:  # masks of project_matrices
            self._silenced = self._count_silenced({f"{n}.weight": m for n, m in self._pending.items()}, False)
            self._pending = {}
        return dict(self._silenced)

    def _count_silenced(self, masks: Tensors, weight_shape: bool = True) -> dict[str, int]:
        out = {}
        for lay in self.plan.layers:
            mask = masks.get(f"{lay.name}.weight")
            if mask is None:
                continue
            matrix = lay.matrix(mask) if weight_shape else mask
            n = int((~bool_array(matrix).any(1)).sum()) if matrix.device.type == "cpu" else int((~matrix.any(1)).sum())
            if n:
                out[lay.name] = n
        return out

    def layer_crossbars(self, masks: Tensors) -> dict[str, int]:
        """Crossbars of every mapped layer under the target's rules for ``masks``.

        Kept-dense layers and layers without a mask count dense; the others
        count :meth:`pimprune.pruning.patterns.Pattern.cost` of their weight mask.
        """
        out = {}
        for lay in self.plan.all_layers:
            mask = masks.get(f"{lay.name}.weight")
            if lay.name in self.plan.kept_dense or mask is None:
                out[lay.name] = self.plan.dense[lay.name]
            else:
                out[lay.name] = self.pattern.cost(lay.matrix(mask), self.crossbar)
        return out

    def total_crossbars(self, masks: Tensors) -> int:
        """Sum of :meth:`layer_crossbars` (at most :attr:`network_budget` for our masks, without costs)."""
        return sum(self.layer_crossbars(masks).values())


#: :class:`BudgetPlan` attributes readable on a :class:`Projector`.
_PLAN_ATTRIBUTES = frozenset(
    {
        "all_layers",
        "layers",
        "kept_dense",
        "dense_total",
        "kept_total",
        "prunable_dense",
        "network_budget",
        "prunable_budget",
        "cost_total",
        "kept_cost",
    }
)
