"""Functional simulator of shared crossbars (network packing).

Proves a :class:`pimprune.mapping.network.NetworkPlacement` by computing every
layer one activation at a time (:func:`pimprune.mapping.network.activations`):
the crossbar holds the cells of every piece on it, whatever its layer; the
activation drives its rows (every other row gets 0) and reads only its columns.
Each activation is one entry of a :class:`pimprune.mapping.simulate.CrossbarPlan`,
so convolutions are unfolded, chunked and padded as for per-layer packing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pimprune.errors import PimpruneError
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.network import NetworkPlacement, activations, check_placement
from pimprune.mapping.simulate import DEFAULT_ATOL, DEFAULT_RTOL, CrossbarPlan, compare_outputs, compute_layer
from pimprune.mapping.tracing import record_layer_io

__all__ = [
    "NetworkVerifyError",
    "NetworkVerifyReport",
    "crossbar_cells",
    "layer_plan",
    "simulate_network_layer",
    "verify_network",
]


class NetworkVerifyError(PimpruneError):
    """``map --verify``: the shared crossbars do not compute what the model computes."""


def crossbar_cells(
    placement: NetworkPlacement, matrices: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``(K, R, C)``: the weight in every cell of every crossbar (0 where no piece lies).

    Args:
        placement: The placement.
        matrices: Layer name -> ``(g, M, N)`` weights, for every placed layer.
        dtype: Cell dtype.
    """
    xbar = placement.xbar
    cells = torch.zeros(placement.n_crossbars, xbar.rows, xbar.cols, dtype=dtype)
    for k, pieces in enumerate(placement.crossbars):
        for p in pieces:
            m = matrices[p.layer].detach().to("cpu", dtype)[p.group]
            block = m[torch.from_numpy(p.rows)[:, None], torch.from_numpy(p.cols)[None, :]]
            cells[k, p.row_offset : p.row_offset + p.rows.size, p.col_offset : p.col_offset + p.cols.size] = block
    return cells


def layer_plan(
    placement: NetworkPlacement, layer: str, cells: torch.Tensor, acts: Sequence | None = None
) -> CrossbarPlan:
    """The activations of one layer as a :class:`~pimprune.mapping.simulate.CrossbarPlan` (one entry each).

    Args:
        placement: The placement.
        layer: Layer name.
        cells: :func:`crossbar_cells` of the placement.
        acts: :func:`pimprune.mapping.network.activations` of the placement (computed if ``None``).
    """
    shape = placement.layers[layer]
    mine = [a for a in (activations(placement) if acts is None else acts) if a.layer == layer]
    r, c = placement.xbar.rows, placement.xbar.cols
    inputs = np.stack([a.inputs for a in mine]) if mine else np.zeros((0, r), dtype=np.int64)
    outputs = np.stack([a.outputs for a in mine]) if mine else np.zeros((0, c), dtype=np.int64)
    n_out = shape.groups * shape.cols
    idx = torch.tensor([a.crossbar for a in mine], dtype=torch.long)
    return CrossbarPlan(
        flat_rows=torch.from_numpy(np.where(inputs >= 0, inputs, 0).reshape(-1)),
        dead_rows=torch.from_numpy(np.flatnonzero(inputs < 0)),
        cells_t=cells.index_select(0, idx).transpose(1, 2),  # every cell of the crossbar, all layers
        flat_out=torch.from_numpy(np.where(outputs >= 0, outputs, n_out).reshape(-1)),
        inputs=shape.groups * shape.rows,
        outputs=n_out,
    )


def simulate_network_layer(
    module: nn.Conv2d | nn.Linear, plan: CrossbarPlan, x: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """Compute a layer through its activations on the shared crossbars (bias added digitally).

    Args:
        module: The layer (geometry and bias; its weights are not read).
        plan: :func:`layer_plan` of the layer.
        x: The layer's input.
        chunk_size: As for :func:`pimprune.mapping.simulate.simulate_layer`.

    Returns:
        What ``module(x)`` returns.
    """
    return compute_layer(module, plan.like(x), x, chunk_size)


@dataclass
class NetworkVerifyReport:
    """Result of :func:`verify_network`.

    Attributes:
        crossbars: Crossbars of the placement.
        errors: Layer name -> largest absolute error against the layer's own output.
        skipped: Placed layers the forward pass never called.
    """

    crossbars: int
    errors: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def max_error(self) -> float:
        """Largest error over all layers."""
        return max(self.errors.values(), default=0.0)


def verify_network(
    model: nn.Module,
    placement: NetworkPlacement,
    example: torch.Tensor,
    *,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> NetworkVerifyReport:
    """Check a placement on a model: valid, complete, and computing every layer exactly.

    Every placed layer's recorded input goes through its activations on the
    shared crossbars (cells of all layers present) and is compared with the
    layer's own output.

    Raises:
        PackingError: if the placement is not valid for the model's weights.
        SimulationMismatch: if a layer's simulated output differs.
    """
    layers = [lay for lay in extract_layers(model) if lay.name in placement.layers]
    matrices = {lay.name: lay.matrix() for lay in layers}
    check_placement(placement, matrices)
    cells = crossbar_cells(placement, matrices)
    acts = activations(placement)
    seen = record_layer_io(model, layers, example)
    report = NetworkVerifyReport(placement.n_crossbars)
    with torch.no_grad():
        for lay in layers:
            if lay.name not in seen:
                report.skipped.append(lay.name)
                continue
            x, expected = seen.pop(lay.name)
            got = simulate_network_layer(lay.module, layer_plan(placement, lay.name, cells, acts), x)
            what = f"{lay.name} ({placement.packing} packing on {placement.xbar}): shared crossbars"
            report.errors[lay.name] = compare_outputs(got, expected, rtol, atol, what)
    return report
