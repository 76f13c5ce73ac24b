"""Numerics of a crossbar chip: weight and input quantization, bit slicing, ADC and device non-idealities.

:class:`NumericsConfig` says how the chip represents numbers (docs/hardware.md, section "On-chip
numerics"); the functions below are its arithmetic, used by :mod:`pimprune.hardware.onchip` to
compute layers as the chip would:

- weights: signed ``b_w``-bit integers ``q = round(w / s_w)``, ``|q| <= 2^(b_w-1) - 1``, with one
  scale ``s_w`` per output column (or per layer); stored as a **differential pair** of arrays
  (``q+ = max(q, 0)`` on one, ``q- = max(-q, 0)`` on the other, subtracted digitally), each
  magnitude cut into ``ceil(b_w / b_c)`` slices of ``b_c``-bit cells (:func:`weight_planes`);
- inputs: ``b_x``-bit integers ``round(x / s_x)`` with a per-layer scale from a calibration pass,
  unsigned where the layer's input is never negative (after a ReLU), two's complement where it
  can be (the first layer), fed ``b_d`` bits per read cycle (:func:`input_cycles`);
- each read (one input cycle on one array's slice) of a column is converted by an ADC over the
  rows the crossbar drives (:func:`adc_steps`, :func:`convert_reads`), then shifted and added;
- each cell is one physical device: multiplicative variation and stuck-at faults are drawn per
  cell (:func:`sample_cells`); an unprogrammed cell (weight slice 0) stays at its off state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pimprune.errors import ConfigError
from pimprune.hardware.adc import adc_bits
from pimprune.hardware.components import SIGN_SCHEMES, SignScheme, physical_arrays
from pimprune.hardware.config import merge_fields, read_config_file
from pimprune.numeric import cdiv, json_ratio, quant_scale
from pimprune.registry import Registry

__all__ = [
    "MAX_CODE_BITS",
    "NUMERICS_PRESETS",
    "VARIATIONS",
    "WEIGHT_SCALES",
    "NumericsConfig",
    "adc_steps",
    "convert_reads",
    "input_cycles",
    "input_scale",
    "load_numerics",
    "numerics_to_dict",
    "numerics_with_overrides",
    "physical_summary",
    "quantize_inputs",
    "quantize_weights",
    "sample_cells",
    "weight_planes",
]

#: Weight and input widths are held as float32 integers in the vectorised arithmetic: exact up to 24 bits.
MAX_CODE_BITS = 24

#: Granularity of the weight scale ``s_w``: one per output column (output channel), or one per layer.
WEIGHT_SCALES: tuple[str, ...] = ("column", "layer")

#: Variation laws ``(level, sigma, z) -> varied level``, ``z`` standard normal, drawn per cell.
VARIATIONS: Registry[Callable[[torch.Tensor, float, torch.Tensor], torch.Tensor]] = Registry("variation law")
VARIATIONS.add("lognormal", lambda g, sigma, z: g * torch.exp(sigma * z))
VARIATIONS.add("gaussian", lambda g, sigma, z: g * (1.0 + sigma * z).clamp_min(0.0))


@dataclass(frozen=True)
class NumericsConfig:
    """How a crossbar chip represents and computes numbers (the defaults are the ``isaac`` preset).

    Attributes:
        name: Preset name.
        source: Where the values come from.
        weight_bits: Signed weight width ``b_w`` (bits), integer levels ``-(2^(b_w-1)-1) .. 2^(b_w-1)-1``;
            None: weights are not quantized (fp32 cells). ISAAC: 16 (Shafiee et al., ISCA 2016, section 4).
        cell_bits: Bits ``b_c`` per cell; a weight magnitude spans ``ceil(b_w / b_c)`` slices, each on
            its own array (ISAAC: 2-bit memristors).
        input_bits: Input width ``b_x`` (bits): unsigned ``0 .. 2^b_x - 1`` for a non-negative layer
            input, two's complement ``-(2^(b_x-1)-1) .. 2^(b_x-1)-1`` for one that can be negative;
            None: inputs are not quantized (analog fp32 drive). ISAAC: 16.
        dac_bits: Bits ``b_d`` per DAC conversion: an unsigned input takes ``ceil(b_x / b_d)`` read
            cycles, a signed one ``ceil((b_x-1) / b_d) + 1`` (its sign bit gets a cycle of its own,
            weighted ``-2^(b_x-1)``). ISAAC: 1 (bit-serial inputs).
        adc_bits: ADC resolution (bits) of every column read. None: lossless, the resolution
            :func:`pimprune.hardware.adc.adc_bits` gives for the crossbar's active rows (every
            nominal column sum is read exactly; the ADC adds no error, also not to a varied sum);
            a number: ``2^adc_bits`` levels of step ``2^max(0, L - adc_bits)`` over the lossless
            range ``L`` bits (the low bits are dropped), rounded and clipped.
        weight_scale: ``column`` (one scale per output column, i.e. output channel, over every
            crossbar holding it; applied digitally after the partial sums) or ``layer``.
        signed: Signed-weight scheme, a name of :data:`pimprune.hardware.components.SIGN_SCHEMES`.
            Only ``differential`` is modelled: a positive and a negative array per slice, as
            ISAAC-like and NeuroSim designs with two arrays do (each read by its own ADC).
        variation: Law of the conductance variation, a name of :data:`VARIATIONS`: ``lognormal``
            (``G * exp(sigma z)``) or ``gaussian`` (``G * max(0, 1 + sigma z)``), ``z ~ N(0, 1)``
            drawn once per physical cell (per weight slice of each array) and device sample.
        variation_sigma: Relative spread ``sigma`` of the variation (fraction; 0.05 = 5%). A
            cell at its off state (slice value 0) has no conductance to vary. Default 0.
        stuck_at_zero: Fraction of cells stuck at the off state (conductance 0). Default 0.
        stuck_at_one: Fraction of cells stuck at the highest level ``2^b_c - 1`` (an unprogrammed
            cell on an active row can so turn on). Default 0.
        read_noise_lsb: Standard deviation of an additive Gaussian noise on every column read,
            in ADC steps (LSB; one cell level when the ADC is lossless). Default 0.
    """

    name: str = "isaac"
    source: str = (
        "ISAAC (Shafiee et al., ISCA 2016), sections 3-4: 16-bit weights on eight 2-bit cells, 16-bit inputs "
        "fed 1 bit per cycle, an ADC that reads a column exactly; signed weights as a differential pair here"
    )
    weight_bits: int | None = 16
    cell_bits: int = 2
    input_bits: int | None = 16
    dac_bits: int = 1
    adc_bits: int | None = None
    weight_scale: str = "column"
    signed: str = "differential"
    variation: str = "lognormal"
    variation_sigma: float = 0.0
    stuck_at_zero: float = 0.0
    stuck_at_one: float = 0.0
    read_noise_lsb: float = 0.0

    def __post_init__(self) -> None:
        _check_int(self, "weight_bits", 2, MAX_CODE_BITS, optional=True)
        _check_int(self, "input_bits", 2, MAX_CODE_BITS, optional=True)
        _check_int(self, "adc_bits", 1, 32, optional=True)
        _check_int(self, "cell_bits", 1, 16)
        _check_int(self, "dac_bits", 1, 16)
        if self.weight_scale not in WEIGHT_SCALES:
            raise ConfigError(f"numerics field weight_scale must be one of {', '.join(WEIGHT_SCALES)}, "
                              f"got {self.weight_scale!r}")  # fmt: skip
        SIGN_SCHEMES.get(self.signed)
        if self.signed != "differential":
            raise ConfigError(f"numerics field signed: only 'differential' is modelled, got {self.signed!r}")
        VARIATIONS.get(self.variation)
        for name in ("variation_sigma", "stuck_at_zero", "stuck_at_one", "read_noise_lsb"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"numerics field {name} must be a finite number >= 0, got {v}")
        if self.stuck_at_zero + self.stuck_at_one > 1:
            raise ConfigError(
                f"numerics fields stuck_at_zero + stuck_at_one must be at most 1, got "
                f"{self.stuck_at_zero} + {self.stuck_at_one}"
            )
        if (self.adc_bits is not None or self.read_noise_lsb > 0) and not self.integer:
            raise ConfigError(
                "numerics fields adc_bits and read_noise_lsb need quantized weights and inputs "
                "(weight_bits and input_bits set)"
            )

    @property
    def integer(self) -> bool:
        """Whether weights and inputs are both integers (the ADC then has a least significant bit)."""
        return self.weight_bits is not None and self.input_bits is not None

    @property
    def slices(self) -> int:
        """Slices (arrays per sign) one weight spans, ``ceil(b_w / b_c)``; 1 for fp32 weights."""
        return 1 if self.weight_bits is None else cdiv(self.weight_bits, self.cell_bits)

    @property
    def input_cycles(self) -> int:
        """Read cycles per unsigned input, ``ceil(b_x / b_d)``; 1 for fp32 inputs."""
        return 1 if self.input_bits is None else cdiv(self.input_bits, self.dac_bits)

    @property
    def sign(self) -> SignScheme:
        """The :class:`SignScheme` named by :attr:`signed`."""
        return SIGN_SCHEMES.get(self.signed)

    @property
    def physical_arrays(self) -> int:
        """Physical arrays per logical crossbar: slices x sign factor (the rule of ``HardwareConfig``)."""
        return physical_arrays(self.slices, self.signed)

    @property
    def exact_readout(self) -> bool:
        """Lossless ADC and no read noise: the chip is linear in its inputs (one matmul is exact)."""
        return self.adc_bits is None and self.read_noise_lsb == 0

    @property
    def stochastic(self) -> bool:
        """Whether device samples differ (variation, stuck-at faults or read noise)."""
        return self.variation_sigma > 0 or self.stuck_at_zero > 0 or self.stuck_at_one > 0 or self.read_noise_lsb > 0

    @property
    def weight_levels(self) -> int:
        """Largest weight magnitude code ``2^(b_w-1) - 1`` (0 for fp32 weights)."""
        return 0 if self.weight_bits is None else (1 << (self.weight_bits - 1)) - 1

    @property
    def cell_levels(self) -> int:
        """Highest cell level ``2^b_c - 1`` (a stuck-at-one cell reads it)."""
        return (1 << self.cell_bits) - 1


def _check_int(cfg: NumericsConfig, name: str, low: int, high: int, optional: bool = False) -> None:
    v = getattr(cfg, name)
    if optional and v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        none = " or null" if optional else ""
        raise ConfigError(f"numerics field {name} must be an integer in {low}..{high}{none}, got {v!r}")


# --------------------------------------------------------------------------- presets, files, overrides

#: Named numerics (``--numerics``).
NUMERICS_PRESETS: Registry[NumericsConfig] = Registry("numerics preset")
NUMERICS_PRESETS.add("isaac", NumericsConfig())
NUMERICS_PRESETS.add(
    "neurosim",
    NumericsConfig(
        name="neurosim",
        source="DNN+NeuroSim V1.4: Inference_pytorch/NeuroSIM/Param.cpp (memcelltype=1 SRAM, cellBit forced "
        "to 1, levelOutput=32 i.e. a 5-bit ADC) and the wrapper's defaults wl_weight=8, wl_activate=8 "
        "(inputs bit-serial); no device variation for SRAM",
        weight_bits=8,
        cell_bits=1,
        input_bits=8,
        dac_bits=1,
        adc_bits=5,
    ),
)
NUMERICS_PRESETS.add(
    "ideal",
    NumericsConfig(
        name="ideal",
        source="no quantization: fp32 weights and inputs, exact readout (the crossbar mapping only)",
        weight_bits=None,
        input_bits=None,
    ),
)

_MAX_BASE_DEPTH = 8


def numerics_to_dict(cfg: NumericsConfig) -> dict[str, Any]:
    """Plain dictionary of a configuration (JSON-ready)."""
    return dataclasses.asdict(cfg)


def _load(source: str, depth: int) -> NumericsConfig:
    if source in NUMERICS_PRESETS:
        return NUMERICS_PRESETS.get(source)
    if depth > _MAX_BASE_DEPTH:
        raise ConfigError(f"numerics file {source}: 'base' chain deeper than {_MAX_BASE_DEPTH}")
    path = Path(source)
    if not path.is_file():
        raise ConfigError(
            f"no numerics preset or file {source!r}; use a preset ({', '.join(NUMERICS_PRESETS.names())}) "
            "or a .yaml/.json file"
        )
    data = read_config_file(path, "numerics") or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"numerics file {path} must hold a mapping of fields, got {type(data).__name__}")
    data = dict(data)
    base_ref = data.pop("base", None)
    base = NumericsConfig()
    if base_ref is not None:
        ref = str(base_ref)
        if ref not in NUMERICS_PRESETS and not Path(ref).is_absolute():
            ref = str(path.parent / ref)
        base = _load(ref, depth + 1)
    data.setdefault("name", path.stem)
    return merge_fields(NumericsConfig, base, data, what="numerics")


def load_numerics(source: str | Path | NumericsConfig = "isaac") -> NumericsConfig:
    """Numerics by preset name (``isaac``, ``neurosim``, ``ideal``) or from a YAML / JSON file.

    A file may name ``base: PRESET_OR_FILE`` and give only the fields it changes; without
    ``base`` the missing fields take the ``isaac`` values.

    Raises:
        ConfigError: on a missing or unreadable file, or an invalid field.
    """
    if isinstance(source, NumericsConfig):
        return source
    return _load(str(source), 0)


def numerics_with_overrides(cfg: NumericsConfig, overrides: Mapping[str, Any]) -> NumericsConfig:
    """A copy of ``cfg`` with fields replaced, e.g. ``{"variation_sigma": 0.05, "weight_bits": 8}``.

    A leading ``numerics.`` of a key is dropped (``--set numerics.adc_bits=6``).

    Raises:
        ConfigError: on an unknown field or an invalid value.
    """
    fields = {str(k).removeprefix("numerics."): v for k, v in overrides.items()}
    return merge_fields(NumericsConfig, cfg, fields, what="numerics")


# --------------------------------------------------------------------------- weights


def physical_summary(dense_crossbars: int, crossbars: int, dense: NumericsConfig, model: NumericsConfig) -> dict:
    """Physical arrays of a dense and a mapped model, and their ratio (the physical compression).

    A logical crossbar (one weight per cell) takes ``slices x sign arrays`` physical arrays
    (:attr:`NumericsConfig.physical_arrays`): ``dense_crossbars`` at ``dense``'s weight bits
    (the preset's) against ``crossbars`` at ``model``'s (the model's own bits).
    """
    arrays_dense = dense_crossbars * dense.physical_arrays
    arrays = crossbars * model.physical_arrays
    return {
        "numerics": dense.name, "dense_weight_bits": dense.weight_bits, "weight_bits": model.weight_bits,
        "cell_bits": model.cell_bits, "sign_arrays": model.sign.array_factor,
        "arrays_per_crossbar_dense": dense.physical_arrays, "arrays_per_crossbar": model.physical_arrays,
        "arrays_dense": arrays_dense, "arrays": arrays,
        "compression": json_ratio(arrays_dense / arrays) if arrays else None,
    }  # fmt: skip


def quantize_weights(matrix: torch.Tensor, cfg: NumericsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer weight codes and their scales.

    Args:
        matrix: ``(g, M, N)`` weight matrices of a layer.
        cfg: The numerics.

    Returns:
        ``(codes, scale)``: ``codes`` ``(g, M, N)`` holds ``round(w / s_w)`` clipped to
        ``+-(2^(b_w-1) - 1)`` (the weights themselves for fp32 weights); ``scale`` ``(g*N,)`` is
        ``s_w`` of every output column, ``max |w| / (2^(b_w-1) - 1)`` over the column (``column``)
        or the layer (``layer``); 1 for fp32 weights and for an all-zero column.
    """
    g, _, n = matrix.shape
    if cfg.weight_bits is None:
        return matrix.clone(), matrix.new_ones(g * n)
    peak = matrix.abs().amax(1).reshape(g * n)  # per output column
    if cfg.weight_scale == "layer":
        peak = peak.amax().expand(g * n)
    scale = quant_scale(peak, cfg.weight_levels)
    codes = torch.round(matrix / scale.view(g, 1, n)).clamp_(-cfg.weight_levels, cfg.weight_levels)
    return codes, scale.contiguous()


def weight_planes(codes: torch.Tensor, cfg: NumericsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell levels of the differential pair of arrays, slice by slice.

    Args:
        codes: Integer weight codes (any shape ``S``), or fp32 weights when ``weight_bits`` is None.
        cfg: The numerics.

    Returns:
        ``(levels, weights)``: ``levels`` ``(2*slices, *S)`` holds the positive array's slices
        (least significant first) then the negative array's, each in ``0 .. 2^b_c - 1`` (the
        magnitudes themselves for fp32 weights); ``weights`` ``(2*slices,)`` the digital factor of
        each plane, ``+2^(s*b_c)`` and ``-2^(s*b_c)``, so ``codes == tensordot(weights, levels, 1)``.
    """
    if cfg.weight_bits is None:
        levels = torch.stack((codes.clamp_min(0), (-codes).clamp_min(0)))
        return levels, codes.new_tensor([1.0, -1.0])
    q = codes.to(torch.int64)
    mask = cfg.cell_levels
    planes = []
    for part in (q.clamp_min(0), (-q).clamp_min(0)):
        planes += [(part >> (s * cfg.cell_bits)) & mask for s in range(cfg.slices)]
    shifts = [float(1 << (s * cfg.cell_bits)) for s in range(cfg.slices)]
    weights = codes.new_tensor(shifts + [-v for v in shifts])
    return torch.stack(planes).to(codes.dtype), weights


def sample_cells(
    levels: torch.Tensor,
    on_level: torch.Tensor | float,
    live: torch.Tensor,
    cfg: NumericsConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """One device sample of the cells: variation, then stuck-at faults, on every live cell.

    Args:
        levels: Nominal cell levels (any shape ending in the cell layout ``live`` has).
        on_level: Level of a stuck-at-one cell (``2^b_c - 1``; the column's largest magnitude for
            fp32 weights), broadcastable to ``levels``.
        live: Bool, broadcastable to ``levels``: cells on an active row and a read column (the
            only ones a read sees); every other cell is returned as 0.
        cfg: The numerics.
        generator: CPU generator of this device sample (draws: normals, then uniforms).

    Returns:
        The cell levels the chip holds. A cell at level 0 (unprogrammed: a pruned weight or an
        empty slice) stays 0 under variation; only ``stuck_at_one`` can turn it on.
    """
    out = levels
    if cfg.variation_sigma > 0:
        z = torch.randn(levels.shape, generator=generator).to(levels.device, levels.dtype)
        out = VARIATIONS.get(cfg.variation)(out, cfg.variation_sigma, z)
    p0, p1 = cfg.stuck_at_zero, cfg.stuck_at_one
    if p0 + p1 > 0:
        u = torch.rand(levels.shape, generator=generator).to(levels.device)
        out = torch.where(u < p0, torch.zeros_like(out), out)
        on = torch.as_tensor(on_level, dtype=out.dtype, device=out.device)
        out = torch.where((u >= p0) & (u < p0 + p1), on.expand_as(out), out)
    return out * live


# --------------------------------------------------------------------------- inputs


def input_scale(max_abs: float, signed: bool, cfg: NumericsConfig) -> float:
    """Input scale ``s_x``: the calibrated ``max |x|`` over the largest code (1 for fp32 or all-zero inputs)."""
    if cfg.input_bits is None or max_abs <= 0:
        return 1.0
    top = (1 << (cfg.input_bits - 1)) - 1 if signed else (1 << cfg.input_bits) - 1
    return float(max_abs) / top


def quantize_inputs(x: torch.Tensor, scale: float, signed: bool, cfg: NumericsConfig) -> torch.Tensor:
    """Input codes ``round(x / s_x)``, clipped to the code range (``x`` itself for fp32 inputs)."""
    if cfg.input_bits is None:
        return x
    if signed:
        top = (1 << (cfg.input_bits - 1)) - 1
        return torch.round(x / scale).clamp_(-top, top)
    return torch.round(x / scale).clamp_(0, (1 << cfg.input_bits) - 1)


def input_cycles(codes: torch.Tensor, signed: bool, cfg: NumericsConfig) -> Iterator[tuple[float, torch.Tensor]]:
    """The DAC digits of every read cycle, with the digital weight of that cycle.

    Unsigned codes ``u`` are fed ``b_d`` bits at a time, least significant first: digit ``c`` is
    ``floor(u / 2^(c*b_d)) mod 2^b_d`` with weight ``2^(c*b_d)``. A signed code ``q`` in two's
    complement is ``L - 2^(b_x-1) * [q < 0]`` with ``L = q mod 2^(b_x-1)``: ``L``'s ``b_x - 1`` bits
    are fed the same way and the sign bit gets one more cycle of weight ``-2^(b_x-1)``. fp32
    inputs are one cycle of weight 1 (an analog drive).

    Yields:
        ``(weight, digits)``, ``digits`` shaped like ``codes``; ``sum(weight * digits) == codes``.
    """
    if cfg.input_bits is None:
        yield 1.0, codes
        return
    bits = cfg.input_bits - 1 if signed else cfg.input_bits
    base = codes.remainder(float(1 << bits)) if signed else codes
    radix = float(1 << cfg.dac_bits)
    for c in range(cdiv(bits, cfg.dac_bits)):
        shift = float(1 << (c * cfg.dac_bits))
        yield shift, torch.div(base, shift, rounding_mode="floor").remainder_(radix)
    if signed:
        yield -float(1 << bits), (codes < 0).to(codes.dtype)


# --------------------------------------------------------------------------- ADC


def adc_steps(active_rows: torch.Tensor, cfg: NumericsConfig) -> torch.Tensor:
    """ADC step (cell-level units) of every crossbar.

    The lossless resolution of ``R`` active rows is ``L = adc_bits(R, b_c, b_d)`` bits
    (:func:`pimprune.hardware.adc.adc_bits`): every sum ``0 .. R (2^b_c - 1)(2^b_d - 1)`` has its own
    code. A ``b``-bit ADC keeps the top ``b`` of those bits: step ``2^max(0, L - b)``.

    Args:
        active_rows: ``(K,)`` rows each crossbar drives.
        cfg: The numerics.

    Returns:
        ``(K,)`` float steps; 1 with a lossless ADC.
    """
    if cfg.adc_bits is None:
        return torch.ones(active_rows.shape, dtype=torch.float32)
    lossless = [adc_bits(int(r), cfg.cell_bits, cfg.dac_bits) for r in active_rows.tolist()]
    return torch.tensor([float(2 ** max(0, b - cfg.adc_bits)) for b in lossless], dtype=torch.float32)


def convert_reads(
    reads: torch.Tensor, step: torch.Tensor, cfg: NumericsConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """What the ADCs return for analog column sums.

    Args:
        reads: Column sums in cell-level units (any shape).
        step: ADC step of each read (:func:`adc_steps` of its crossbar), broadcastable to ``reads``.
        cfg: The numerics.
        generator: Generator of the read noise (needed when ``read_noise_lsb > 0``).

    Returns:
        ``reads`` plus the read noise (``read_noise_lsb`` steps), then, with a ``b``-bit ADC,
        rounded to the step and clipped to ``0 .. (2^b - 1) * step``.
    """
    s = step.to(reads.device, reads.dtype)
    if cfg.read_noise_lsb > 0:
        if generator is None:
            raise ValueError("read noise needs a generator")
        noise = torch.randn(reads.shape, generator=generator).to(reads.device, reads.dtype)
        reads = reads + noise * (cfg.read_noise_lsb * s)
    if cfg.adc_bits is None:
        return reads
    top = float((1 << cfg.adc_bits) - 1)
    return (reads / s).round_().clamp_(0.0, top).mul_(s)
