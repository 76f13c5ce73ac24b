"""Units of several layers ranked together: the ranking behind the ``global`` allocation.

:func:`rank_units` pools the :class:`~pimprune.pruning.units.Units` of the
prunable layers, scales each layer's gains (:func:`layer_scales`: per-layer
normalisation, so layers of different weight scale compare fairly) and boosts the
units that must stay (``keep_every_layer``); :class:`Ranking` then takes units
greedily within a budget. :func:`ranked_tensor` is what every strategy ranks for a
parameter: its score if given, else its weight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from pimprune.numeric import energy
from pimprune.pruning.plan import BudgetPlan
from pimprune.pruning.units import Units, greedy_plan

Tensors = Mapping[str, torch.Tensor]


def take_tensor(tensors: Tensors, name: str, shape: torch.Size, what: str = "weights") -> torch.Tensor:
    """``tensors[name]``, detached, checked to exist and to have ``shape``.

    Raises:
        ValueError: when ``name`` is missing or has another shape.
    """
    try:
        w = tensors[name]
    except KeyError:
        raise ValueError(f"{what} lack parameter {name!r}") from None
    if w.shape != shape:
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(w.shape)}")
    return w.detach()


def ranked_tensor(weights: Tensors, scores: Tensors, name: str, shape: torch.Size) -> torch.Tensor:
    """The tensor ranked for ``name``: its score if given, else its weight (both checked)."""
    w = take_tensor(weights, name, shape)
    return take_tensor(scores, name, shape, "scores") if name in scores else w


@dataclass
class Ranking:
    """Units of several layers ranked together (the ``global`` allocation).

    Attributes:
        units: Layer name -> its units.
        gains: ``(U,)`` ranked gain of every unit, layer after layer.
        costs: ``(U,)`` budget cost of every unit (crossbars, or cost units).
        chain: ``(U,)`` chain ids, unique across layers.
        position: ``(U,)`` positions in chain.
    """

    units: dict[str, Units]
    gains: torch.Tensor
    costs: torch.Tensor
    chain: torch.Tensor
    position: torch.Tensor
    _plan: object = field(default=None, repr=False)

    def select(self, budget: int | float) -> torch.Tensor:
        """``(U,)`` boolean: the units the greedy takes within ``budget`` (the order is computed once)."""
        if self._plan is None:
            self._plan = greedy_plan(self.gains, self.costs, self.chain, self.position)
        if budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        return self._plan(budget)

    def split(self, selected: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """``(g, M, N)`` masks and crossbars of every layer for ``selected`` units."""
        masks, crossbars = {}, {}
        start = 0
        for n, u in self.units.items():
            sel = selected[start : start + len(u)]
            start += len(u)
            masks[n] = u.mask(sel)
            crossbars[n] = u.cost_of(sel)
        return masks, crossbars


def rank_units(
    units: Mapping[str, Units],
    scale: Mapping[str, float],
    *,
    keep_every_layer: bool = False,
    every_chain: bool = False,
    unit_costs: Mapping[str, float] | None = None,
    guarded: Mapping[str, torch.Tensor] | None = None,
) -> Ranking:
    """Pool the units of several layers for one greedy (the ``global`` allocation's ranking).

    Args:
        units: Layer name -> its units, in network order.
        scale: Layer name -> factor of its gains (the per-layer normalisation; 1: none).
        keep_every_layer: Make every layer's best first unit (every chain's first unit
            with ``every_chain``) outrank all others.
        every_chain: See ``keep_every_layer`` (:attr:`Pattern.chain_is_output_group`).
        unit_costs: Layer name -> cost of one of its crossbars (None: 1, integer costs).
        guarded: With ``keep_every_layer``, layer name -> indices of the units of that
            layer that outrank all others, instead of the choice above (network-level
            patterns that decide which output groups may go, :mod:`pimprune.pruning.channel_blocks`).
    """
    gains, costs, chains, positions = [], [], [], []
    offset = 0
    for n, u in units.items():
        gains.append(u.gains * scale[n])
        costs.append(u.costs if unit_costs is None else u.costs.to(torch.float64) * unit_costs[n])
        chains.append(u.chain + offset)
        positions.append(u.position)
        offset += u.n_chains
    if keep_every_layer and gains:
        _boost_kept(units, gains, positions, every_chain, unit_costs, guarded)
    cat = [torch.cat(x) if x else torch.zeros(0, dtype=torch.int64) for x in (gains, costs, chains, positions)]
    return Ranking(dict(units), *cat)


def _boost_kept(
    units: Mapping[str, Units],
    gains: list[torch.Tensor],
    positions: list[torch.Tensor],
    every_chain: bool,
    unit_costs: Mapping[str, float] | None,
    guarded: Mapping[str, torch.Tensor] | None,
) -> None:
    """Raise, in place, the gains of the units that must stay above every other unit's."""
    boost = float(sum(float(g.sum()) for g in gains)) + 1.0
    if unit_costs is not None:
        boost *= max(unit_costs[n] for n in units) / min(unit_costs[n] for n in units)
    for n, g, pos in zip(units, gains, positions, strict=True):
        first = torch.nonzero(pos == 0).flatten()
        if guarded is not None:
            keep = guarded[n]
        elif len(first):
            keep = first if every_chain else first[torch.argmax(g[first])].reshape(1)
        else:
            continue
        g[keep] = g[keep] + boost


def output_guard(units: Units, groups: torch.Tensor) -> torch.Tensor:
    """Indices of the units that keep every output group alive: each group's best first unit.

    Args:
        units: One layer's units.
        groups: ``(U,)`` output group of every unit (:meth:`Pattern.output_groups`).
    """
    first = torch.nonzero(units.position == 0).flatten()
    if not len(first):
        return first
    g, gain = groups[first], units.gains[first].to(torch.float64)
    order = torch.argsort(gain, descending=True, stable=True)
    order = order[torch.argsort(g[order], stable=True)]  # by group, best gain first within it
    g_sorted = g[order]
    lead = torch.ones_like(g_sorted, dtype=torch.bool)
    lead[1:] = g_sorted[1:] != g_sorted[:-1]
    return first[order[lead]]


def layer_scales(
    mats: Tensors, plan: BudgetPlan, normalize: bool, energy_of: Callable[[str, torch.Tensor], float] | None = None
) -> dict[str, float]:
    """The global allocation's per-layer gain factor: dense crossbars / energy (1 without normalisation).

    ``energy_of(name, matrix)`` replaces :func:`pimprune.numeric.energy` (a cache of fixed weights).
    """
    scale = {}
    for n, m in mats.items():
        e = (energy(m) if energy_of is None else energy_of(n, m)) if normalize else 0.0
        scale[n] = plan.prunable_dense[n] / e if e > 0 else 1.0
    return scale
