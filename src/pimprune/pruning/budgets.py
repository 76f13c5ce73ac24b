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
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import dense_count
from pimprune.mapping.matrices import LayerMatrix, extract_layers
from pimprune.pruning.dependency import FilterGraph, logical_parameters, own_parameters
from pimprune.pruning.patterns import PATTERNS, Pattern, Units, get_pattern, greedy_select
from pimprune.registry import Registry

#: Ways of sharing the network budget among layers.
ALLOCATIONS: tuple[str, ...] = ("uniform", "global", "file")

#: Aliases accepted in ``keep_dense``.
KEEP_FIRST = "first"
KEEP_LAST = "last"


@dataclass
class PruneTarget:
    """What to prune to.

    Attributes:
        pattern: Pattern name (see :data:`pimprune.pruning.patterns.PATTERNS`).
        crossbar: Crossbar geometry (a :class:`Crossbar` or ``"RxC"``).
        target_compression: Dense crossbars / pruned crossbars over all mapped
            layers (a ratio, ``>= 1``).
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
            channel importances by their mean). Turn it off when the weights given
            to the projector are already in units comparable across layers (the
            ``fisher`` saliency, :mod:`pimprune.pruning.saliency`).
    """

    pattern: str
    crossbar: Crossbar
    target_compression: float
    allocation: str = "uniform"
    budgets_file: str | None = None
    keep_dense: tuple[str, ...] = (KEEP_FIRST, KEEP_LAST)
    keep_every_layer: bool = True
    normalize_layers: bool = True

    def __post_init__(self) -> None:
        PATTERNS.get(self.pattern)  # raises UnknownNameError
        self.crossbar = Crossbar.parse(self.crossbar)
        t = self.target_compression
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 1:
            raise ConfigError(
                f"target compression must be a finite number >= 1 (dense/pruned crossbars), "
                f"got {t!r}"
            )
        self.target_compression = float(t)
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


def _network_budget(dense_total: int, target: float) -> int:
    return int(math.floor(dense_total / target * (1 + 1e-12)))


def _resolve_keep_dense(keep: Sequence[str], layers: list[LayerMatrix]) -> tuple[str, ...]:
    names = [lay.name for lay in layers]
    convs = [lay.name for lay in layers if lay.kind == "conv"]
    aliases = {
        KEEP_FIRST: (convs or names)[:1],
        KEEP_LAST: names[-1:],
    }
    out: list[str] = []
    for item in keep:
        if item in aliases:
            out.extend(aliases[item])
        elif item in names:
            out.append(item)
        else:
            raise ConfigError(
                f"keep_dense: {item!r} is not a mapped layer; use 'first', 'last' or one of: "
                f"{', '.join(names)}"
            )
    return tuple(dict.fromkeys(out))


def _energy(matrix: torch.Tensor) -> float:
    m = matrix.detach().to(torch.float64)
    return float((m * m).sum())


class _Strategy(ABC):
    """How masks are computed for one projector (layer-wise patterns or network-level filter)."""

    params: list[str]

    @abstractmethod
    def __call__(
        self, weights: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """Masks by parameter name and the crossbars of each prunable layer."""


class _LayerStrategy(_Strategy):
    """Layer-wise projection (every pattern but filter)."""

    def __init__(self, proj: Projector) -> None:
        self.proj = proj
        self.pattern: Pattern = proj.pattern
        self.params = [f"{lay.name}.weight" for lay in proj.layers]
        self.allocator = LAYER_ALLOCATIONS.get(proj.target.allocation)(proj)

    def __call__(
        self, weights: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        mats = {}
        for lay, pname in zip(self.proj.layers, self.params, strict=True):
            mats[lay.name] = lay.matrix(_take(weights, pname, lay.weight_shape))
        layer_masks, budgets = self.allocator.allocate(mats)
        masks = {
            pname: lay.to_weight(layer_masks[lay.name])
            for lay, pname in zip(self.proj.layers, self.params, strict=True)
        }
        return masks, budgets


def _take(weights: Mapping[str, torch.Tensor], name: str, shape: torch.Size) -> torch.Tensor:
    try:
        w = weights[name]
    except KeyError:
        raise ValueError(f"weights lack parameter {name!r}") from None
    if w.shape != shape:
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(w.shape)}")
    return w.detach()


class _Allocator(ABC):
    def __init__(self, proj: Projector) -> None:
        self.proj = proj

    @abstractmethod
    def allocate(
        self, mats: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """``(g, M, N)`` masks and crossbar budget per prunable layer."""


class _FixedAllocator(_Allocator):
    """Budgets fixed once; every call projects each layer alone."""

    budgets: dict[str, int]

    def allocate(
        self, mats: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        p, x = self.proj.pattern, self.proj.crossbar
        return {n: p.project(m, x, self.budgets[n]) for n, m in mats.items()}, dict(self.budgets)


#: Allocation name -> allocator for layer-wise patterns.
LAYER_ALLOCATIONS: Registry[type[_Allocator]] = Registry("allocation")


@LAYER_ALLOCATIONS.register("uniform")
class _UniformAllocator(_FixedAllocator):
    def __init__(self, proj: Projector) -> None:
        super().__init__(proj)
        self.budgets = proportional_budgets(proj.prunable_dense, proj.prunable_budget)


@LAYER_ALLOCATIONS.register("file")
class _FileAllocator(_FixedAllocator):
    def __init__(self, proj: Projector) -> None:
        super().__init__(proj)
        dense = proj.prunable_dense
        kept = set(proj.kept_dense)
        path = str(proj.target.budgets_file)
        listed = load_budgets_file(path, {**dense, **{n: 0 for n in kept}})
        in_kept = [n for n in listed if n in kept]
        if in_kept:
            raise ConfigError(
                f"budgets file {path!r} lists kept-dense layer(s) {', '.join(in_kept)}; "
                "remove them from the file or from keep_dense"
            )
        used = sum(listed.values())
        if used > proj.prunable_budget:
            reach = proj.dense_total / max(1, used + proj.kept_total)
            raise ConfigError(
                f"budgets file {path!r} asks for {used} crossbars (+{proj.kept_total} kept dense) "
                f"but target {proj.target.target_compression:g}x allows {proj.network_budget}; "
                f"lower the budgets or set the target to at most {reach:.3f}"
            )
        missing = {n: d for n, d in dense.items() if n not in listed}
        self.budgets = {**listed, **proportional_budgets(missing, proj.prunable_budget - used)}
        self.budgets = {n: self.budgets[n] for n in dense}


@LAYER_ALLOCATIONS.register("global")
class _GlobalAllocator(_Allocator):
    def allocate(
        self, mats: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        p, x = self.proj.pattern, self.proj.crossbar
        units: dict[str, Units] = {n: p.units(m, x) for n, m in mats.items()}
        gains, costs, chains, positions = [], [], [], []
        offset = 0
        for n, u in units.items():
            energy = _energy(mats[n]) if self.proj.target.normalize_layers else 0.0
            scale = self.proj.prunable_dense[n] / energy if energy > 0 else 1.0
            gains.append(u.gains * scale)
            costs.append(u.costs)
            chains.append(u.chain + offset)
            positions.append(u.position)
            offset += u.n_chains
        if self.proj.target.keep_every_layer and gains:
            # the best first unit of every layer outranks everything else
            boost = float(sum(float(g.sum()) for g in gains)) + 1.0
            every_chain = p.chain_is_output_group
            for g, pos in zip(gains, positions, strict=True):
                first = torch.nonzero(pos == 0).flatten()
                if len(first):
                    keep = first if every_chain else first[torch.argmax(g[first])].reshape(1)
                    g[keep] = g[keep] + boost
        selected = greedy_select(
            torch.cat(gains),
            torch.cat(costs),
            torch.cat(chains),
            torch.cat(positions),
            self.proj.prunable_budget,
        )
        masks, budgets = {}, {}
        start = 0
        for n, u in units.items():
            sel = selected[start : start + len(u)]
            start += len(u)
            masks[n] = u.mask(sel)
            budgets[n] = u.cost_of(sel)
        return masks, budgets


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
        lowest = self.total(self.graph.remove_by_ratio(self.graph.importance(), 0.0))
        if lowest > proj.network_budget:
            raise ConfigError(
                f"filter pruning cannot reach {proj.target.target_compression:g}x on "
                f"{proj.crossbar} crossbars (every channel group keeps one channel); "
                f"the highest reachable compression is {proj.dense_total / lowest:.3f}"
            )

    def layer_counts(self, removed: Sequence[torch.Tensor]) -> dict[str, int]:
        counts = self.graph.layer_counts(removed, self.proj.crossbar)
        return {lay.name: counts[lay.name] for lay in self.proj.layers}

    def total(self, removed: Sequence[torch.Tensor]) -> int:
        return self.proj.kept_total + sum(self.layer_counts(removed).values())

    def __call__(
        self, weights: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        for name in self.params:
            _take(weights, name, self.graph.shapes[name])
        importance = self.graph.importance(weights)
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

    Attributes:
        target: The target.
        pattern: The pattern instance.
        crossbar: The geometry.
        all_layers: Every mapped layer.
        layers: The prunable layers (mapped layers not kept dense).
        kept_dense: Names of the layers kept dense and untouched.
        dense_total: Dense crossbars of the unpruned network (all mapped layers).
        kept_total: Dense crossbars of the kept-dense layers.
        network_budget: ``floor(dense_total / target_compression)`` crossbars.
        prunable_budget: ``network_budget - kept_total``: what the prunable layers may use.
        prunable_dense: Dense count of each prunable layer.
        params: Parameter names the projector masks (exactly the keys of its result).
        budgets: Crossbars of each prunable layer: the fixed budgets (uniform, file) or
            those of the latest call (global, filter).

    Raises:
        ConfigError: when the target cannot be reached (kept-dense layers alone, or
            filter pruning at its limit, exceed it) or the budgets file is invalid.
    """

    def __init__(self, model: nn.Module, target: PruneTarget, example_input: torch.Tensor) -> None:
        self.target = target
        self.pattern = get_pattern(target.pattern)
        self.crossbar = target.crossbar
        self.all_layers = extract_layers(model)
        if not self.all_layers:
            raise ConfigError("the model has no Conv2d or Linear layer to prune")
        self.kept_dense = _resolve_keep_dense(target.keep_dense, self.all_layers)
        self.layers = [lay for lay in self.all_layers if lay.name not in self.kept_dense]
        dense = {
            lay.name: dense_count(lay.rows, lay.cols, lay.groups, self.crossbar)
            for lay in self.all_layers
        }
        self.dense_total = sum(dense.values())
        self.kept_total = sum(dense[n] for n in self.kept_dense)
        self.prunable_dense = {lay.name: dense[lay.name] for lay in self.layers}
        self.network_budget = _network_budget(self.dense_total, target.target_compression)
        self.prunable_budget = self.network_budget - self.kept_total
        if self.prunable_budget < 0:
            raise ConfigError(
                f"the kept-dense layers ({', '.join(self.kept_dense)}) alone need "
                f"{self.kept_total} of the {self.network_budget} crossbars that "
                f"{target.target_compression:g}x allows on {self.crossbar}; the highest reachable "
                f"compression is {self.dense_total / self.kept_total:.3f} "
                "(or keep fewer layers dense)"
            )
        self._strategy: _Strategy = (
            _FilterStrategy(self, model, example_input)
            if self.pattern.name == "filter"
            else _LayerStrategy(self)
        )
        self.params: list[str] = list(self._strategy.params)
        self._silenced: dict[str, int] = {}
        fixed = getattr(getattr(self._strategy, "allocator", None), "budgets", None)
        if fixed is not None:
            self.budgets: dict[str, int] = dict(fixed)
        else:
            self.project_model(model)

    def __call__(self, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Boolean masks, by parameter name, for exactly :attr:`params`.

        Args:
            weights: Parameter name -> tensor of the parameter's shape (e.g. ``W+U``);
                must hold every name of :attr:`params` (others are ignored, except that
                ``filter`` reads the coupled slices of kept-dense layers from the
                model when they are not given).
        """
        masks, budgets = self._strategy(weights)
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

    def _count_silenced(self, masks: Mapping[str, torch.Tensor]) -> dict[str, int]:
        out = {}
        for lay in self.layers:
            mask = masks.get(f"{lay.name}.weight")
            if mask is None:
                continue
            n = int((~lay.matrix(mask).any(1)).sum())
            if n:
                out[lay.name] = n
        return out

    def layer_crossbars(self, masks: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Crossbars of every mapped layer under the target's rules for ``masks``.

        Kept-dense layers and layers without a mask count dense; the others
        count :meth:`pimprune.pruning.patterns.Pattern.cost` of their weight mask.
        """
        out = {}
        for lay in self.all_layers:
            mask = masks.get(f"{lay.name}.weight")
            if lay.name in self.kept_dense or mask is None:
                out[lay.name] = dense_count(lay.rows, lay.cols, lay.groups, self.crossbar)
            else:
                out[lay.name] = self.pattern.cost(lay.matrix(mask), self.crossbar)
        return out

    def total_crossbars(self, masks: Mapping[str, torch.Tensor]) -> int:
        """Sum of :meth:`layer_crossbars` (at most :attr:`network_budget` for our masks)."""
        return sum(self.layer_crossbars(masks).values())
