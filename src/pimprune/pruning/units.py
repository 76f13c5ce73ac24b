"""A layer cut into crossbar-sized units, and the greedy that takes them within a budget.

Inside a chain the items (sub-rows, sub-columns, rows, columns, weights) are sorted
by energy and cut into chunks, so unit ``j`` of a chain can only be taken after
unit ``j-1`` and the gains never increase along a chain. With a constant cost per
chain, taking units by gain per crossbar (:func:`greedy_select`) is then the exact
projection of one layer; pooled over layers, the same units drive the ``global``
allocation (:mod:`pimprune.pruning.ranking`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pimprune.numeric import NUMPY_FLOATS, cdiv, zero_pad


@dataclass
class Units:
    """A layer cut into crossbar-sized units, for greedy projection and global allocation.

    Attributes:
        gains: ``(U,)`` float64, weight energy (sum of squares) each unit keeps;
            non-increasing along each chain.
        costs: ``(U,)`` int64, crossbars each unit occupies (constant within a chain).
        chain: ``(U,)`` int64, chain id of each unit, ``0 .. n_chains-1``.
        position: ``(U,)`` int64, position of the unit in its chain (``0`` first);
            unit ``j`` can only be taken together with units ``0 .. j-1``.
        item_unit: Unit index of every item (sub-row, column, weight, ...), in the
            pattern's item layout.
        expand: Turns a boolean item tensor (layout of ``item_unit``) into the
            ``(g, M, N)`` mask.
    """

    gains: torch.Tensor
    costs: torch.Tensor
    chain: torch.Tensor
    position: torch.Tensor
    item_unit: torch.Tensor
    expand: Callable[[torch.Tensor], torch.Tensor]

    def __len__(self) -> int:
        return int(self.gains.numel())

    @property
    def n_chains(self) -> int:
        """Number of chains."""
        return int(self.chain.max()) + 1 if len(self) else 0

    def mask(self, selected: torch.Tensor) -> torch.Tensor:
        """The ``(g, M, N)`` boolean mask that keeps exactly the ``selected`` units.

        Args:
            selected: ``(U,)`` boolean, which units are kept.
        """
        selected = selected.to(torch.bool)
        if selected.shape != self.gains.shape:
            raise ValueError(f"selected must have shape {tuple(self.gains.shape)}")
        if selected.device.type == "cpu" and self.item_unit.device.type == "cpu":
            return self.expand(torch.from_numpy(selected.numpy()[self.item_unit.numpy()]))
        return self.expand(selected[self.item_unit])

    def cost_of(self, selected: torch.Tensor) -> int:
        """Crossbars the ``selected`` units occupy."""
        return int(self.costs[selected.to(torch.bool)].sum())


def greedy_select(
    gains: torch.Tensor,
    costs: torch.Tensor,
    chain: torch.Tensor,
    position: torch.Tensor,
    budget: int,
) -> torch.Tensor:
    """Take units by gain per crossbar, best first, while they fit ``budget``.

    Units are ordered by ``gains / costs`` (ties: lower chain position first). The
    longest prefix that fits is taken; then later units are added while the rest
    of the budget allows, each only if its chain predecessor is taken. Units of
    zero gain are taken too when the budget allows (a budget at least the dense
    count keeps everything). With a constant cost per chain and gains that never
    increase along a chain, the prefix respects the chains; when every unit has
    the same cost the result is optimal.

    Args:
        gains: ``(U,)`` gain per unit.
        costs: ``(U,)`` positive integer cost per unit.
        chain: ``(U,)`` chain id per unit, ``0 .. n_chains-1``.
        position: ``(U,)`` position in chain, from ``0``.
        budget: Crossbars available, ``>= 0``.

    Returns:
        ``(U,)`` boolean: the units taken.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0 crossbars, got {budget}")
    if int(gains.numel()) == 0 or budget == 0:
        return torch.zeros(int(gains.numel()), dtype=torch.bool, device=gains.device)
    return greedy_plan(gains, costs, chain, position)(budget)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def greedy_plan(
    gains: torch.Tensor,
    costs: torch.Tensor,
    chain: torch.Tensor,
    position: torch.Tensor,
) -> Callable[[int], torch.Tensor]:
    """:func:`greedy_select` for many budgets: the order of the units is computed once.

    Args:
        gains: ``(U,)`` gain per unit.
        costs: ``(U,)`` positive cost per unit: integer crossbars, or float cost units.
        chain: ``(U,)`` chain id per unit, ``0 .. n_chains-1``.
        position: ``(U,)`` position in chain, from ``0``.

    Returns:
        ``select(budget)``, equal to ``greedy_select(gains, costs, chain, position, budget)``.

    Raises:
        ValueError: if a unit costs zero or less.
    """
    device = gains.device
    n = int(gains.numel())
    cost = _np(costs)
    cost = cost.astype(np.float64) if np.issubdtype(cost.dtype, np.floating) else cost.astype(np.int64)
    if n and bool((cost <= 0).any()):
        raise ValueError("every unit must cost more than zero (at least one crossbar)")
    chain_np = _np(chain)
    pos_np = _np(position)
    ratio = _np(gains).astype(np.float64) / cost.astype(np.float64)
    by_position = np.argsort(pos_np, kind="stable")
    order = by_position[np.argsort(-ratio[by_position], kind="stable")]
    cum = np.cumsum(cost[order])
    n_chains = int(chain_np.max()) + 1 if n else 0

    def select(budget: int) -> torch.Tensor:
        if budget < 0:
            raise ValueError(f"budget must be >= 0 crossbars, got {budget}")
        selected = np.zeros(n, dtype=bool)
        if n == 0 or budget == 0:
            return torch.from_numpy(selected).to(device)
        k = int(np.searchsorted(cum, budget, side="right"))
        selected[order[:k]] = True
        left = budget - (cum[k - 1].item() if k else 0)
        rest = order[k:]
        rest = rest[cost[rest] <= left]
        if rest.size:
            next_pos = np.bincount(chain_np[selected], minlength=n_chains).tolist()
            min_cost = cost[rest].min().item()
            for idx, c, ch, p in zip(
                rest.tolist(), cost[rest].tolist(), chain_np[rest].tolist(), pos_np[rest].tolist(), strict=True
            ):
                if c <= left and p == next_pos[ch]:
                    selected[idx] = True
                    left -= c
                    next_pos[ch] += 1
                    if left < min_cost:
                        break
        return torch.from_numpy(selected).to(device)

    return select


@dataclass
class SortedItems:
    """Item energies sorted within each chain.

    The part of :func:`chunked_units` that does not depend on the chunk size, so it
    can be reused across geometries (:class:`UnitsCache`).

    Attributes:
        shape: Shape of the item energies, ``(*chains_shape, L)``.
        values: ``(n_chains, L)`` float64, energies sorted in descending order.
        order: ``(n_chains, L)`` int64, item index of each sorted energy.
    """

    shape: torch.Size
    values: torch.Tensor
    order: torch.Tensor


def sort_items(energy: torch.Tensor) -> SortedItems:
    """Sort item energies ``(*chains_shape, L)`` within each chain, largest first."""
    shape = energy.shape
    flat = energy.detach().reshape(-1, shape[-1])
    if flat.numel() == 0:
        empty = torch.zeros(flat.shape, dtype=torch.int64, device=flat.device)
        return SortedItems(shape, empty.to(torch.float64), empty)
    values, order = torch.sort(flat, dim=1, descending=True)
    if values.device.type == "cpu" and values.dtype in NUMPY_FLOATS:  # exact either way
        return SortedItems(shape, torch.from_numpy(values.numpy().astype(np.float64)), order)
    return SortedItems(shape, values.to(torch.float64), order)


def chunked_units(
    energy: torch.Tensor | SortedItems,
    chunk: int,
    cost: int | torch.Tensor,
    expand: Callable[[torch.Tensor], torch.Tensor],
) -> Units:
    """Units from item energies: per chain, sort items by energy and cut into chunks.

    Args:
        energy: ``(*chains_shape, L)`` energy of the ``L`` items of each chain; the
            leading dimensions enumerate the chains (flattened in row-major order).
            Or the same already sorted by :func:`sort_items`.
        chunk: Items per unit (the last unit of a chain may hold fewer).
        cost: Crossbars per unit: an int, or a tensor of shape ``chains_shape``.
        expand: Maps a boolean tensor shaped like ``energy`` to the ``(g, M, N)`` mask.

    Returns:
        The :class:`Units`; ``item_unit`` has the shape of ``energy``.
    """
    items = energy if isinstance(energy, SortedItems) else sort_items(energy)
    shape = items.shape
    length = shape[-1]
    n_chains = items.values.shape[0]
    per_chain = cdiv(length, chunk) if length else 0
    dev = items.values.device
    if n_chains == 0 or per_chain == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=dev)
        return Units(
            torch.zeros(0, dtype=torch.float64, device=dev),
            empty,
            empty,
            empty,
            torch.zeros(shape, dtype=torch.int64, device=dev),
            expand,
        )
    values = items.values
    pad = per_chain * chunk - length
    if pad:
        values = zero_pad(values, (0, pad))
    gains = values.reshape(n_chains, per_chain, chunk).sum(2)
    gains = torch.cummin(gains, dim=1).values  # guard against rounding: never increasing
    chain_ids = torch.arange(n_chains, dtype=torch.int64, device=dev)
    item_unit = _item_units(items.order, per_chain, chunk)
    if isinstance(cost, int):
        costs = torch.full((n_chains, per_chain), cost, dtype=torch.int64, device=dev)
    else:
        costs = cost.reshape(n_chains, 1).to(dev, torch.int64).expand(n_chains, per_chain)
    return Units(
        gains=gains.reshape(-1),
        costs=costs.reshape(-1).clone(),
        chain=chain_ids.repeat_interleave(per_chain),
        position=torch.arange(per_chain, dtype=torch.int64, device=dev).repeat(n_chains),
        item_unit=item_unit.reshape(shape),
        expand=expand,
    )


def _item_units(order: torch.Tensor, per_chain: int, chunk: int) -> torch.Tensor:
    """``(n_chains, L)`` unit index of every item, from the item order sorted within each chain."""
    n_chains, length = order.shape
    if order.device.type == "cpu":  # numpy: no thread pool to wait for on a busy machine
        sorted_unit = np.arange(n_chains, dtype=np.int64)[:, None] * per_chain + (
            np.arange(length, dtype=np.int64) // chunk
        )
        item_unit_np = np.empty((n_chains, length), dtype=np.int64)
        np.put_along_axis(item_unit_np, order.numpy(), sorted_unit, axis=1)
        return torch.from_numpy(item_unit_np)
    dev = order.device
    chain_ids = torch.arange(n_chains, dtype=torch.int64, device=dev)
    unit_of_sorted = (
        chain_ids[:, None] * per_chain + (torch.arange(length, dtype=torch.int64, device=dev) // chunk)[None, :]
    )
    item_unit = torch.empty_like(unit_of_sorted)
    item_unit.scatter_(1, order, unit_of_sorted)
    return item_unit
