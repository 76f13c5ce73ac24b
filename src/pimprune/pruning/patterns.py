"""Pruning patterns as projections onto crossbar budgets (``docs/design.md`` section 5).

Given a layer's weight matrices ``(g, M, N)``, a crossbar geometry ``RxC`` and a
budget in crossbars, :meth:`Pattern.project` returns the mask that keeps the most
weight energy while the layer, compacted with the pattern's counting scheme
(:mod:`pimprune.mapping.counting`), fits the budget. Every pattern cuts the layer
into crossbar-sized :class:`~pimprune.pruning.units.Units` (``subrow``: ``R``
sub-rows of a column block; ``subcolumn``: ``C`` sub-columns of a row block;
``row``/``filter``: ``R`` rows / ``C`` columns; ``crossbar``: a tile;
``unstructured``: ``R*C`` weights, bounded by the packing bound), and the greedy
over them is the exact projection. ``filter`` here prunes one layer alone; the
network-level baseline is :mod:`pimprune.pruning.dependency`.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from typing import ClassVar

import torch

from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count, packing_bound
from pimprune.numeric import broadcast, cdiv, contiguous, energy, repeat, squares, zero_pad
from pimprune.pruning.units import SortedItems, Units, chunked_units, greedy_select, sort_items
from pimprune.registry import Registry


def _check_matrix(matrix: torch.Tensor) -> torch.Tensor:
    if matrix.dim() != 3:
        raise ValueError(f"matrix must have shape (groups, rows, cols), got {tuple(matrix.shape)}")
    return matrix.detach()


def ranked(matrix: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
    """What a projection ranks: ``scores`` if given (checked against ``matrix``), else ``matrix``.

    Args:
        matrix: ``(g, M, N)`` weight matrices.
        scores: ``(g, M, N)`` importance scores of the same shape, or None.

    Raises:
        ValueError: if either is not 3-D or the shapes differ.
    """
    matrix = _check_matrix(matrix)
    if scores is None:
        return matrix
    if scores.shape != matrix.shape:
        raise ValueError(f"scores must have the weights' shape {tuple(matrix.shape)}, got {tuple(scores.shape)}")
    return scores.detach()


def _check_budget(budget: int) -> int:
    if isinstance(budget, bool) or int(budget) != budget or budget < 0:
        raise ValueError(f"budget must be a non-negative integer of crossbars, got {budget!r}")
    return int(budget)


def _pad_to(t: torch.Tensor, xbar: Crossbar) -> torch.Tensor:
    g, m, n = t.shape
    pm, pn = (-m) % xbar.rows, (-n) % xbar.cols
    if pm or pn:
        t = zero_pad(t, (0, pm, pn))
    return t


def _padded(shape: tuple[int, int, int], xbar: Crossbar) -> int:
    """1 if :func:`_pad_to` pads matrices of ``shape`` on ``xbar``, else 0."""
    return int(bool(shape[1] % xbar.rows or shape[2] % xbar.cols))


class Pattern(ABC):
    """A sparsity pattern: a projection onto a crossbar budget.

    Every method that ranks takes the weights and optional ``scores`` of the same
    shape (as ``torch.nn.utils.prune`` takes ``importance_scores``): the units kept
    are those of the largest summed squared score, by default the weights' own
    energy. ``scores = w * s`` with a saliency factor ``s``
    (:meth:`pimprune.pruning.saliency.Saliency.scores`) keeps the units of most
    ``w^2 s^2``.

    Attributes:
        name: Registry name.
        scheme: Counting scheme of :mod:`pimprune.mapping.counting` the pruned layer is
            compacted with.
    """

    name: ClassVar[str]
    scheme: ClassVar[str]
    #: True when every chain of :meth:`units` feeds its own group of outputs
    #: (``subrow``: a column block; ``row``: a whole matrix), so an empty chain
    #: silences those outputs; budget allocation then keeps each chain's first unit.
    chain_is_output_group: ClassVar[bool] = False
    #: True when :meth:`output_groups` names the outputs of every unit (``--guard outputs``);
    #: a pattern that sets it without :attr:`chain_is_output_group` overrides :meth:`output_groups`.
    guards_outputs: ClassVar[bool] = False

    def output_groups(self, units: Units, shape: tuple[int, int, int], xbar: Crossbar) -> torch.Tensor | None:
        """``(U,)`` the output group each unit writes to, for the global allocation's output guard.

        Units of one group write to the same outputs (a column block of one group of
        the matrix), so a group none of whose units is kept silences those outputs.
        None: the pattern offers no output guard (:attr:`guards_outputs`).
        """
        return units.chain if self.guards_outputs else None

    @abstractmethod
    def units(self, matrix: torch.Tensor, xbar: Crossbar, scores: torch.Tensor | None = None) -> Units:
        """Decompose ``(g, M, N)`` matrices into crossbar-sized units, gains from ``scores``."""

    def project(
        self, matrix: torch.Tensor, xbar: Crossbar, budget: int, scores: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mask ``(g, M, N)`` keeping the most score energy within ``budget`` crossbars.

        Args:
            matrix: ``(g, M, N)`` weight matrices (any float dtype).
            xbar: Crossbar geometry.
            budget: Crossbars allowed (see :meth:`cost`), ``>= 0``.
            scores: Importance of every weight, the shape of ``matrix`` (None: the weights).

        Returns:
            Boolean mask of the shape of ``matrix``.
        """
        budget = _check_budget(budget)
        units = self.units(matrix, xbar, scores)
        return units.mask(greedy_select(units.gains, units.costs, units.chain, units.position, budget))

    def cost(self, mask: torch.Tensor, xbar: Crossbar) -> int:
        """Crossbars that the budget bounds for ``mask``: its count under :attr:`scheme`."""
        return count(mask, xbar, self.scheme)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: ``expand(keep)`` of :class:`Units`: a boolean item tensor to the ``(g, M, N)`` mask.
Expand = Callable[[torch.Tensor], torch.Tensor]


class ChunkedPattern(Pattern):
    """A pattern whose units are chunks of sorted items (:func:`chunked_units`).

    :meth:`units` is split in four steps so that :class:`UnitsCache` can reuse the
    item energies, sorted, across geometries that share what they depend on:
    :meth:`item_energy` (the items of every chain), :meth:`item_key` (the part of the
    geometry those depend on), :meth:`chunk_cost` (chunk size and cost) and
    :meth:`expand` (items back to the mask).
    """

    @abstractmethod
    def item_energy(self, energy: torch.Tensor, xbar: Crossbar) -> torch.Tensor:
        """``(*chains_shape, L)`` energy of every item, from the squared scores ``(g, M, N)``."""

    @abstractmethod
    def item_key(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, ...]:
        """What :meth:`item_energy` of matrices of ``shape`` depends on in ``xbar``.

        Besides the sides that define the items, whether the energies are padded to
        whole tiles: that changes the memory layout the sums run on, hence their
        last-bit rounding, and reused items must equal freshly computed ones exactly.
        """

    @abstractmethod
    def chunk_cost(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, int]:
        """``(items per unit, crossbars per unit)`` for matrices of ``shape``."""

    @abstractmethod
    def expand(self, keep: torch.Tensor, shape: tuple[int, int, int], xbar: Crossbar) -> torch.Tensor:
        """The ``(g, M, N)`` boolean mask of a boolean item tensor (layout of :meth:`item_energy`)."""

    def chunking(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, int, Expand]:
        """``(chunk, cost, expand)`` of :func:`chunked_units` for matrices of ``shape``."""
        chunk, cost = self.chunk_cost(shape, xbar)
        return chunk, cost, functools.partial(self.expand, shape=tuple(shape), xbar=xbar)

    def units(self, matrix: torch.Tensor, xbar: Crossbar, scores: torch.Tensor | None = None) -> Units:  # noqa: D102
        r = ranked(matrix, scores)
        return chunked_units(self.item_energy(squares(r), xbar), *self.chunking(r.shape, xbar))


#: Sorted items a :class:`UnitsCache` keeps, at most this many per weight of a layer
#: (``unstructured`` items are the weights themselves: sorted again for each geometry).
_CACHE_ITEMS_PER_WEIGHT = 0.25


class UnitsCache:
    """:meth:`Pattern.units` of fixed layers on many geometries, without redoing the shared work.

    The items of a :class:`ChunkedPattern` depend on part of the geometry only
    (``subrow``: the columns ``C``; ``subcolumn``: the rows ``R``; ``row``, ``filter``:
    nothing), so their energies are computed and sorted once per layer and distinct
    part, from squared weights computed once per layer; only the cut into chunks is
    redone. The result equals
    ``pattern.units(matrix, xbar)``. The matrices must not change between calls that
    use the same layer key. Other patterns are passed through.

    Args:
        pattern: The pattern.
    """

    def __init__(self, pattern: Pattern) -> None:
        self.pattern = pattern
        self._items: dict[tuple[Hashable, tuple[int, ...]], SortedItems] = {}
        self._squares: dict[Hashable, torch.Tensor] = {}
        self._energy: dict[Hashable, float] = {}

    def energy(self, key: Hashable, matrix: torch.Tensor) -> float:
        """:func:`pimprune.numeric.energy` of ``matrix`` (the layer named ``key``), computed once."""
        if key not in self._energy:
            self._energy[key] = energy(matrix)
        return self._energy[key]

    def units(self, key: Hashable, matrix: torch.Tensor, xbar: Crossbar) -> Units:
        """Units of ``matrix`` (the layer named ``key``) on ``xbar``."""
        p = self.pattern
        if not isinstance(p, ChunkedPattern):
            return p.units(matrix, xbar)
        matrix = _check_matrix(matrix)
        cache_key = (key, p.item_key(matrix.shape, xbar))
        items = self._items.get(cache_key)
        if items is None:
            if key not in self._squares:
                self._squares[key] = squares(matrix)
            items = sort_items(p.item_energy(self._squares[key], xbar))
            if items.values.numel() <= _CACHE_ITEMS_PER_WEIGHT * matrix.numel():
                self._items[cache_key] = items
        return chunked_units(items, *p.chunking(matrix.shape, xbar))


#: Pattern name -> pattern class.
PATTERNS: Registry[type[Pattern]] = Registry("pattern")


def get_pattern(name: str) -> Pattern:
    """A new instance of the pattern registered as ``name``.

    Raises:
        UnknownNameError: if no pattern has that name.
    """
    return PATTERNS.get(name)()


@PATTERNS.register("subrow")
class SubRowPattern(ChunkedPattern):
    """Sub-rows (row segments inside one ``C``-column block), ``R`` per crossbar.

    Items ``(g, n_col_blocks, M)``; chains: one per group and column block.
    """

    name = "subrow"
    scheme = "subrow"
    chain_is_output_group = True
    guards_outputs = True

    def item_energy(self, energy: torch.Tensor, xbar: Crossbar) -> torch.Tensor:  # noqa: D102
        g, m, n = energy.shape
        nb = cdiv(n, xbar.cols)
        e = _pad_to(energy, xbar)[:, :m]  # pad columns only
        return e.reshape(g, m, nb, xbar.cols).sum(3).transpose(1, 2)  # (g, nb, M)

    def item_key(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, ...]:  # noqa: D102
        return (xbar.cols, _padded(shape, xbar))

    def chunk_cost(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, int]:  # noqa: D102
        return xbar.rows, 1

    def expand(self, keep: torch.Tensor, shape: tuple[int, int, int], xbar: Crossbar) -> torch.Tensor:  # noqa: D102
        return contiguous(repeat(keep.transpose(1, 2), xbar.cols, 2)[:, :, : shape[2]])


@PATTERNS.register("subrow-channel")
class SubRowChannelPattern(SubRowPattern):
    """Sub-rows, where a whole column block of an uncoupled layer may go as output channels.

    Units and counting are those of ``subrow``; the network-level projection
    (:mod:`pimprune.pruning.channel_blocks`) decides which column blocks go and removes
    their channels and the consumer rows that read them.
    """

    name = "subrow-channel"
    guards_outputs = False  # its projection removes whole column blocks on purpose


@PATTERNS.register("subcolumn")
class SubColumnPattern(ChunkedPattern):
    """Sub-columns (column segments inside one ``R``-row block), ``C`` per crossbar.

    Items ``(g, n_row_blocks, N)``; chains: one per group and row block.
    """

    name = "subcolumn"
    scheme = "subcolumn"

    def item_energy(self, energy: torch.Tensor, xbar: Crossbar) -> torch.Tensor:  # noqa: D102
        g, m, n = energy.shape
        nr = cdiv(m, xbar.rows)
        e = _pad_to(energy, xbar)[:, :, :n]
        return e.reshape(g, nr, xbar.rows, n).sum(2)  # (g, nr, N)

    def item_key(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, ...]:  # noqa: D102
        return (xbar.rows, _padded(shape, xbar))

    def chunk_cost(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, int]:  # noqa: D102
        return xbar.cols, 1

    def expand(self, keep: torch.Tensor, shape: tuple[int, int, int], xbar: Crossbar) -> torch.Tensor:  # noqa: D102
        return contiguous(repeat(keep, xbar.rows, 1)[:, : shape[1]])


class _WholeLinePattern(ChunkedPattern):
    """Whole matrix lines (rows or columns) of each group: one chain per group.

    Attributes:
        line_dim: 1 for rows (items ``(g, M)``), 2 for columns (items ``(g, N)``).
    """

    line_dim: ClassVar[int]

    def item_energy(self, energy: torch.Tensor, xbar: Crossbar) -> torch.Tensor:  # noqa: D102
        return energy.sum(3 - self.line_dim)

    def item_key(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, ...]:  # noqa: D102
        return ()

    def chunk_cost(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, int]:  # noqa: D102
        # R rows cost the column blocks they cross; C columns the row blocks
        if self.line_dim == 1:
            return xbar.rows, cdiv(shape[2], xbar.cols)
        return xbar.cols, cdiv(shape[1], xbar.rows)

    def expand(self, keep: torch.Tensor, shape: tuple[int, int, int], xbar: Crossbar) -> torch.Tensor:  # noqa: D102
        return broadcast(keep.unsqueeze(3 - self.line_dim), shape)


@PATTERNS.register("row")
class RowPattern(_WholeLinePattern):
    """Whole matrix rows (shape-wise), ``R`` per crossbar row block, each costing ``ceil(N/C)``.

    Items ``(g, M)``; chains: one per group.
    """

    name = "row"
    scheme = "row"
    chain_is_output_group = True
    guards_outputs = True
    line_dim = 1


@PATTERNS.register("filter")
class FilterPattern(_WholeLinePattern):
    """Whole output columns of one layer, ``C`` per column block, each chunk costing ``ceil(M/R)``.

    Rows are left as they are; the network-level filter baseline that also
    drops the consumers' rows is :class:`pimprune.pruning.dependency.FilterGraph`.
    Items ``(g, N)``; chains: one per group.
    """

    name = "filter"
    scheme = "filter"
    line_dim = 2


@PATTERNS.register("crossbar")
class CrossbarPattern(ChunkedPattern):
    """Whole ``RxC`` tiles of the dense tiling; each tile is its own chain of one unit."""

    name = "crossbar"
    scheme = "crossbar"
    guards_outputs = True

    def item_energy(self, energy: torch.Tensor, xbar: Crossbar) -> torch.Tensor:  # noqa: D102
        g = energy.shape[0]
        p = _pad_to(energy, xbar)
        nr, nc = p.shape[1] // xbar.rows, p.shape[2] // xbar.cols
        return p.reshape(g, nr, xbar.rows, nc, xbar.cols).sum((2, 4))[..., None]  # (g, nr, nc, 1)

    def item_key(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, ...]:  # noqa: D102
        return (xbar.rows, xbar.cols)

    def chunk_cost(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, int]:  # noqa: D102
        return 1, 1

    def output_groups(self, units: Units, shape: tuple[int, int, int], xbar: Crossbar) -> torch.Tensor:
        """Chains are the ``(g, row block, column block)`` tiles; a tile writes to its group's column block."""
        nr, nc = cdiv(shape[1], xbar.rows), cdiv(shape[2], xbar.cols)
        return units.chain // (nr * nc) * nc + units.chain % nc

    def expand(self, keep: torch.Tensor, shape: tuple[int, int, int], xbar: Crossbar) -> torch.Tensor:  # noqa: D102
        tiles = repeat(repeat(keep[..., 0], xbar.rows, 1), xbar.cols, 2)
        return contiguous(tiles[:, : shape[1], : shape[2]])


@PATTERNS.register("unstructured")
class UnstructuredPattern(ChunkedPattern):
    """Single weights, top-k magnitude: a budget of ``b`` keeps ``b*R*C`` weights.

    One chain per layer (all groups together): weights sorted by magnitude, cut
    into chunks of ``R*C``. The budget bounds the packing bound
    ``ceil(nnz/(R*C))``; the counting scheme (non-zero tiles) shows how little
    scattered zeros save.
    """

    name = "unstructured"
    scheme = "unstructured"

    def item_energy(self, energy: torch.Tensor, xbar: Crossbar) -> torch.Tensor:  # noqa: D102
        return energy.reshape(1, -1)

    def item_key(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, ...]:  # noqa: D102
        return ()

    def chunk_cost(self, shape: tuple[int, int, int], xbar: Crossbar) -> tuple[int, int]:  # noqa: D102
        return xbar.cells, 1

    def expand(self, keep: torch.Tensor, shape: tuple[int, int, int], xbar: Crossbar) -> torch.Tensor:  # noqa: D102
        return keep.reshape(shape)

    def project(
        self, matrix: torch.Tensor, xbar: Crossbar, budget: int, scores: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Keep the ``budget*R*C`` weights of largest score magnitude.

        Same result as the greedy over :meth:`units` (its first ``budget`` chunks),
        computed with ``topk`` instead of a full sort.
        """
        budget = _check_budget(budget)
        r = ranked(matrix, scores)
        flat = squares(r).reshape(-1)
        k = min(budget * xbar.cells, flat.numel())
        keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        if k:
            keep[torch.topk(flat, k, sorted=False).indices] = True
        return keep.reshape(r.shape)

    def cost(self, mask: torch.Tensor, xbar: Crossbar) -> int:
        """The packing bound ``ceil(nnz/(R*C))`` (what an unstructured budget bounds)."""
        return packing_bound(mask, xbar)
