"""What one occupied crossbar of each layer costs under an allocation objective.

The crossbar budget of :mod:`pimprune.pruning.budgets` counts every crossbar as
1. An energy-aware allocation instead ranks units by gain / cost, where the
cost of a unit is the number of crossbars it occupies times the *weight* of
one crossbar of its layer, and the budget is in those weight units. This
module gives the weights (``--objective crossbars|energy|edp``):

``crossbars``
    1.0 for every layer: the paper's objective, occupied crossbars.
``energy``
    pJ per inference that one fully used crossbar of the layer costs: the
    layer's MVMs per image (output positions) x the energy of one MVM on one
    ``RxC`` crossbar holding ``min(R, M)`` rows and ``min(C, N)`` columns of
    the layer's ``M x N`` matrix (:func:`pimprune.hardware.cost.crossbar_energy_pj`:
    arrays, ADC and DAC conversions, sample-and-hold, shift-add, registers, and
    the index of the pattern's scheme). A crossbar of an early layer that runs
    196 MVMs per image weighs about 50x one of a layer that runs 4.
``edp``
    The first-order change of ``log(EDP)`` when one crossbar of the layer goes:
    ``e_l / E + d_l / D`` (dimensionless). ``e_l`` is the ``energy`` weight and
    ``E`` the dense network's energy per inference; ``d_l / D`` is the share of
    the latency one crossbar of the layer accounts for on a chip whose free
    crossbars hold copies of the layers (:mod:`pimprune.hardware.latency`: a
    layer of ``L`` crossbars with ``r`` copies takes ``MVMs x n x cycle / r``,
    and with the chip full ``r`` is proportional to ``1 / L``), i.e.
    ``MVMs_l x cycle_l / sum_k(MVMs_k x cycle_k x L_k)`` with ``L_k`` the dense
    crossbars. The reference point is the dense network.

Weights are 0 for layers that never run on the given input (no MVM): such a
layer costs neither energy nor time, only area.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from pimprune.geometry import Crossbar
from pimprune.hardware.cost import crossbar_cycle_ns, crossbar_energy_pj, dense_stats, layer_mvms
from pimprune.hardware.model import HardwareConfig
from pimprune.mapping.counting import dense_count
from pimprune.mapping.matrices import LayerMatrix, extract_layers
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
    from pimprune.mapping.packing import index_widths

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
