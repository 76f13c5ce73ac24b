"""How the network budget is shared among layer-wise pruned layers: the allocators.

``uniform`` gives every prunable layer a budget pro rata to its dense count
(largest remainder); ``global`` ranks the units of all layers together
(:func:`pimprune.pruning.ranking.rank_units`) and takes them best gain per crossbar
first; ``file`` reads per-layer budgets from YAML (``3``, ``{crossbars: 3}``,
``"4x"`` or ``{compression: 4}``), the layers not listed sharing the rest uniformly.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import torch
import yaml

from pimprune.errors import ConfigError
from pimprune.pruning.ranking import Ranking, Tensors, layer_scales, output_guard, rank_units
from pimprune.pruning.target import GUARD_OUTPUTS
from pimprune.registry import Registry


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


class Allocator(ABC):
    """Masks and per-layer crossbars of the prunable layers, from their ranked matrices.

    Args:
        proj: The :class:`~pimprune.pruning.projector.Projector` it allocates for.
    """

    def __init__(self, proj) -> None:
        self.proj = proj

    def retarget(self) -> None:  # noqa: B027 - optional hook
        """The projector's plan changed: recompute what depends on the budget."""

    @abstractmethod
    def allocate(self, mats: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """``(g, M, N)`` masks and crossbar count per prunable layer."""


class FixedAllocator(Allocator):
    """Budgets fixed per target (:attr:`budgets`); every call projects each layer alone."""

    budgets: dict[str, int]

    def __init__(self, proj) -> None:
        super().__init__(proj)
        self.retarget()

    def allocate(self, mats: Tensors) -> tuple[dict[str, torch.Tensor], dict[str, int]]:  # noqa: D102
        p, x = self.proj.pattern, self.proj.crossbar
        return {n: p.project(m, x, self.budgets[n]) for n, m in mats.items()}, dict(self.budgets)


#: Allocation name -> allocator for layer-wise patterns.
LAYER_ALLOCATIONS: Registry[type[Allocator]] = Registry("allocation")


@LAYER_ALLOCATIONS.register("uniform")
class UniformAllocator(FixedAllocator):
    """Budgets pro rata to the dense counts."""

    def retarget(self) -> None:  # noqa: D102
        plan = self.proj.plan
        self.budgets = proportional_budgets(plan.prunable_dense, plan.prunable_budget)


@LAYER_ALLOCATIONS.register("file")
class FileAllocator(FixedAllocator):
    """Budgets of the target's YAML file; unlisted layers share the rest uniformly."""

    def __init__(self, proj) -> None:
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


@LAYER_ALLOCATIONS.register("global")
class GlobalAllocator(Allocator):
    """Units of every prunable layer ranked together, best gain per crossbar first."""

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
        units = {n: (p.units(m, x) if cache is None else cache.units(n, m, x)) for n, m in mats.items()}
        guarded = None
        if target.guard == GUARD_OUTPUTS:
            guarded = {n: output_guard(u, p.output_groups(u, tuple(mats[n].shape), x)) for n, u in units.items()}
        return rank_units(
            units,
            layer_scales(mats, plan, target.normalize_layers, None if cache is None else cache.energy),
            keep_every_layer=target.keep_every_layer or guarded is not None,
            every_chain=p.chain_is_output_group,
            unit_costs=plan.costs if plan.weighted else None,
            guarded=guarded,
        )
