"""The chip's hierarchy and the tiles a mapped network takes.

docs/hardware.md, "What sharing costs and what tiles cost", has the equations.

Physical arrays are grouped into processing elements (ISAAC: IMAs; NeuroSim: PEs), PEs into tiles
and tiles into a chip (:class:`pimprune.hardware.components.ChipLayout`). A logical ``RxC`` crossbar
takes :attr:`~pimprune.hardware.config.HardwareConfig.physical_arrays` arrays, so a tile holds
``floor(arrays_per_tile / P)`` logical crossbars. How the layers take tiles is a policy:

``tile-per-layer``
    Every stage (a layer, or a group of layers sharing crossbars under network packing) takes
    whole tiles of its own: ``sum_s ceil(L_s / T)``. ISAAC maps so, and NeuroSim V1.4 always
    gives a layer whole tiles and never shares one between layers (NeuroSim's Chip.cpp
    ``OverallEachLayer``; docs/hardware.md section 11).
``shared``
    Layers are packed into common tiles: ``ceil(L / T)``.

Area is reported two ways: the **occupied** crossbars built in full (the paper's metric,
:func:`pimprune.hardware.cost.network_cost`) and the **built** tiles, ``tiles x tile area``: a
tile's crossbar slots that no layer uses are still built. So pruning a small network, whose
layers each take a fraction of a tile, saves little built area under ``tile-per-layer``; the
``shared`` policy recovers it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.hardware.components import TILE_POLICIES
from pimprune.hardware.config import HardwareConfig, merge_fields
from pimprune.hardware.cost import crossbar_area_um2
from pimprune.numeric import cdiv
from pimprune.registry import Registry

__all__ = [
    "CHIP_PRESETS",
    "ChipUsage",
    "chip_layout",
    "chip_preset",
    "chip_report",
    "chip_usage",
    "crossbars_per_pe",
    "crossbars_per_tile",
    "neurosim_tile_design",
    "tiles_needed",
]

_UM2_PER_MM2 = 1e6

#: Chip hierarchies: name -> the ``chip`` fields it sets (:func:`chip_preset`).
CHIP_PRESETS: Registry[Mapping[str, Any]] = Registry("chip preset")
#: ISAAC (Shafiee et al., ISCA 2016): 8 arrays per IMA, 12 IMAs per tile, 168 tiles per chip.
CHIP_PRESETS.add("isaac", {"tiles": 168, "arrays_per_tile": 96, "arrays_per_pe": 8, "tile_policy": "tile-per-layer"})
#: DNN+NeuroSim V1.4 defaults (Chip.cpp ``ChipDesignInitialize``; docs/hardware.md section 11): sub-arrays of
#: ``rows x 128`` cells, a conventionally mapped tile of at least ``4R x 4R`` cells (at 128 rows 512x512 =
#: 16 sub-arrays, the preset's); a layer always takes whole tiles. NeuroSim grows the tile with the network's
#: widest layer (:func:`neurosim_tile_design` gives its choice). NeuroSim builds as many tiles
#: as the network needs; 1008 tiles hold ISAAC's 16128 arrays, so latency stays comparable.
CHIP_PRESETS.add(
    "neurosim", {"tiles": 1008, "arrays_per_tile": 16, "arrays_per_pe": 4, "tile_policy": "tile-per-layer"}
)


def chip_preset(hw: HardwareConfig, name: str) -> HardwareConfig:
    """``hw`` with the chip hierarchy of preset ``name`` (:data:`CHIP_PRESETS`), the rest unchanged.

    Raises:
        UnknownNameError: if there is no such preset.
    """
    chip = merge_fields(type(hw.chip), hw.chip, dict(CHIP_PRESETS.get(name)), "chip.")
    return dataclasses.replace(hw, chip=chip)


def crossbars_per_tile(hw: HardwareConfig) -> int:
    """Logical crossbars one tile holds: ``floor(arrays_per_tile / physical_arrays)``.

    Raises:
        ConfigError: if a tile cannot hold one logical crossbar.
    """
    per_tile = hw.chip.arrays_per_tile // hw.physical_arrays
    if per_tile < 1:
        raise ConfigError(
            f"a tile of {hw.chip.arrays_per_tile} arrays (chip.arrays_per_tile) cannot hold one logical "
            f"crossbar of {hw.physical_arrays} physical arrays"
        )
    return per_tile


def crossbars_per_pe(hw: HardwareConfig) -> float:
    """Logical crossbars per PE (ISAAC: one 8-array IMA holds one crossbar of 8 slices; may be a fraction)."""
    return hw.chip.arrays_per_pe / hw.physical_arrays


def tiles_needed(stage_crossbars: Sequence[int], hw: HardwareConfig, policy: str | None = None) -> int:
    """Tiles that stages of ``stage_crossbars`` logical crossbars take under ``policy``.

    Args:
        stage_crossbars: Crossbars of each stage: a layer under per-layer mapping, a group of
            layers sharing crossbars under network packing (its crossbars counted once).
        hw: Hardware configuration (its ``chip``).
        policy: A name of :data:`pimprune.hardware.components.TILE_POLICIES` (default: ``hw.chip.tile_policy``).

    Raises:
        ConfigError: on an unknown policy or a negative count.
    """
    policy = hw.chip.tile_policy if policy is None else policy
    if policy not in TILE_POLICIES:
        raise ConfigError(f"tile policy must be one of {', '.join(TILE_POLICIES)}, got {policy!r}")
    counts = [int(c) for c in stage_crossbars]
    if any(c < 0 for c in counts):
        raise ConfigError("stage crossbar counts must be >= 0")
    per_tile = crossbars_per_tile(hw)
    if policy == "shared":
        return int(cdiv(sum(counts), per_tile))
    return sum(int(cdiv(c, per_tile)) for c in counts)


@dataclass(frozen=True)
class ChipUsage:
    """The tiles a mapped network takes under one policy, and its area both ways.

    Attributes:
        policy: Tile policy.
        crossbars: Logical crossbars the network occupies.
        crossbars_per_tile: Logical crossbars per tile.
        tiles: Tiles it takes.
        tile_area_mm2: Area of one built tile: its crossbar slots built in full plus its periphery.
        occupied_area_mm2: Area of the occupied crossbars (with index and adders): the paper's metric.
        built_area_mm2: ``occupied + free crossbar slots of its tiles + tile periphery``.
    """

    policy: str
    crossbars: int
    crossbars_per_tile: int
    tiles: int
    tile_area_mm2: float
    occupied_area_mm2: float
    built_area_mm2: float

    @property
    def utilisation(self) -> float:
        """Occupied share of the crossbar slots of its tiles."""
        slots = self.tiles * self.crossbars_per_tile
        return self.crossbars / slots if slots else 1.0


def _crossbar_um2(hw: HardwareConfig, xbar: Crossbar) -> float:
    """Built area of one logical crossbar (no index), um^2."""
    return float(sum(crossbar_area_um2(hw, xbar, [xbar.rows], [xbar.cols]).values()))


def chip_usage(
    stage_crossbars: Sequence[int],
    hw: HardwareConfig,
    xbar: Crossbar | str,
    occupied_area_mm2: float,
    policy: str | None = None,
) -> ChipUsage:
    """Tiles and area of a mapped network under one tile policy.

    Args:
        stage_crossbars: Crossbars of each stage (see :func:`tiles_needed`); their sum is the occupied count.
        hw: Hardware configuration.
        xbar: Crossbar geometry.
        occupied_area_mm2: Area of the occupied crossbars, index and adders included.
        policy: Tile policy (default ``hw.chip.tile_policy``).
    """
    xbar = Crossbar.parse(xbar)
    policy = hw.chip.tile_policy if policy is None else policy
    tiles = tiles_needed(stage_crossbars, hw, policy)
    per_tile = crossbars_per_tile(hw)
    one = _crossbar_um2(hw, xbar)
    occupied = sum(int(c) for c in stage_crossbars)
    free_slots = tiles * per_tile - occupied
    built = occupied_area_mm2 + (free_slots * one + tiles * hw.chip.tile_periphery_um2) / _UM2_PER_MM2
    tile_area = (per_tile * one + hw.chip.tile_periphery_um2) / _UM2_PER_MM2
    return ChipUsage(policy, occupied, per_tile, tiles, tile_area, float(occupied_area_mm2), built)


def chip_layout(hw: HardwareConfig, xbar: Crossbar | str) -> dict[str, Any]:
    """The chip's hierarchy for ``xbar`` crossbars (the shared part of :func:`chip_report`)."""
    xbar = Crossbar.parse(xbar)
    per_tile = crossbars_per_tile(hw)
    return {
        "policy": hw.chip.tile_policy,
        "arrays_per_pe": hw.chip.arrays_per_pe,
        "arrays_per_tile": hw.chip.arrays_per_tile,
        "crossbars_per_tile": per_tile,
        "tile_area_mm2": round((per_tile * _crossbar_um2(hw, xbar) + hw.chip.tile_periphery_um2) / _UM2_PER_MM2, 6),
    }


def chip_report(
    stage_crossbars: Sequence[int], hw: HardwareConfig, xbar: Crossbar | str, occupied_area_mm2: float
) -> dict[str, Any]:
    """Tiles and area of one mapped network under every tile policy (JSON-ready).

    Returns:
        ``{"crossbars", "area_occupied_mm2", "tiles": {policy: n}, "area_built_mm2": {policy: mm^2},
        "utilisation": {policy: occupied share of the tiles' crossbar slots}}``.
    """
    usages = {p: chip_usage(stage_crossbars, hw, xbar, occupied_area_mm2, p) for p in TILE_POLICIES}
    first = usages[TILE_POLICIES[0]]
    return {
        "crossbars": first.crossbars,
        "area_occupied_mm2": round(first.occupied_area_mm2, 6),
        "tiles": {p: u.tiles for p, u in usages.items()},
        "area_built_mm2": {p: round(u.built_area_mm2, 6) for p, u in usages.items()},
        "utilisation": {p: round(u.utilisation, 4) for p, u in usages.items()},
    }


def neurosim_tile_design(shapes: Sequence[tuple[int, int]], rows: int, cols_per_weight: int = 8) -> tuple[int, int]:
    """NeuroSim V1.4's conventionally mapped tiles for layers of ``(M, N)`` weight matrices.

    NeuroSim sizes a square tile of ``side x side`` cells from the network (``Chip.cpp``,
    ``ChipDesignInitialize`` and ``TileDesignCM``): the candidates are ``S0 = max(2^ceil(log2(N_max * b)),
    4 R)`` and its halvings down to (not including) ``4 R``, ``b`` columns per weight; a layer takes
    ``ceil(M / side) * ceil(b N / side)`` tiles of its own (tile per layer), and the side with the
    highest utilisation (cells of the matrices over cells of the tiles) wins, the first on a tie.

    Args:
        shapes: ``(M, N)`` of each layer's matrix as NeuroSim reads it (``K^2 C_in`` rows, ``C_out`` columns).
        rows: Sub-array rows ``R``.
        cols_per_weight: Columns per weight ``b`` (8-bit weights on 1-bit cells: 8).

    Returns:
        ``(side, tiles)``.
    """
    if not shapes or rows < 1:
        raise ConfigError("NeuroSim's tile design needs at least one layer and rows >= 1")
    start = max(2 ** math.ceil(math.log2(max(n for _, n in shapes) * cols_per_weight)), 4 * rows)
    cells = sum(m * n * cols_per_weight for m, n in shapes)
    best: tuple[float, int, int] = (0.0, start, 0)
    side = start
    while side == start or side > 4 * rows:
        tiles = sum(math.ceil(m / side) * math.ceil(n * cols_per_weight / side) for m, n in shapes)
        utilisation = cells / (tiles * side * side)
        if utilisation > best[0]:
            best = (utilisation, side, tiles)
        side //= 2
    return best[1], best[2]
