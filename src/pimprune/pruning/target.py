"""What to prune to: :class:`PruneTarget` (pattern, crossbar, target compression, allocation).

The target compression is the dense crossbar count of the unpruned network over
the count after pruning (``docs/design.md`` section 4). How the network budget is
shared among layers is the allocation (:mod:`pimprune.pruning.allocation`):
``uniform`` (pro rata to the dense counts), ``global`` (units of all layers ranked
together) or ``file`` (per-layer budgets from YAML). Layers in ``keep_dense``
(default: the first conv and the classifier) are never touched and count dense.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.matrices import LayerMatrix
from pimprune.numeric import check_target_compression
from pimprune.pruning.patterns import PATTERNS

#: Ways of sharing the network budget among layers.
ALLOCATIONS: tuple[str, ...] = ("uniform", "global", "file")

#: How a budget of crossbars is counted (:attr:`PruneTarget.packing`).
PACKINGS = ("layer", "network")

#: What the ``global`` allocation keeps whatever the budget (:attr:`PruneTarget.guard`).
GUARD_LAYER, GUARD_OUTPUTS = "layer", "outputs"
GUARDS: tuple[str, ...] = (GUARD_LAYER, GUARD_OUTPUTS)

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
            layers (a ratio, ``>= 1``); with ``unit_costs``, dense cost / pruned cost.
        allocation: ``"uniform"``, ``"global"`` or ``"file"``.
        budgets_file: YAML file of per-layer budgets (allocation ``"file"`` only).
        keep_dense: Layers kept dense and untouched: ``"first"`` (first conv),
            ``"last"`` (the classifier, the last mapped layer) or layer names.
        keep_every_layer: With ``global`` allocation, every prunable layer keeps its
            best unit, and every chain of a pattern whose chains are output groups
            keeps its first unit, so no output group is silenced while the budget allows
            (a single-crossbar layer such as a 1x1 shortcut would otherwise go first).
        normalize_layers: With ``global`` allocation, divide each layer's unit gains by
            the layer's mean energy per dense crossbar (each ``filter`` group's channel
            importances by their mean). Off for scores already comparable across layers
            (the ``fisher`` saliency).
        unit_costs: Layer name -> cost of one crossbar of that layer (positive; layers
            not listed cost 1). None: every crossbar costs 1. ``global`` allocation only.
        packing: How the budget is counted (``docs/design.md`` section 4): ``"layer"``
            (every layer on crossbars of its own) or ``"network"`` (crossbars shared by
            all layers, :mod:`pimprune.pruning.network_budget`; ``subrow`` with the
            ``global`` allocation only).
        guard: What the ``global`` allocation keeps before anything else: ``"layer"``
            (``keep_every_layer``: one unit per layer, or per chain where chains are
            output groups) or ``"outputs"`` (one unit per output group, so no output is
            silenced: for ``crossbar``, the best tile of every column block; patterns
            without output groups refuse it). Layer-wise patterns only.
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
    guard: str = GUARD_LAYER

    def __post_init__(self) -> None:
        PATTERNS.get(self.pattern)  # raises UnknownNameError
        _check_guard(self.guard, self.pattern, self.allocation)
        if self.packing not in PACKINGS:
            raise ConfigError(f"unknown packing {self.packing!r}; choose one of: {', '.join(PACKINGS)}")
        if self.packing == "network" and (self.unit_costs is not None or self.allocation == "file"):
            raise ConfigError(
                "a network-packing budget counts shared crossbars only: drop --objective and the budgets file "
                "(or use --packing layer)"
            )
        if self.packing == "network" and self.pattern == "subrow" and self.allocation != "global":
            raise ConfigError("a network-packing sub-row budget ranks segments across the network: use "
                              "--allocation global (or --packing layer)")
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


def _check_guard(guard: str, pattern: str, allocation: str) -> None:
    if guard not in GUARDS:
        raise ConfigError(f"unknown guard {guard!r}; choose one of: {', '.join(GUARDS)}")
    if guard == GUARD_OUTPUTS and allocation != "global":
        raise ConfigError("the outputs guard is a rule of the global allocation: use --allocation global "
                          "(or --guard layer)")
    if guard == GUARD_OUTPUTS and not PATTERNS.get(pattern).guards_outputs:
        able = ", ".join(n for n in PATTERNS.names() if PATTERNS.get(n).guards_outputs)
        raise ConfigError(f"pattern {pattern!r} has no output groups to guard; --guard outputs takes: {able}")


def _check_costs(costs: Mapping[str, float], allocation: str) -> dict[str, float]:
    if allocation != "global":
        raise ConfigError(f"unit costs weight the global allocation; got allocation {allocation!r}")
    out = {}
    for name, c in costs.items():
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not (math.isfinite(c) and c > 0):
            raise ConfigError(f"unit cost of {name!r} must be a finite number > 0, got {c!r}")
        out[str(name)] = float(c)
    return out


def resolve_keep_dense(keep: Sequence[str], layers: Sequence[LayerMatrix]) -> tuple[str, ...]:
    """Names of the layers ``keep`` selects (``first``, ``last`` or names), in order, without repeats.

    Raises:
        ConfigError: if an item is neither an alias nor a mapped layer.
    """
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
