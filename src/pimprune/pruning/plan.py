"""What a :class:`~pimprune.pruning.target.PruneTarget` means for a model: :class:`BudgetPlan`.

The plan holds the bookkeeping every allocation shares: which layers are prunable,
their dense counts and per-crossbar costs, and the budget the target allows. The
guarantee of a projection is ``kept-dense count + pruned count <= network_budget``
(in cost units with ``unit_costs``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import nn

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import dense_count
from pimprune.mapping.matrices import LayerMatrix, extract_layers
from pimprune.numeric import budget_of, check_target_compression
from pimprune.pruning.target import PruneTarget, resolve_keep_dense


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
            resolve_keep_dense(target.keep_dense, layers),
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
