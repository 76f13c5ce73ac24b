"""Functional simulator: compute a layer through its packed crossbars and compare with the layer.

Proves a packing (docs/design.md section 5) by doing what the hardware does:
route inputs to wordlines by the row index (unconnected wordlines get 0), sum
every bitline over all wordlines, add each read bitline into the output its
column index names; bias stays digital. :func:`simulate_layer` runs a
``Conv2d`` (unfolded, in chunks of output positions) or a ``Linear``;
:func:`verify_model` checks every mapped layer of a model on its real inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pimprune.geometry import Crossbar
from pimprune.mapping.matrices import LayerMatrix, extract_layers
from pimprune.mapping.packing import PackedMatrix, check_physical, pack
from pimprune.mapping.tracing import record_layer_io

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "MIN_CHUNK_ELEMENTS",
    "WORKSPACE_FRACTION",
    "CrossbarPlan",
    "LayerCheck",
    "SimulationMismatch",
    "VerifyReport",
    "compare_outputs",
    "compute_layer",
    "conv_padding",
    "packing_plan",
    "simulate_layer",
    "simulate_matmul",
    "verify_model",
]

#: Automatic chunking: the crossbar workspace of one chunk (gathered inputs and
#: partial sums, in elements) may take this fraction of the layer's unfolded input...
WORKSPACE_FRACTION: float = 0.5
#: ...but never less than this many elements (4 MiB of float32), so that small
#: layers are not cut into needlessly many chunks.
MIN_CHUNK_ELEMENTS: int = 1 << 20


class SimulationMismatch(AssertionError):
    """The crossbars do not compute what the pruned dense layer computes (a bug)."""


@dataclass
class CrossbarPlan:
    """Index tables of crossbars prepared once for many chunks of inputs.

    Each of the ``K`` entries is one crossbar (or one activation of a shared
    crossbar): which input drives each wordline, its cells, and which output
    each bitline adds into.
    """

    flat_rows: torch.Tensor  # (K*R,) long: input position g*M + row of each wordline
    dead_rows: torch.Tensor  # (D,) long: flat positions k*R + r of the wordlines fed 0
    cells_t: torch.Tensor  # (K, C, R) crossbar cells, transposed
    flat_out: torch.Tensor  # (K*C,) long: output position g*N + col, g*N when not read
    inputs: int  # g*M
    outputs: int  # g*N

    @property
    def workspace(self) -> int:
        """Elements of workspace per input vector (gathered inputs, partial sums, outputs)."""
        k, c, r = self.cells_t.shape
        return k * (r + c) + self.outputs

    def like(self, x: torch.Tensor) -> CrossbarPlan:
        """The plan on the device of ``x``, its cells in the dtype of ``x``."""
        return CrossbarPlan(
            self.flat_rows.to(x.device),
            self.dead_rows.to(x.device),
            self.cells_t.to(x.device, x.dtype),
            self.flat_out.to(x.device),
            self.inputs,
            self.outputs,
        )

    def run(self, xt: torch.Tensor) -> torch.Tensor:
        """``(g*M, *rest)`` inputs -> ``(g*N, *rest)`` outputs through the crossbars.

        Inputs come first so that gathering wordline inputs (the input index) and
        accumulating bitline outputs (the output index) act on whole slices.
        """
        k, c, r = self.cells_t.shape
        rest = xt.shape[1:]
        n = xt[0].numel()
        driven = xt.index_select(0, self.flat_rows).reshape(k * r, n)  # input index
        driven.index_fill_(0, self.dead_rows, 0)  # unconnected wordlines are driven with 0
        driven = driven.view(k, r, n)
        partial = torch.bmm(self.cells_t, driven)  # (K, C, n): each bitline sums all wordlines
        out = xt.new_zeros(self.outputs + 1, n)
        out.index_add_(0, self.flat_out, partial.reshape(k * c, n))  # output index, partial sums
        return out[: self.outputs].view(self.outputs, *rest)


def _extent(valid: torch.Tensor) -> int:
    """Lines up to and including the last one valid in any crossbar (``valid``: (K, L))."""
    used = torch.nonzero(valid.any(0))
    return int(used.max()) + 1 if used.numel() else 1


def packing_plan(packed: PackedMatrix, dtype: torch.dtype, device: torch.device) -> CrossbarPlan:
    """The :class:`CrossbarPlan` of a packing, cells in ``dtype`` on ``device``.

    Wordlines and bitlines past the last valid one of every crossbar are cut off:
    that changes no output, only the work (a depthwise layer uses 9 of 128 wordlines).
    """
    p = packed.to(device)
    g, m, n = p.groups, p.rows, p.cols
    r, c = _extent(p.row_valid), _extent(p.col_valid)
    rows, row_valid = p.row_index[:, :r], p.row_valid[:, :r]
    cols, col_valid = p.col_index[:, :c], p.col_valid[:, :c]
    flat_out = torch.where(col_valid, p.group[:, None] * n + cols, g * n)
    return CrossbarPlan(
        flat_rows=(p.group[:, None] * m + rows).reshape(-1),
        dead_rows=torch.nonzero(~row_valid.reshape(-1)).flatten(),
        cells_t=p.cells[:, :r, :c].to(dtype).transpose(1, 2),
        flat_out=flat_out.reshape(-1),
        inputs=g * m,
        outputs=g * n,
    )


def _check_inputs(packed: PackedMatrix, x: torch.Tensor) -> None:
    width = packed.groups * packed.rows
    if x.dim() != 2 or x.shape[1] != width:
        raise ValueError(
            f"inputs must have shape (batch, {width}) for a packing of "
            f"{packed.groups}x{packed.rows}x{packed.cols}, got {tuple(x.shape)}"
        )


def simulate_matmul(packed: PackedMatrix, x: torch.Tensor) -> torch.Tensor:
    """Multiply inputs by a layer's matrices through its packed crossbars.

    Args:
        packed: The packing of the layer's ``(g, M, N)`` matrices.
        x: ``(B, g*M)`` inputs, group-major (group ``i`` reads ``x[:, i*M:(i+1)*M]``).

    Returns:
        ``(B, g*N)`` outputs, group-major; equals ``x @ W`` per group for the
        matrix ``W`` that :meth:`PackedMatrix.unpack` returns.
    """
    _check_inputs(packed, x)
    return packing_plan(packed, x.dtype, x.device).run(x.t()).t()


def _chunk_positions(
    chunk_size: int | None, positions: int, per_position: int, unfolded: int
) -> int:
    """Output positions per chunk: given, or so that a chunk's workspace stays bounded."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of positions, got {chunk_size}")
        return chunk_size
    budget = max(int(unfolded * WORKSPACE_FRACTION), MIN_CHUNK_ELEMENTS)
    return max(1, min(positions, budget // max(per_position, 1)))


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv_padding(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` padding a ``Conv2d`` applies, for ``F.pad``.

    Handles integer, tuple, ``"valid"`` and ``"same"`` padding (``"same"`` puts
    the odd element on the right/bottom, as PyTorch does).
    """
    kh, kw = _pair(conv.kernel_size)
    dh, dw = _pair(conv.dilation)
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0, 0, 0)
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    ph, pw = _pair(conv.padding)
    return (pw, pw, ph, ph)


#: ``Conv2d.padding_mode`` -> ``F.pad`` mode.
_PAD_MODES: dict[str, str] = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "replicate",
    "circular": "circular",
}


def _check_layer(module: nn.Module, packed: PackedMatrix) -> None:
    if isinstance(module, nn.Conv2d):
        groups = module.groups
        rows = module.weight[0].numel()
        cols = module.out_channels // groups
    elif isinstance(module, nn.Linear):
        groups, rows, cols = 1, module.in_features, module.out_features
    else:
        raise TypeError(f"{type(module).__name__} is not mapped to crossbars (Conv2d or Linear)")
    if (packed.groups, packed.rows, packed.cols) != (groups, rows, cols):
        raise ValueError(
            f"packing of {packed.groups}x{packed.rows}x{packed.cols} does not fit "
            f"{type(module).__name__} with matrices {groups}x{rows}x{cols}"
        )


def _simulate_linear(
    module: nn.Linear, plan: CrossbarPlan, x: torch.Tensor, chunk_size: int | None
) -> torch.Tensor:
    lead = x.shape[:-1]
    flat = x.reshape(-1, module.in_features)
    n = flat.shape[0]
    step = _chunk_positions(chunk_size, n, plan.workspace, flat.numel())
    parts = [plan.run(flat[i : i + step].t()).t() for i in range(0, n, step)]
    y = torch.cat(parts) if parts else flat.new_zeros(0, module.out_features)
    if module.bias is not None:
        y = y + module.bias.to(y.dtype)
    return y.reshape(*lead, module.out_features)


def _simulate_conv(
    module: nn.Conv2d, plan: CrossbarPlan, x: torch.Tensor, chunk_size: int | None
) -> torch.Tensor:
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    pads = conv_padding(module)
    if any(pads):
        x = F.pad(x, pads, mode=_PAD_MODES[module.padding_mode])
    kh, kw = _pair(module.kernel_size)
    dh, dw = _pair(module.dilation)
    sh, sw = _pair(module.stride)
    b, _, h, w = x.shape
    ho = (h - dh * (kh - 1) - 1) // sh + 1
    wo = (w - dw * (kw - 1) - 1) // sw + 1
    unfolded = F.unfold(x, (kh, kw), dilation=(dh, dw), stride=(sh, sw))  # (B, g*M, L)
    positions = unfolded.shape[2]
    step = _chunk_positions(chunk_size, positions, b * plan.workspace, unfolded.numel())
    y = x.new_empty(b, plan.outputs, positions)
    inputs_first, outputs_first = unfolded.transpose(0, 1), y.transpose(0, 1)  # views
    for start in range(0, positions, step):
        chunk = slice(start, start + step)
        outputs_first[:, :, chunk] = plan.run(inputs_first[:, :, chunk])
    if module.bias is not None:
        y += module.bias.to(y.dtype)[:, None]
    y = y.view(b, plan.outputs, ho, wo)
    return y[0] if unbatched else y


def simulate_layer(
    module: nn.Conv2d | nn.Linear,
    packed: PackedMatrix,
    x: torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Compute a ``Conv2d`` or ``Linear`` layer through its packed crossbars.

    The layer's weights are read only through ``packed``; its bias is added
    digitally. A ``Conv2d`` input is padded (any ``padding_mode``, ``"same"``
    included) and unfolded (rows in ``(cin, kh, kw)`` order, channel-contiguous
    per group), then processed in chunks of output positions.

    Args:
        module: The (pruned) layer; supplies geometry and bias.
        packed: Packing of the layer's matrices (:func:`pimprune.mapping.packing.pack`).
        x: The layer's input, ``(B, Cin, H, W)`` / ``(Cin, H, W)`` or ``(..., in)``.
        chunk_size: Output positions (conv) or input rows (linear) per chunk;
            ``None`` picks it so a chunk's workspace stays within
            :data:`WORKSPACE_FRACTION` of the unfolded input (at least
            :data:`MIN_CHUNK_ELEMENTS` elements).

    Returns:
        What ``module(x)`` returns: ``(B, Cout, Ho, Wo)`` or ``(..., out)``.
    """
    _check_layer(module, packed)
    return compute_layer(module, packing_plan(packed, x.dtype, x.device), x, chunk_size)


def compute_layer(
    module: nn.Conv2d | nn.Linear, plan: CrossbarPlan, x: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """Compute a ``Conv2d`` or ``Linear`` through the crossbars of ``plan`` (bias added digitally).

    Args:
        module: The layer; supplies geometry and bias (its weights are not read).
        plan: Crossbars of the layer, on the device and in the dtype of ``x``.
        x: The layer's input.
        chunk_size: As for :func:`simulate_layer`.
    """
    if isinstance(module, nn.Conv2d):
        return _simulate_conv(module, plan, x, chunk_size)
    return _simulate_linear(module, plan, x, chunk_size)


# --------------------------------------------------------------------------- whole model

#: Default tolerances: those of ``torch.testing.assert_close`` for float32.
DEFAULT_RTOL: float = 1.3e-6
DEFAULT_ATOL: float = 1e-5


@dataclass
class LayerCheck:
    """Result of simulating one layer.

    Attributes:
        name: Qualified layer name.
        kind: ``"conv"`` or ``"linear"``.
        shape: ``"g x M x N"`` of the layer's matrices.
        crossbars: Crossbars of the packing.
        max_error: Largest absolute difference to the layer's own output.
        max_output: Largest absolute value of the layer's own output.
    """

    name: str
    kind: str
    shape: str
    crossbars: int
    max_error: float
    max_output: float

    def as_dict(self) -> dict:
        """JSON-ready dictionary."""
        return dict(self.__dict__)


@dataclass
class VerifyReport:
    """Per-layer results of :func:`verify_model`.

    Attributes:
        crossbar: Geometry simulated.
        scheme: Packing scheme simulated.
        layers: One entry per mapped layer that ran in the forward pass.
        skipped: Mapped layers that the forward pass never called.
    """

    crossbar: Crossbar
    scheme: str
    layers: list[LayerCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def crossbars(self) -> int:
        """Total crossbars of the checked layers."""
        return sum(lay.crossbars for lay in self.layers)

    @property
    def max_error(self) -> float:
        """Largest absolute error over all layers."""
        return max((lay.max_error for lay in self.layers), default=0.0)

    def as_dict(self) -> dict:
        """JSON-ready dictionary."""
        return {
            "crossbar": str(self.crossbar),
            "scheme": self.scheme,
            "crossbars": self.crossbars,
            "max_error": self.max_error,
            "layers": [lay.as_dict() for lay in self.layers],
            "skipped": list(self.skipped),
        }


def _example(model: nn.Module, example: torch.Tensor | Sequence[int], seed: int) -> torch.Tensor:
    if isinstance(example, torch.Tensor):
        return example
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(int(s) for s in example), generator=gen).to(device)


def verify_model(
    model: nn.Module,
    xbar: Crossbar,
    scheme: str,
    example: torch.Tensor | Sequence[int],
    *,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
    progress: bool = True,
) -> VerifyReport:
    """Simulate every ``Conv2d`` and ``Linear`` of a model on its real inputs.

    The model runs once in eval mode (its mode is restored afterwards) while
    forward hooks record every mapped layer's input and output (first call of
    each layer). Each layer's current (pruned) weights are packed, the packing
    is checked with :func:`pimprune.mapping.packing.check_physical`, the layer is
    computed through the crossbars and compared with its recorded output.

    Args:
        model: The (pruned) model.
        xbar: Crossbar geometry.
        scheme: Packing scheme (one of :data:`pimprune.mapping.counting.SCHEMES`).
        example: An input batch, or the shape of a random one.
        rtol: Relative tolerance of the comparison.
        atol: Absolute tolerance of the comparison.
        seed: Seed of the random input when ``example`` is a shape.
        progress: Show a progress bar over the layers.

    Returns:
        The per-layer report.

    Raises:
        SimulationMismatch: if a layer's simulated output differs from its own output.
        PackingError: if a packing is not physically valid.
    """
    layers = extract_layers(model)
    seen = record_layer_io(model, layers, _example(model, example, seed))
    report = VerifyReport(xbar, scheme)
    with torch.no_grad():
        for lay in tqdm(layers, desc=f"simulate {scheme} {xbar}", disable=not progress):
            if lay.name not in seen:
                report.skipped.append(lay.name)
                continue
            x, expected = seen.pop(lay.name)
            report.layers.append(_verify_layer(lay, xbar, scheme, x, expected, rtol, atol))
    return report


def _verify_layer(
    lay: LayerMatrix, xbar: Crossbar, scheme: str, x: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float
) -> LayerCheck:
    """Pack one layer, check the packing, compute it through the crossbars and compare."""
    matrix = lay.matrix()
    packed = pack(matrix, xbar, scheme)
    check_physical(packed, matrix)
    got = simulate_layer(lay.module, packed, x)
    error = compare_outputs(got, expected, rtol, atol, f"{lay.name} ({scheme} on {xbar}): crossbars")
    return LayerCheck(
        name=lay.name,
        kind=lay.kind,
        shape=f"{lay.groups}x{lay.rows}x{lay.cols}",
        crossbars=packed.n_crossbars,
        max_error=error,
        max_output=float(expected.abs().max()) if expected.numel() else 0.0,
    )


def compare_outputs(got: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float, what: str) -> float:
    """Largest absolute difference of the simulated output ``got`` to the layer's own output.

    Raises:
        SimulationMismatch: ``"<what> differ from the layer: ..."`` if they are not close.
    """
    try:
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol)
    except AssertionError as exc:
        first = " ".join(line.strip() for line in str(exc).strip().splitlines()[:3])
        raise SimulationMismatch(f"{what} differ from the layer: {first}") from None
    return float((got - expected).abs().max()) if got.numel() else 0.0
