"""Functional simulator of shared crossbars (network packing).

Proves a :class:`pimprune.mapping.network.NetworkPlacement` by computing every
layer through the shared crossbars exactly as the hardware would, one
activation at a time (:func:`pimprune.mapping.network.activations`):

1. the crossbar holds the cells of *every* piece placed on it, whatever layer
   it belongs to;
2. the activation drives its rows with the inputs its row index names; every
   other row of the crossbar (other layers' rows included) gets 0;
3. each column sums over *all* rows; only the activation's columns are read,
   and each read column adds into the output its column index names (partial
   sums of pieces on several crossbars are added digitally);
4. bias and everything after the layer stay digital.

The crossbar work reuses the plan/run machinery of
:mod:`pimprune.mapping.simulate` (one "crossbar" of its plan per activation), so
convolutions are unfolded, chunked and padded the same way.
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
from pimprune.mapping.simulate import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    SimulationMismatch,
    _Plan,
    _simulate_conv,
    _simulate_linear,
    record_layer_io,
)

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


def layer_plan(placement: NetworkPlacement, layer: str, cells: torch.Tensor, acts: Sequence | None = None) -> _Plan:
    """The activations of one layer as a plan of :mod:`pimprune.mapping.simulate` (one entry each).

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
    return _Plan(
        flat_rows=torch.from_numpy(np.where(inputs >= 0, inputs, 0).reshape(-1)),
        dead_rows=torch.from_numpy(np.flatnonzero(inputs < 0)),
        cells_t=cells.index_select(0, idx).transpose(1, 2),  # every cell of the crossbar, all layers
        flat_out=torch.from_numpy(np.where(outputs >= 0, outputs, n_out).reshape(-1)),
        inputs=shape.groups * shape.rows,
        outputs=n_out,
    )


def _to(plan: _Plan, x: torch.Tensor) -> _Plan:
    return _Plan(
        plan.flat_rows.to(x.device),
        plan.dead_rows.to(x.device),
        plan.cells_t.to(x.device, x.dtype),
        plan.flat_out.to(x.device),
        plan.inputs,
        plan.outputs,
    )


def simulate_network_layer(
    module: nn.Conv2d | nn.Linear, plan: _Plan, x: torch.Tensor, chunk_size: int | None = None
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
    plan = _to(plan, x)
    if isinstance(module, nn.Conv2d):
        return _simulate_conv(module, plan, x, chunk_size)
    return _simulate_linear(module, plan, x, chunk_size)


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
            try:
                torch.testing.assert_close(got, expected, rtol=rtol, atol=atol)
            except AssertionError as exc:
                first = " ".join(line.strip() for line in str(exc).strip().splitlines()[:3])
                raise SimulationMismatch(
                    f"{lay.name} ({placement.packing} packing on {placement.xbar}): shared crossbars differ "
                    f"from the layer: {first}"
                ) from None
            report.errors[lay.name] = float((got - expected).abs().max()) if got.numel() else 0.0
    return report
