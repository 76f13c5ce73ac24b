"""Latency and throughput of a mapped network on a chip, layer by layer or pipelined (docs/hardware.md section 7).

The chip holds ``hw.chip_crossbars`` logical crossbars. A layer of ``L`` crossbars running ``M`` MVMs
of ``t`` ns takes ``ceil(M / r) * t`` with ``r`` copies of its crossbars. Layers that share crossbars
(network packing) form one stage that holds the union of their crossbars, and both execution models
copy a stage whole: the same hardware for the same weights. When the network fits, the free
crossbars hold copies (layer by layer: most time saved per crossbar first, or the pipeline's copies
when they give a lower latency; pipelined: the bottleneck stage, as ISAAC balances its pipeline);
when it does not, the weights are written pass by pass and nothing is copied. So layer by layer is
never slower per inference than pipelined (which buys throughput, not latency).
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pimprune.errors import ConfigError
from pimprune.hardware.config import HardwareConfig
from pimprune.numeric import cdiv
from pimprune.registry import Registry

__all__ = ["EXECUTION_MODELS", "Execution", "LatencyReport", "Stage", "latency", "network_latency", "sharing_groups"]

_NS_PER_US = 1e3
_NS_PER_S = 1e9


@dataclass(frozen=True)
class Stage:
    """Layers that run on the same crossbars (one layer, or a group that shares crossbars).

    Attributes:
        names: Its layers, in network order.
        crossbars: Crossbars one copy occupies (a group: the union of its members' crossbars
            when they are known, else its largest member's).
        mvms: MVMs per image of each layer.
        mvm_ns: Time of one MVM of each layer (ns).
    """

    names: tuple[str, ...]
    crossbars: int
    mvms: tuple[int, ...]
    mvm_ns: tuple[float, ...]

    def time_ns(self, copies: int = 1) -> float:
        """Time per image with ``copies`` copies of its crossbars (its layers in turn)."""
        return sum(cdiv(m, copies) * t for m, t in zip(self.mvms, self.mvm_ns, strict=True))

    @property
    def max_copies(self) -> int:
        """More copies than MVMs never help."""
        return max(1, max(self.mvms, default=1))

    def next_copies(self, copies: int) -> int:
        """Fewest copies above ``copies`` that shorten the stage (``ceil(M / r)`` falls)."""
        steps = [cdiv(m, cdiv(m, copies) - 1) for m in self.mvms if cdiv(m, copies) > 1]
        return min(steps, default=copies)


@dataclass
class Execution:
    """Latency and throughput of one execution model.

    Attributes:
        mode: Execution model name.
        latency_us: Latency per inference (us).
        throughput_ips: Inferences per second in steady state.
        copies: Stage (its first layer's name) -> copies of its crossbars.
        stage_us: Stage -> time per image (us).
        passes: Times the chip's weights are written per inference (1: all resident).
    """

    mode: str
    latency_us: float
    throughput_ips: float
    copies: dict[str, int] = field(default_factory=dict)
    stage_us: dict[str, float] = field(default_factory=dict)
    passes: int = 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "mode": self.mode,
            "latency_us": round(self.latency_us, 4),
            "throughput_ips": round(self.throughput_ips, 3),
            "passes": self.passes,
            "copies": {k: v for k, v in self.copies.items() if v != 1},
            "stage_us": {k: round(v, 4) for k, v in self.stage_us.items()},
        }


@dataclass
class LatencyReport:
    """Both execution models of one mapped network on one chip.

    Attributes:
        capacity: Logical crossbars the chip holds.
        occupied: Crossbars the network occupies (one copy of everything).
        executions: Execution model name -> result.
    """

    capacity: int
    occupied: int
    executions: dict[str, Execution]

    @property
    def fits(self) -> bool:
        """Every weight resident at once."""
        return self.occupied <= self.capacity

    def __getitem__(self, mode: str) -> Execution:
        return self.executions[mode]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "capacity_crossbars": self.capacity,
            "occupied_crossbars": self.occupied,
            "fits": self.fits,
            **{k: v.as_dict() for k, v in self.executions.items()},
        }


# --------------------------------------------------------------------------- replication


def _replicate_sum(stages: Sequence[Stage], spare: int) -> list[int]:
    """Copies that minimise the sum of stage times: best time saved per crossbar first."""
    copies = [1] * len(stages)

    def entry(i: int) -> tuple[float, int, int]:
        s = stages[i]
        nxt = s.next_copies(copies[i])
        saved = s.time_ns(copies[i]) - s.time_ns(nxt)
        return (-saved / max(1, (nxt - copies[i]) * s.crossbars), i, nxt)

    heap = [entry(i) for i, s in enumerate(stages) if s.crossbars > 0 and s.max_copies > 1]
    heapq.heapify(heap)
    while heap:
        neg, i, nxt = heapq.heappop(heap)
        cost = (nxt - copies[i]) * stages[i].crossbars
        if neg >= 0 or cost > spare:
            continue  # no saving, or no room for this stage: others may still fit
        copies[i] = nxt
        spare -= cost
        heapq.heappush(heap, entry(i))
    return copies


def _replicate_bottleneck(stages: Sequence[Stage], spare: int) -> list[int]:
    """Copies of the slowest stage while one fits (ISAAC's pipeline balancing)."""
    copies = [1] * len(stages)
    heap = [(-s.time_ns(), i) for i, s in enumerate(stages) if s.crossbars > 0]
    heapq.heapify(heap)
    while heap:
        _, i = heapq.heappop(heap)
        s = stages[i]
        nxt = s.next_copies(copies[i])
        cost = (nxt - copies[i]) * s.crossbars
        if nxt == copies[i] or cost > spare:
            break  # the bottleneck cannot get faster: more copies elsewhere do not help
        copies[i] = nxt
        spare -= cost
        heapq.heappush(heap, (-s.time_ns(copies[i]), i))
    return copies


# --------------------------------------------------------------------------- execution models


@dataclass
class _Plan:
    stages: list[Stage]  # one per layer, groups that share crossbars merged
    occupied: int
    capacity: int
    replicate: bool
    reprogram_ns: float

    @functools.cached_property
    def bottleneck(self) -> list[int]:
        """Copies of :func:`_replicate_bottleneck` in the free crossbars (the network fits)."""
        return _replicate_bottleneck(self.stages, self.capacity - self.occupied if self.replicate else 0)


def _execution(
    mode: str, stages: Sequence[Stage], copies: Sequence[int], latency_ns: float, period_ns: float, passes: int
) -> Execution:
    return Execution(
        mode=mode,
        latency_us=latency_ns / _NS_PER_US,
        throughput_ips=_NS_PER_S / period_ns if period_ns > 0 else math.inf,
        copies={s.names[0]: c for s, c in zip(stages, copies, strict=True)},
        stage_us={s.names[0]: s.time_ns(c) / _NS_PER_US for s, c in zip(stages, copies, strict=True)},
        passes=passes,
    )


def _layer_by_layer(plan: _Plan) -> Execution:
    """Layers in turn, each stage's crossbars copied into the free ones.

    Copies: the greedy of :func:`_replicate_sum`, or the pipeline's copies where they give a
    lower sum (the greedy is a knapsack heuristic); without room, a stage in turn per pass, or
    the pipeline's segments where they rewrite the chip less often. Either way never slower
    than :func:`_pipelined` on the same plan.
    """
    stages, k = plan.stages, plan.capacity
    if plan.occupied <= k:
        spare = k - plan.occupied if plan.replicate else 0
        best = None
        for copies in (_replicate_sum(stages, spare), plan.bottleneck):
            total = sum(s.time_ns(c) for s, c in zip(stages, copies, strict=True))
            if best is None or total < best[1]:
                best = (copies, total)
        return _execution("layer_by_layer", stages, best[0], best[1], best[1], 1)
    total, passes = 0.0, 0
    for s in stages:  # each stage in turn, its weights written for it; no copies
        rounds = max(1, cdiv(s.crossbars, k))
        total += rounds * (s.time_ns() + plan.reprogram_ns)
        passes += rounds
    segments = _segmented(plan)
    if segments[0] < total:
        total, passes = segments[0], segments[2]
    return _execution("layer_by_layer", stages, [1] * len(stages), total, total, passes)


def _segments(stages: Sequence[Stage], capacity: int) -> list[list[int]]:
    """Consecutive stages packed greedily into segments of at most ``capacity`` crossbars."""
    out: list[list[int]] = [[]]
    used = 0
    for i, s in enumerate(stages):
        if out[-1] and used + s.crossbars > capacity:
            out.append([])
            used = 0
        out[-1].append(i)
        used += s.crossbars
    return [seg for seg in out if seg]


def _segmented(plan: _Plan) -> tuple[float, float, int]:
    """``(latency, period, passes)`` in ns of consecutive segments that fit, run one after the other."""
    stages, k = plan.stages, plan.capacity
    latency_ns = period_ns = 0.0
    passes = 0
    for seg in _segments(stages, k):  # no copies: they would be rewritten every pass too
        rounds = max(1, cdiv(sum(stages[i].crossbars for i in seg), k))  # > 1 only for one oversized stage
        times = [rounds * stages[i].time_ns() for i in seg]
        latency_ns += sum(times) + rounds * plan.reprogram_ns
        period_ns += max(times)
        passes += rounds
    return latency_ns, period_ns, passes


def _pipelined(plan: _Plan) -> Execution:
    stages, k = plan.stages, plan.capacity
    if plan.occupied <= k:
        copies = plan.bottleneck
        times = [s.time_ns(c) for s, c in zip(stages, copies, strict=True)]
        return _execution("pipelined", stages, copies, sum(times), max(times, default=0.0), 1)
    latency_ns, period_ns, passes = _segmented(plan)
    return _execution("pipelined", stages, [1] * len(stages), latency_ns, period_ns, passes)


#: Execution models: name -> function of the plan.
EXECUTION_MODELS: Registry[Callable[[_Plan], Execution]] = Registry("execution model")
EXECUTION_MODELS.add("layer_by_layer", _layer_by_layer)
EXECUTION_MODELS.add("pipelined", _pipelined)


# --------------------------------------------------------------------------- public API


def _groups(names: Sequence[str], shared: Sequence[Collection[str]]) -> list[list[str]]:
    """Merge overlapping groups; every layer in exactly one group, in network order."""
    owner = {n: i for i, n in enumerate(names)}
    parent = list(range(len(names)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for group in shared:
        unknown = [n for n in group if n not in owner]
        if unknown:
            raise ConfigError(f"shared crossbar group names unknown layer(s) {', '.join(map(str, unknown))}")
        ids = [owner[n] for n in group]
        for i in ids[1:]:
            parent[find(i)] = find(ids[0])
    merged: dict[int, list[str]] = {}
    for i, n in enumerate(names):
        merged.setdefault(find(i), []).append(n)
    return sorted(merged.values(), key=lambda g: owner[g[0]])


def sharing_groups(crossbar_sets: Mapping[str, Collection[int]]) -> list[set[str]]:
    """Groups of layers that share a crossbar, directly or through others (sharing is transitive).

    Args:
        crossbar_sets: Layer name -> indices of the placement's crossbars holding it.

    Returns:
        The groups of two or more layers.
    """
    first: dict[int, str] = {}
    pairs: list[set[str]] = []
    for name, ks in crossbar_sets.items():
        for k in ks:
            other = first.setdefault(int(k), name)
            if other != name:
                pairs.append({other, name})
    return [set(g) for g in _groups(list(crossbar_sets), pairs) if len(g) > 1]


def _stages(
    crossbars: Mapping[str, int],
    mvms: Mapping[str, int],
    hw: HardwareConfig,
    cycles: Mapping[str, float],
    shared: Sequence[Collection[str]],
    crossbar_sets: Mapping[str, Collection[int]] | None,
) -> list[Stage]:
    """The stages of :func:`latency`: one per layer, layers sharing crossbars merged."""
    names = list(crossbars)
    if any(int(crossbars[n]) < 0 or int(mvms.get(n, 0)) < 0 for n in names):
        raise ConfigError("crossbar and MVM counts must be >= 0")
    sets = {n: {int(k) for k in crossbar_sets.get(n, ())} for n in names} if crossbar_sets is not None else None

    def stage(group: Sequence[str]) -> Stage:
        held = len(set().union(*(sets[n] for n in group))) if sets is not None else 0
        return Stage(
            names=tuple(group),
            crossbars=max(held, *(int(crossbars[n]) for n in group)),
            mvms=tuple(int(mvms.get(n, 0)) for n in group),
            mvm_ns=tuple(hw.input_cycles * float(cycles.get(n, hw.read_cycle_ns)) for n in group),
        )

    groups = [*shared, *(sharing_groups(sets) if sets is not None else [])]
    return [stage(g) for g in _groups(names, groups)]


def latency(
    crossbars: Mapping[str, int],
    mvms: Mapping[str, int],
    hw: HardwareConfig,
    *,
    cycle_ns: Mapping[str, float] | None = None,
    shared: Sequence[Collection[str]] = (),
    total_crossbars: int | None = None,
    crossbar_sets: Mapping[str, Collection[int]] | None = None,
) -> LatencyReport:
    """Latency and throughput per inference under every execution model.

    Args:
        crossbars: Layer name -> crossbars it occupies, in network order.
        mvms: Layer name -> MVMs per inference (:func:`pimprune.hardware.cost.layer_mvms`).
        hw: Hardware configuration (its ``chip``, ``input_cycles`` and ``read_cycle_ns``).
        cycle_ns: Layer name -> time of one read cycle of an MVM of the layer (ns): the read
            cycle of its slowest crossbar (:attr:`pimprune.hardware.cost.LayerCost.cycle_ns`),
            or, when a crossbar runs several activations of it in series, their sum
            (:mod:`pimprune.hardware.placement_cost`); default ``hw.read_cycle_ns``.
        shared: Groups of layer names that share crossbars (network packing): one stage
            each, its layers in turn (serialised in the pipeline).
        total_crossbars: Crossbars the network occupies, if known (network packing);
            default: the sum over stages.
        crossbar_sets: Layer name -> indices of the placement's crossbars holding it
            (network packing). Layers whose sets meet share a stage (transitively) and a
            stage holds the union of its members' crossbars. Without it a group of
            ``shared`` counts its largest member's crossbars (members on the same crossbars).

    Returns:
        Both execution models (``report["layer_by_layer"]``, ``report["pipelined"]``).

    Raises:
        ConfigError: on a negative count or a group naming an unknown layer.
    """
    stages = _stages(crossbars, mvms, hw, cycle_ns or {}, shared, crossbar_sets)
    occupied = int(total_crossbars) if total_crossbars is not None else sum(s.crossbars for s in stages)
    plan = _Plan(
        stages=stages,
        occupied=occupied,
        capacity=hw.chip_crossbars,
        replicate=hw.chip.replicate,
        reprogram_ns=hw.chip.reprogram_us_per_pass * _NS_PER_US,
    )
    if plan.capacity < 1:
        raise ConfigError(
            f"the chip holds no logical crossbar: chip.arrays_per_tile ({hw.chip.arrays_per_tile}) is below "
            f"the {hw.physical_arrays} physical arrays of one"
        )
    return LatencyReport(plan.capacity, occupied, {m: EXECUTION_MODELS.get(m)(plan) for m in EXECUTION_MODELS})


def network_latency(
    cost: Any,
    hw: HardwareConfig,
    *,
    shared: Sequence[Collection[str]] = (),
    total_crossbars: int | None = None,
) -> LatencyReport:
    """:func:`latency` of a :class:`pimprune.hardware.cost.NetworkCost` (its counts, MVMs and cycles)."""
    return latency(
        {lc.name: lc.crossbars for lc in cost.layers},
        {lc.name: lc.mvms for lc in cost.layers},
        hw,
        cycle_ns={lc.name: lc.cycle_ns for lc in cost.layers},
        shared=shared,
        total_crossbars=total_crossbars,
    )
