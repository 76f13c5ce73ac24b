"""What one occupied crossbar of each layer costs under an allocation objective (docs/hardware.md section 8).

``crossbars`` weighs every crossbar 1 (the paper's objective); ``energy`` weighs it by the pJ per
inference one fully used crossbar of the layer costs (its MVMs times one MVM, index included);
``edp`` by the first-order change of ``log(EDP)`` when one crossbar of the layer goes (energy share
plus latency share against the dense network). Layers that never run on the input weigh 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from pimprune.geometry import Crossbar
from pimprune.hardware.config import HardwareConfig
from pimprune.hardware.cost import crossbar_cycle_ns, crossbar_energy_pj, dense_stats, layer_mvms
from pimprune.mapping.counting import dense_count
from pimprune.mapping.matrices import LayerMatrix, extract_layers
from pimprune.mapping.packing import index_widths
from pimprune.registry import Registry

__all__ = ["OBJECTIVES", "Objective", "model_objective_weights", "objective_weights"]


@dataclass(frozen=True)
class _Inputs:
    """What every objective may read: the layers, the geometry, the hardware, the MVMs."""

    layers: Sequence[LayerMatrix]
    xbar: Crossbar
    hw: HardwareConfig
    mvms: Mapping[str, int]
    scheme: str


@dataclass(frozen=True)
class Objective:
    """An allocation objective (a name of :data:`OBJECTIVES`).

    Attributes:
        unit: Unit of its weights.
        description: One line for help texts.
        weights: Computes layer name -> weight of one occupied crossbar.
    """

    unit: str
    description: str
    weights: Callable[[_Inputs], dict[str, float]]


def _crossbar_energy(inp: _Inputs, lay: LayerMatrix) -> float:
    """Energy (pJ) of one MVM on one fully used crossbar of ``lay`` (index of the scheme included)."""
    i_row, i_col = index_widths(inp.scheme, lay.rows, lay.cols)
    rows, cols = [min(inp.xbar.rows, lay.rows)], [min(inp.xbar.cols, lay.cols)]
    e = crossbar_energy_pj(inp.hw, rows, cols, i_row, i_col)
    return float(sum(float(v[0]) for v in e.values()))


def _energy_weights(inp: _Inputs) -> dict[str, float]:
    return {lay.name: int(inp.mvms.get(lay.name, 0)) * _crossbar_energy(inp, lay) for lay in inp.layers}


def _layer_cycle_ns(inp: _Inputs, lay: LayerMatrix) -> float:
    rows, cols = dense_stats(lay.rows, lay.cols, 1, inp.xbar)
    return float(crossbar_cycle_ns(inp.hw, inp.xbar, rows, cols).max())


def _edp_weights(inp: _Inputs) -> dict[str, float]:
    energy = _energy_weights(inp)
    dense = {lay.name: dense_count(lay.rows, lay.cols, lay.groups, inp.xbar) for lay in inp.layers}
    total_energy = sum(energy[n] * dense[n] for n in energy)
    time = {lay.name: int(inp.mvms.get(lay.name, 0)) * _layer_cycle_ns(inp, lay) for lay in inp.layers}
    total_time = sum(time[n] * dense[n] for n in time)
    out = {}
    for n in energy:
        e = energy[n] / total_energy if total_energy > 0 else 0.0
        t = time[n] / total_time if total_time > 0 else 0.0
        out[n] = float(np.float64(e + t))
    return out


#: Allocation objectives: name -> :class:`Objective`.
OBJECTIVES: Registry[Objective] = Registry("objective")
OBJECTIVES.add(
    "crossbars",
    Objective(
        "crossbars",
        "occupied crossbars (the paper's objective)",
        lambda inp: dict.fromkeys((lay.name for lay in inp.layers), 1.0),
    ),
)
OBJECTIVES.add(
    "energy",
    Objective("pJ per inference", "energy per inference: conversions x how often the layer runs", _energy_weights),
)
OBJECTIVES.add(
    "edp",
    Objective("1 (d log EDP)", "energy-delay product: energy share + latency share of one crossbar", _edp_weights),
)


def objective_weights(
    layers: Sequence[LayerMatrix],
    crossbar: Crossbar | str,
    hw: HardwareConfig,
    objective: str,
    mvms: Mapping[str, int],
    *,
    scheme: str = "dense",
) -> dict[str, float]:
    """Cost of ONE occupied crossbar of each layer under ``objective``.

    Args:
        layers: The mapped layers (:func:`pimprune.mapping.matrices.extract_layers`).
        crossbar: Crossbar geometry.
        hw: Hardware configuration.
        objective: A name of :data:`OBJECTIVES` (``crossbars``, ``energy``, ``edp``).
        mvms: Layer name -> MVMs per inference (:func:`pimprune.hardware.cost.layer_mvms`).
        scheme: Packing scheme of the pattern (its index overhead counts in ``energy``);
            ``"dense"``: none.

    Returns:
        Layer name -> weight, in :attr:`Objective.unit` (``crossbars``: 1.0; ``energy``:
        pJ per inference; ``edp``: dimensionless), for every layer in ``layers``.

    Raises:
        UnknownNameError: for an unknown objective.
    """
    obj = OBJECTIVES.get(objective)
    return obj.weights(_Inputs(list(layers), Crossbar.parse(crossbar), hw, dict(mvms), scheme))


def model_objective_weights(
    model: nn.Module,
    crossbar: Crossbar | str,
    hw: HardwareConfig,
    objective: str,
    input_shape: Sequence[int],
    *,
    scheme: str = "dense",
) -> dict[str, float]:
    """:func:`objective_weights` of every mapped layer of ``model`` for one input of ``input_shape``.

    Args:
        model: The network.
        crossbar: Crossbar geometry.
        hw: Hardware configuration.
        objective: A name of :data:`OBJECTIVES`.
        input_shape: ``(C, H, W)`` of one input (e.g. ``(1, 28, 28)``).
        scheme: Packing scheme of the pattern.

    Raises:
        ConfigError: if the input shape does not fit the model; UnknownNameError for an
            unknown objective.
    """
    OBJECTIVES.get(objective)
    layers = extract_layers(model)
    return objective_weights(layers, crossbar, hw, objective, layer_mvms(model, input_shape), scheme=scheme)
