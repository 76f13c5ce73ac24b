"""What a pruned network costs on the hardware under the mapping a run reports: shared by prune, sweep and demo.

The per-layer mapping is costed by :func:`pimprune.hardware.cost.network_cost` (unchanged: the
paper's mapping); network packing by :func:`pimprune.hardware.placement_cost.placement_cost` on
the placement itself (its crossbars, activations, adders and index tables), after
:func:`pimprune.mapping.network.check_placement` has proved it. :func:`chip_entry` gives the tiles
and the built area of the unpruned network, the per-layer mapping and the network packing under
every tile policy (:mod:`pimprune.hardware.chip`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pimprune.geometry import Crossbar
from pimprune.hardware.chip import chip_layout, chip_report
from pimprune.hardware.config import HardwareConfig
from pimprune.hardware.cost import NetworkCost, dense_stats, network_cost
from pimprune.hardware.placement_cost import PlacementCost, placement_cost
from pimprune.mapping.counting import NetworkCount
from pimprune.mapping.matrices import LayerMatrix
from pimprune.mapping.network import NetworkPlacement, check_placement, pack_network

__all__ = [
    "MappedCost",
    "chip_entry",
    "cost_mapping",
    "dense_cost",
    "network_packing",
    "packing_bounds",
    "read_packing_bound",
]


@dataclass
class MappedCost:
    """Costs of one pruned network on one geometry.

    Attributes:
        xbar: Crossbar geometry.
        hw: Hardware configuration.
        dense: The unpruned network's dense tiling.
        per_layer: The pruned network, per-layer mapping.
        placement: Its network packing, if asked for (checked).
        network: The cost of that placement.
    """

    xbar: Crossbar
    hw: HardwareConfig
    dense: NetworkCost
    per_layer: NetworkCost
    placement: NetworkPlacement | None = None
    network: PlacementCost | None = None


def dense_cost(
    model: nn.Module,
    layers: list[LayerMatrix],
    xbar: Crossbar,
    hw: HardwareConfig,
    input_shape: Sequence[int],
    mvms: Mapping[str, int],
) -> NetworkCost:
    """:func:`network_cost` of the unpruned network's dense tiling (shapes only)."""
    stats = {lay.name: dense_stats(lay.rows, lay.cols, lay.groups, xbar) for lay in layers}
    return network_cost(model, xbar, "dense", hw, input_shape, mvms=mvms, layers=layers, stats=stats)


def network_packing(
    matrices: Mapping[str, torch.Tensor],
    xbar: Crossbar,
    scheme: str,
    hw: HardwareConfig,
    mvms: Mapping[str, int],
    check: bool = True,
) -> tuple[NetworkPlacement, PlacementCost]:
    """Network packing of ``matrices``, proved by :func:`check_placement` (unless ``check=False``), and its cost.

    Raises:
        PackingError: if the placement is not valid and complete for the matrices.
    """
    placement = pack_network(matrices, xbar, scheme)
    if check:
        check_placement(placement, matrices)
    return placement, placement_cost(placement, matrices, hw, mvms)


def cost_mapping(
    model: nn.Module,
    layers: list[LayerMatrix],
    xbar: Crossbar | str,
    scheme: str,
    hw: HardwareConfig,
    input_shape: Sequence[int],
    mvms: Mapping[str, int],
    *,
    masks: Mapping[str, torch.Tensor] | None = None,
    packing: str = "layer",
    check: bool = True,
) -> MappedCost:
    """Dense, per-layer and (``packing="network"``) network-packing costs of a pruned network.

    Args:
        model: The network whose layers are ``layers``.
        layers: Its mapped layers.
        xbar: Crossbar geometry.
        scheme: Compaction of the pruned layers.
        hw: Hardware configuration.
        input_shape: ``(C, H, W)`` of one input.
        mvms: Layer name -> MVMs per inference.
        masks: Layer name -> ``(g, M, N)`` non-zero mask (default: the layers' non-zeros).
        packing: ``"layer"`` or ``"network"``.
        check: Prove the network placement with :func:`check_placement` (the sweep, which
            writes no placement, skips it for speed; the placement code is tested).
    """
    xbar = Crossbar.parse(xbar)
    dense = dense_cost(model, layers, xbar, hw, input_shape, mvms)
    per_layer = network_cost(model, xbar, scheme, hw, input_shape, masks=masks, mvms=mvms, layers=layers)
    out = MappedCost(xbar, hw, dense, per_layer)
    if packing == "network":
        matrices = dict(masks) if masks is not None else {lay.name: lay.matrix() for lay in layers}
        out.placement, out.network = network_packing(matrices, xbar, scheme, hw, mvms, check)
    return out


def chip_entry(cost: MappedCost) -> dict[str, Any]:
    """The ``chip`` entry: the hierarchy, and tiles and area of every mapping under every tile policy."""
    entry = chip_layout(cost.hw, cost.xbar)
    for key, nc in (("dense", cost.dense), ("per_layer", cost.per_layer)):
        entry[key] = chip_report([lc.crossbars for lc in nc.layers], cost.hw, cost.xbar, nc.area_mm2)
    if cost.network is not None:
        entry["network"] = chip_report(cost.network.stage_crossbars, cost.hw, cost.xbar, cost.network.area_mm2)
    return entry


def packing_bounds(counts: NetworkCount) -> dict[str, int]:
    """The two packing bounds of ``result.json``.

    ``packing_bound_per_layer`` is the sum of the layers' ``ceil(nnz_l / (R*C))``, which network
    packing can beat (it was ``packing_bound`` before; :func:`read_packing_bound` reads both);
    ``packing_bound_network`` is ``ceil(total nnz / (R*C))``, which no placement beats.
    """
    return {"packing_bound_per_layer": int(counts.bound()), "packing_bound_network": int(counts.network_bound())}


def read_packing_bound(result: Mapping[str, Any], which: str = "per_layer") -> int | None:
    """A packing bound of a ``result.json``, old files (``packing_bound``, per layer) included.

    Args:
        result: The loaded ``result.json``.
        which: ``"per_layer"`` or ``"network"`` (None in a file written before it existed).
    """
    if which == "per_layer":
        return result.get("packing_bound_per_layer", result.get("packing_bound"))
    return result.get("packing_bound_network")
