"""From a network-wide compression target to per-parameter masks.

A :class:`PruneTarget` names a pattern (:mod:`pimprune.pruning.patterns`), a crossbar
geometry, a target compression of occupied crossbars (DESIGN.md section 4:
dense count of the unpruned network / count after pruning) and how the
network's crossbar budget is shared among layers:

``uniform``
    Every prunable layer gets a budget proportional to its dense count
    (largest-remainder rounding, so the budgets add up to the network budget).
``global``
    The units (:class:`pimprune.pruning.patterns.Units`) of all prunable layers are
    ranked together and taken greedily, best gain per crossbar first, until the
    network budget is used. Unless ``normalize_layers`` is off, gains are
    normalised per layer by the layer's mean energy per dense crossbar (total
    squared weight / dense count), so a unit scores how much better than the
    layer's average crossbar it is; layers of different weight scale (e.g.
    different fan-in) then compare fairly, and every layer's best unit scores
    at least 1. Weights already scaled to comparable units (the ``fisher``
    saliency of :mod:`pimprune.pruning.saliency`, an estimate of the loss increase) are
    ranked as they are.
``file``
    Budgets come from a YAML file mapping layer name to a crossbar budget
    (``layer1.0.conv1: 3`` or ``{crossbars: 3}``) or to a compression
    (``"4x"`` or ``{compression: 4}``); layers not listed share the rest of the
    network budget uniformly. Not available for ``filter``.

The ``filter`` pattern is network-level (:mod:`pimprune.pruning.dependency`): coupled
channel groups are pruned together, and the consumers' rows go with the
producers' columns. ``uniform`` keeps the same fraction of every group's
channels; ``global`` ranks all channels by their importance divided by their
group's mean channel importance. In both cases the pruning level meeting the
target is found by bisection, and every group keeps at least one channel.

Layers in ``keep_dense`` (default: the first conv and the classifier) are never
touched and are counted dense. The guarantee is: dense count of the kept-dense
layers + count of every other layer under the pattern's scheme (for
``unstructured``: its packing bound, see :meth:`pimprune.pruning.patterns.Pattern.cost`)
``<= floor(dense_total / target_compression)``.

With ``unit_costs`` (layer name -> cost of one crossbar of that layer, e.g. its
energy from the hardware model), budgets are counted in those units instead of
crossbars: the network may use ``sum(dense cost) / target_compression``, kept-dense
layers count at their dense cost, and the ``global`` allocation ranks units by
gain per cost, so an expensive layer keeps fewer crossbars. Without them every
crossbar costs 1 (the default, and the budgets above).

The bookkeeping (which layers are prunable, their dense counts and costs, the
budget a target allows) is a :class:`BudgetPlan`; the allocations take it. A
:class:`Projector` can be re-targeted (:meth:`Projector.retarget`) without
re-reading the model, as gradual pruning does at every mask update.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import dense_count
from pimprune.mapping.matrices import LayerMatrix, extract_layers
from pimprune.numeric import budget_of, check_target_compression, energy
from pimprune.pruning.dependency import FilterGraph, logical_parameters, own_parameters
from pimprune.pruning.patterns import PATTERNS, Pattern, Units, UnitsCache, get_pattern, greedy_plan
from pimprune.registry import Registry

#: Ways of sharing the network budget among layers.
ALLOCATIONS: tuple[str, ...] = ("uniform", "global", "file")

#: Aliases accepted in ``keep_dense``.
KEEP_FIRST = "first"
KEEP_LAST = "last"

Tensors = Mapping[str, torch.Tensor]


@dataclass
class PruneTarget:
    """What to prune to.

    Attributes:
        pattern: Pattern name (see :data:`pimprune.pruning.patterns.PATTERNS`).
        crossbar: Crossbar geometry (a :class:`Crossbar` or ``"RxC"``).
        target_compression: Dense crossbars / pruned crossbars over all mapped
            layers (a ratio, ``>= 1``); with ``unit_costs``, dense cost / pruned cost.
        allocation: ``"uniform"``, ``"global"`` or ``"file"``.
        budgets_file: YAML file of per-layer budgets (allocation ``"file"`` only).
        keep_dense: Layers kept dense and untouched: ``"first"`` (first conv),
            ``"last"`` (the classifier, the last mapped layer) or layer names.
        keep_every_layer: With ``global`` allocation, every prunable layer keeps
            at least its best unit (one crossbar's worth), and for patterns whose
            chains are output groups (``subrow``: a column block, ``row``) every
            chain keeps its first unit, so no output group is silenced while the
            budget allows. Without it, a layer of a single crossbar (e.g. a 1x1
            residual shortcut) has no unit scoring above 1 after normalisation and
            is the first to go, which cuts the shortcut of its block.
        normalize_layers: With ``global`` allocation, divide each layer's unit gains
            by the layer's mean energy per dense crossbar (each ``filter`` group's
            channel importances by their mean). Turn it off when the scores given
            to the projector are already in units comparable across layers (the
            ``fisher`` saliency, :mod:`pimprune.pruning.saliency`).
        unit_costs: Layer name -> cost of one crossbar of that layer (positive; layers
            not listed cost 1). None: every crossbar costs 1. Only with the ``global``
            allocation (for ``filter``: the budget is counted in these costs).
        packing: How the budget is counted (DESIGN.md section 4): ``"layer"`` (the paper's
            per-layer mapping, every layer on crossbars of its own) or ``"network"`` (the
            budget is the number of crossbars shared by all layers under
            :func:`pimprune.mapping.network.pack_network`, so single sub-row segments
            are ranked across the network, :mod:`pimprune.mapping.network_budget`;
            ``subrow`` with the ``global`` allocation only).
    """

    pattern: str
    crossbar: Crossbar
    target_compression: float
    allocation: str = "uniform"
    budgets_file: str | None = None
    keep_dense: tuple[str, ...] = (KEEP_FIRST, KEEP_LAST)
    keep_every_layer: bool = True
    normalize_layers: bool = True
    unit_costs: Mapping[str, float] | None = None
    packing: str = "layer"

    def __post_init__(self) -> None:
        PATTERNS.get(self.pattern)  # raises UnknownNameError
        if self.packing not in PACKINGS:
            raise ConfigError(f"unknown packing {self.packing!r}; choose one of: {', '.join(PACKINGS)}")
        if self.packing == "network" and (self.pattern, self.allocation, self.unit_costs) != ("subrow", "global", None):
            raise ConfigError(
                "a network-packing budget is available for the subrow pattern with the global allocation and "
                "crossbar costs only; use --pattern subrow --allocation global (or --packing layer)"
            )
        self.crossbar = Crossbar.parse(self.crossbar)
        self.target_compression = check_target_compression(self.target_compression)
        if self.allocation not in ALLOCATIONS:
            raise ConfigError(
                f"unknown allocation {self.allocation!r}; choose one of: {', '.join(ALLOCATIONS)}"
            )
        if (self.allocation == "file") != (self.budgets_file is not None):
            raise ConfigError(
                "a budgets file goes with allocation 'file' and only with it; "
                "give both --allocation file and the file, or neither"
            )
        if isinstance(self.keep_dense, str):
            self.keep_dense = (self.keep_dense,)
        self.keep_dense = tuple(self.keep_dense)
        if self.unit_costs is not None:
            self.unit_costs = _check_costs(self.unit_costs, self.allocation)


def _check_costs(costs: Mapping[str, float], allocation: str) -> dict[str, float]:
    if allocation != "global":
        raise ConfigError(f"unit costs weight the global allocation; got allocation {allocation!r}")
    out = {}
    for name, c in costs.items():
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not (math.isfinite(c) and c > 0):
            raise ConfigError(f"unit cost of {name!r} must be a finite number > 0, got {c!r}")
        out[str(name)] = float(c)
    return out


def proportional_budgets(dense: Mapping[str, int], total: int) -> dict[str, int]:
    """Share ``total`` crossbars pro rata to ``dense`` (largest remainder, capped at dense)."""
    d_sum = sum(dense.values())
    if total >= d_sum:
        return dict(dense)
    if total <= 0 or d_sum == 0:
        return {n: 0 for n in dense}
    base = {n: d * total // d_sum for n, d in dense.items()}
    left = total - sum(base.values())
    by_remainder = sorted(dense, key=lambda n: (-(dense[n] * total % d_sum), n))
    for n in by_remainder[:left]:
        base[n] += 1
    return base


def load_budgets_file(path: str | Path, dense: Mapping[str, int]) -> dict[str, int]:
    """Read per-layer budgets from YAML, clipped to each layer's dense count.

    Args:
        path: YAML mapping layer name -> ``int`` crossbars, ``{crossbars: int}``,
            ``"Nx"`` or ``{compression: N}``.
        dense: Dense count of every layer that may appear in the file.

    Raises:
        ConfigError: unreadable file, unknown layer, or a value of the wrong kind.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read budgets file {str(p)!r}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ConfigError(f"budgets file {str(p)!r} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"budgets file {str(p)!r} must map layer names to crossbar budgets")
    budgets = {}
    for name, value in data.items():
        if name not in dense:
            raise ConfigError(
                f"budgets file {str(p)!r}: {name!r} is not a prunable layer; "
                f"choose among: {', '.join(dense)}"
            )
        budgets[name] = min(dense[name], _parse_budget(str(p), name, value, dense[name]))
    return budgets


def _parse_budget(path: str, name: str, value: object, dense: int) -> int:
    def bad() -> ConfigError:
        return ConfigError(
            f"budgets file {path!r}: {name}: {value!r} is not a budget; write a whole number "
            "of crossbars (3 or {crossbars: 3}) or a compression ('4x' or {compression: 4})"
        )

    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "crossbars":
            if isinstance(inner, bool) or not isinstance(inner, int) or inner < 0:
                raise bad()
            return inner
        if key == "compression":
            return _compression_budget(path, name, inner, dense, bad)
        raise bad()
    if isinstance(value, str) and value.strip().lower().endswith("x"):
        try:
            ratio = float(value.strip()[:-1])
        except ValueError:
            raise bad() from None
        return _compression_budget(path, name, ratio, dense, bad)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad()
    return value


def _compression_budget(path: str, name: str, ratio: object, dense: int, bad) -> int:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise bad()
    if not math.isfinite(ratio) or ratio < 1:
        raise ConfigError(
            f"budgets file {path!r}: {name}: compression must be a finite number >= 1, got {ratio}"
        )
    return int(math.floor(dense / ratio + 1e-9))


def _resolve_keep_dense(keep: Sequence[str], layers: list[LayerMatrix]) -> tuple[str, ...]:
    names = [lay.name for lay in layers]
    convs = [lay.name for lay in layers if lay.kind == "conv"]
    aliases = {
        KEEP_FIRST: (convs or names)[:1],
        KEEP_LAST: names[-1:],
    }
    out: list[str] = []
    for item in keep:
        if item not in aliases and item not in names:
            raise ConfigError(
                f"keep_dense: {item!r} is not a mapped layer; use 'first', 'last' or one of: "
                f"{', '.join(names)}"
            )
        out.extend(aliases.get(item, [item]))
    return tuple(dict.fromkeys(out))


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:.6g}"


@dataclass
class BudgetPlan:
    """What a target means for a model: the layers, their dense counts and costs, the budgets.

    Build it with :meth:`build`; :meth:`retarget` gives the plan of another target
    compression for the same layers. Budgets are in crossbars, or in the units of
    :attr:`costs` when the target has ``unit_costs`` (then they are floats).

    Attributes:
        crossbar: The geometry.
        all_layers: Every mapped layer.
        kept_dense: Names of the layers kept dense and untouched.
        dense: Dense count of every mapped layer.
        costs: Cost of one crossbar of every mapped layer (all 1 without ``unit_costs``).
        target_compression: The target the budgets are computed for.
        weighted: Whether the target has ``unit_costs`` (budgets in cost units).
    """

    crossbar: Crossbar
    all_layers: list[LayerMatrix]
    kept_dense: tuple[str, ...]
    dense: dict[str, int]
    costs: dict[str, float]
    target_compression: float
    weighted: bool = False
    layers: list[LayerMatrix] = field(init=False)

    def __post_init__(self) -> None:
        self.layers = [lay for lay in self.all_layers if lay.name not in self.kept_dense]

    @classmethod
    def build(cls, model: nn.Module, target: PruneTarget) -> BudgetPlan:
        """The plan of ``target`` for ``model`` (its mapped layers; weights are not read).

        Raises:
            ConfigError: no layer to prune, an unknown kept-dense or cost layer, or a
                target the kept-dense layers alone exceed.
        """
        layers = extract_layers(model)
        if not layers:
            raise ConfigError("the model has no Conv2d or Linear layer to prune")
        xbar = target.crossbar
        dense = {lay.name: dense_count(lay.rows, lay.cols, lay.groups, xbar) for lay in layers}
        costs = dict.fromkeys(dense, 1.0)
        unknown = [n for n in (target.unit_costs or {}) if n not in dense]
        if unknown:
            raise ConfigError(
                f"unit costs name unmapped layer(s) {', '.join(unknown)}; choose among: {', '.join(dense)}"
            )
        costs.update(target.unit_costs or {})
        plan = cls(
            xbar,
            layers,
            _resolve_keep_dense(target.keep_dense, layers),
            dense,
            costs,
            target.target_compression,
            weighted=target.unit_costs is not None,
        )
        plan.check()
        return plan

    def retarget(self, target_compression: float) -> BudgetPlan:
        """The same plan for another target compression (checked)."""
        plan = dataclasses.replace(self, target_compression=check_target_compression(target_compression))
        plan.check()
        return plan

    def check(self) -> None:
        """Raise :class:`ConfigError` when the kept-dense layers alone exceed the budget."""
        if self.prunable_budget < 0:
            raise ConfigError(
                f"the kept-dense layers ({', '.join(self.kept_dense)}) alone need "
                f"{_num(self.kept_cost)} of the {_num(self.network_budget)} {self.unit} that "
                f"{self.target_compression:g}x allows on {self.crossbar}; the highest reachable "
                f"compression is {self.cost_total / self.kept_cost:.3f} "
                "(or keep fewer layers dense)"
            )

    @property
    def unit(self) -> str:
        """What budgets count: ``crossbars`` or ``cost units``."""
        return "cost units" if self.weighted else "crossbars"

    @property
    def dense_total(self) -> int:
        """Dense crossbars of the unpruned network (all mapped layers)."""
        return sum(self.dense.values())

    @property
    def kept_total(self) -> int:
        """Dense crossbars of the kept-dense layers."""
        return sum(self.dense[n] for n in self.kept_dense)

    @property
    def prunable_dense(self) -> dict[str, int]:
        """Dense count of each prunable layer."""
        return {lay.name: self.dense[lay.name] for lay in self.layers}

    @property
    def cost_total(self) -> float:
        """Dense cost of the unpruned network (= :attr:`dense_total` without costs)."""
        return self.cost(self.dense)

    @property
    def kept_cost(self) -> float:
        """Dense cost of the kept-dense layers (= :attr:`kept_total` without costs)."""
        return self.cost({n: self.dense[n] for n in self.kept_dense})

    @property
    def network_budget(self) -> int | float:
        """``floor(dense_total / target)`` crossbars; with costs ``cost_total / target``."""
        if self.weighted:
            return self.cost_total / self.target_compression * (1 + 1e-12)
        return budget_of(self.dense_total, self.target_compression)

    @property
    def prunable_budget(self) -> int | float:
        """``network_budget - kept cost``: what the prunable layers may use."""
        return self.network_budget - (self.kept_cost if self.weighted else self.kept_total)

    def cost(self, counts: Mapping[str, int]) -> int | float:
        """Crossbar counts by layer in budget units (their sum without costs)."""
        if not self.weighted:
            return sum(counts.values())
        return sum(self.costs[n] * c for n, c in counts.items())


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
        # the best first unit of every layer outranks everything else
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
    cat = [torch.cat(x) if x else torch.zeros(0, dtype=torch.int64) for x in (gains, costs, chains, positions)]
    return Ranking(dict(units), *cat)


class _Allocator(ABC):
    """Masks and per-layer crossbars of the prunable layers, from their ranked matrices."""

    def __init__(self, proj: Projector) -> None:
        self.proj = proj

    def retarget(self) -> None:  # noqa: B027 - optional hook
        """The projector's plan changed: recompute what depends on the budget."""

    @abstractmethod
    def allocate(self, mats: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """``(g, M, N)`` masks and crossbar count per prunable layer."""


class _FixedAllocator(_Allocator):
    """Budgets fixed per target; every call projects each layer alone."""

    budgets: dict[str, int]

    def __init__(self, proj: Projector) -> None:
        super().__init__(proj)
        self.retarget()

    def allocate(self, mats: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:  # noqa: D102
        p, x = self.proj.pattern, self.proj.crossbar
        return {n: p.project(m, x, self.budgets[n]) for n, m in mats.items()}, dict(self.budgets)


#: Allocation name -> allocator for layer-wise patterns.
LAYER_ALLOCATIONS: Registry[type[_Allocator]] = Registry("allocation")


@LAYER_ALLOCATIONS.register("uniform")
class _UniformAllocator(_FixedAllocator):
    def retarget(self) -> None:  # noqa: D102
        plan = self.proj.plan
        self.budgets = proportional_budgets(plan.prunable_dense, plan.prunable_budget)


@LAYER_ALLOCATIONS.register("file")
class _FileAllocator(_FixedAllocator):
    def __init__(self, proj: Projector) -> None:
        plan = proj.plan
        kept = set(plan.kept_dense)
        self.path = str(proj.target.budgets_file)
        self.listed = load_budgets_file(self.path, {**plan.prunable_dense, **{n: 0 for n in kept}})
        in_kept = [n for n in self.listed if n in kept]
        if in_kept:
            raise ConfigError(
                f"budgets file {self.path!r} lists kept-dense layer(s) {', '.join(in_kept)}; "
                "remove them from the file or from keep_dense"
            )
        super().__init__(proj)

    def retarget(self) -> None:  # noqa: D102
        plan = self.proj.plan
        used = sum(self.listed.values())
        if used > plan.prunable_budget:
            reach = plan.dense_total / max(1, used + plan.kept_total)
            raise ConfigError(
                f"budgets file {self.path!r} asks for {used} crossbars (+{plan.kept_total} kept dense) "
                f"but target {plan.target_compression:g}x allows {plan.network_budget}; "
                f"lower the budgets or set the target to at most {reach:.3f}"
            )
        dense = plan.prunable_dense
        missing = {n: d for n, d in dense.items() if n not in self.listed}
        budgets = {**self.listed, **proportional_budgets(missing, plan.prunable_budget - used)}
        self.budgets = {n: budgets[n] for n in dense}


def layer_scales(mats: Tensors, plan: BudgetPlan, normalize: bool) -> dict[str, float]:
    """The global allocation's per-layer gain factor: dense crossbars / energy (1 without normalisation)."""
    scale = {}
    for n, m in mats.items():
        e = energy(m) if normalize else 0.0
        scale[n] = plan.prunable_dense[n] / e if e > 0 else 1.0
    return scale


@LAYER_ALLOCATIONS.register("global")
class _GlobalAllocator(_Allocator):
    def allocate(self, mats: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:  # noqa: D102
        plan, cache = self.proj.plan, self.proj.units_cache
        # with a units cache the weights are fixed (the projector's contract): one ranking, and one
        # greedy order, serve every budget the projector is re-targeted to
        ranking = getattr(self, "_ranking", None) if cache is not None else None
        if ranking is None:
            ranking = self._rank(mats)
            if cache is not None:
                self._ranking = ranking
        return ranking.split(ranking.select(plan.prunable_budget))

    def _rank(self, mats: Tensors) -> Ranking:
        p, x, plan, target = self.proj.pattern, self.proj.crossbar, self.proj.plan, self.proj.target
        cache = self.proj.units_cache
        return rank_units(
            {n: (p.units(m, x) if cache is None else cache.units(n, m, x)) for n, m in mats.items()},
            layer_scales(mats, plan, target.normalize_layers),
            keep_every_layer=target.keep_every_layer,
            every_chain=p.chain_is_output_group,
            unit_costs=plan.costs if plan.weighted else None,
        )


class _Strategy(ABC):
    """How masks are computed for one projector (layer-wise patterns or network-level filter)."""

    params: list[str]

    def retarget(self) -> None:  # noqa: B027 - optional hook
        """The projector's plan changed."""

    @abstractmethod
    def __call__(self, weights: Tensors, scores: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """Masks by parameter name and the crossbars of each prunable layer."""


def _take(weights: Tensors, name: str, shape: torch.Size, what: str = "weights") -> torch.Tensor:
    try:
        w = weights[name]
    except KeyError:
        raise ValueError(f"{what} lack parameter {name!r}") from None
    if w.shape != shape:
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(w.shape)}")
    return w.detach()


def _ranked(weights: Tensors, scores: Tensors, name: str, shape: torch.Size) -> torch.Tensor:
    """The tensor ranked for ``name``: its score if given, else its weight (both checked)."""
    w = _take(weights, name, shape)
    return _take(scores, name, shape, "scores") if name in scores else w


class _LayerStrategy(_Strategy):
    """Layer-wise projection (every pattern but filter)."""

    def __init__(self, proj: Projector) -> None:
        self.proj = proj
        self.params = [f"{lay.name}.weight" for lay in proj.layers]
        self.allocator = LAYER_ALLOCATIONS.get(proj.target.allocation)(proj)

    def retarget(self) -> None:  # noqa: D102
        self.allocator.retarget()

    def __call__(self, weights: Tensors, scores: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:  # noqa: D102
        pairs = list(zip(self.proj.layers, self.params, strict=True))
        mats = {lay.name: lay.matrix(_ranked(weights, scores, pn, lay.weight_shape)) for lay, pn in pairs}
        layer_masks, budgets = self.allocator.allocate(mats)
        return {pn: lay.to_weight(layer_masks[lay.name]) for lay, pn in pairs}, budgets


class _FilterStrategy(_Strategy):
    """Network-level, dependency-aware filter pruning."""

    def __init__(self, proj: Projector, model: nn.Module, example_input: torch.Tensor) -> None:
        self.proj = proj
        self.graph = FilterGraph(model, example_input, protect=proj.kept_dense)
        modules = dict(model.named_modules())
        untouched = {f"{n}.{p}" for n in proj.kept_dense for p in own_parameters(modules[n])}
        self.params = [p for p in self.graph.params if p not in untouched]
        if proj.target.allocation not in FILTER_ALLOCATIONS:
            raise ConfigError(
                f"allocation {proj.target.allocation!r} is not available for the filter pattern; "
                f"choose one of: {', '.join(FILTER_ALLOCATIONS.names())}"
            )
        self.search = FILTER_ALLOCATIONS.get(proj.target.allocation)
        self.lowest = self.total(self.graph.remove_by_ratio(self.graph.importance(), 0.0))
        self.retarget()

    def retarget(self) -> None:  # noqa: D102
        plan = self.proj.plan
        if self.lowest > plan.network_budget:
            raise ConfigError(
                f"filter pruning cannot reach {plan.target_compression:g}x on "
                f"{plan.crossbar} crossbars (every channel group keeps one channel); "
                f"the highest reachable compression is {plan.cost_total / self.lowest:.3f}"
            )

    def layer_counts(self, removed: Sequence[torch.Tensor]) -> dict[str, int]:
        counts = self.graph.layer_counts(removed, self.proj.crossbar)
        return {lay.name: counts[lay.name] for lay in self.proj.layers}

    def total(self, removed: Sequence[torch.Tensor]) -> int | float:
        """Budget units (crossbars, or costs) of the network after ``removed``."""
        plan = self.proj.plan
        return plan.cost({n: plan.dense[n] for n in plan.kept_dense}) + plan.cost(self.layer_counts(removed))

    def __call__(self, weights: Tensors, scores: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:  # noqa: D102
        ranked = {name: _ranked(weights, scores, name, self.graph.shapes[name]) for name in self.params}
        importance = self.graph.importance({**scores, **ranked})
        removed = self.search(self, importance)
        masks = self.graph.masks(removed)
        out = {p: masks[p].to(weights[p].device) for p in self.params}
        return out, self.layer_counts(removed)


def _filter_uniform(
    strategy: _FilterStrategy, importance: list[torch.Tensor]
) -> list[torch.Tensor]:
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


def _filter_global(strategy: _FilterStrategy, importance: list[torch.Tensor]) -> list[torch.Tensor]:
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


#: Pattern name -> strategy of a pattern projected network-wide (built from the projector,
#: the model and an example input; it has ``params``, ``__call__(weights, scores)`` and
#: ``retarget()``). Other patterns are projected layer by layer.
NETWORK_STRATEGIES: Registry = Registry("network-level pattern")
NETWORK_STRATEGIES.add("filter", _FilterStrategy)


def _channel_subrow(proj: Projector, model: nn.Module, example_input: torch.Tensor) -> _Strategy:
    from pimprune.pruning.channel_blocks import ChannelSubrowStrategy

    return ChannelSubrowStrategy(proj, model, example_input)


NETWORK_STRATEGIES.add("subrow-channel", _channel_subrow)

#: How a budget of crossbars is counted (:attr:`PruneTarget.packing`).
PACKINGS = ("layer", "network")


class _NetworkPackedStrategy(_Strategy):
    """Sub-row segments ranked across the network against shared crossbars (``packing="network"``)."""

    def __init__(self, proj: Projector) -> None:
        self.proj = proj
        self.params = [f"{lay.name}.weight" for lay in proj.layers]

    def __call__(self, weights: Tensors, scores: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:  # noqa: D102
        from pimprune.mapping.network_budget import network_subrow_masks

        plan = self.proj.plan
        full = {f"{lay.name}.weight": lay.module.weight.detach() for lay in plan.all_layers}
        full.update({p: weights[p] for p in self.params})
        ranked = {p: _ranked(weights, scores, p, full[p].shape) for p in self.params}
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

#: Allocation name -> search for the filter pattern.
FILTER_ALLOCATIONS: Registry = Registry("filter allocation")
FILTER_ALLOCATIONS.add("uniform", _filter_uniform)
FILTER_ALLOCATIONS.add("global", _filter_global)


class Projector:
    """Projects a network's weights onto a :class:`PruneTarget` (ADMM Z-step and hard pruning).

    Args:
        model: The network; its weights are read at construction only for the
            ``global`` and ``filter`` allocations' first :attr:`budgets`.
        target: What to prune to.
        example_input: An input batch (tracing for ``filter``; e.g. ``torch.randn(1, 3, 32, 32)``).
        units_cache: A :class:`pimprune.pruning.patterns.UnitsCache` of the pattern, for
            callers that project the *same* weights many times (the design-space sweep on
            many geometries and budgets): the ``global`` allocation then reuses the sorted
            items of every layer. Never for weights that change between calls (training).

    Attributes:
        target: The target (:meth:`retarget` replaces its compression).
        pattern: The pattern instance.
        crossbar: The geometry.
        plan: The :class:`BudgetPlan` (layers, dense counts, costs, budgets); its
            attributes are also readable on the projector (``all_layers``, ``layers``,
            ``kept_dense``, ``dense_total``, ``kept_total``, ``network_budget``,
            ``prunable_budget``, ``prunable_dense``).
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
        self._strategy: _Strategy = (
            _NetworkPackedStrategy(self) if target.packing == "network"
            else _LayerStrategy(self) if network_level is None
            else network_level(self, model, example_input)
        )  # fmt: skip
        self.params: list[str] = list(self._strategy.params)
        self._silenced: dict[str, int] = {}
        if not self._fixed_budgets():
            self.project_model(model)

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
        ``filter`` at the next call. Gradual pruning re-targets at every mask update.

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
                must hold every name of :attr:`params` (others are ignored, except that
                ``filter`` reads the coupled slices of kept-dense layers from the
                model when they are not given).
            scores: Parameter name -> importance of every weight, the parameter's shape
                (as ``torch.nn.utils.prune``'s ``importance_scores``): the masks keep the
                units of most score energy. A parameter without a score is ranked by its
                weight; None ranks every parameter by its weight.
        """
        masks, budgets = self._strategy(weights, scores or {})
        self.budgets = budgets
        self._silenced = self._count_silenced(masks)
        return masks

    def project_model(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """:meth:`__call__` on the tensors the model's forward pass uses (masked, if masked)."""
        refs = logical_parameters(model)
        return self({name: getattr(*refs[name]).detach() for name in self.params})

    def silenced_outputs(self) -> dict[str, int]:
        """Layers of the latest call whose budget left outputs (columns) without any weight.

        Returns:
            Layer name -> number of output channels with no kept weight (only
            layers with at least one; kept-dense layers never appear). For
            ``filter`` these are the removed channels themselves.
        """
        return dict(self._silenced)

    def _count_silenced(self, masks: Tensors) -> dict[str, int]:
        out = {}
        for lay in self.plan.layers:
            mask = masks.get(f"{lay.name}.weight")
            if mask is None:
                continue
            n = int((~lay.matrix(mask).any(1)).sum())
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
