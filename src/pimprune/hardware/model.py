"""Hardware model of a crossbar processing-in-memory accelerator: configuration and presets.

Every constant of the energy / area / latency model (:mod:`pimprune.hardware.cost`)
lives here, in typed frozen dataclasses whose field names carry the unit and
whose docstrings give the source. The defaults are the ``isaac`` preset:
ISAAC (Shafiee et al., ISCA 2016), 32 nm, Table I, one IMA = 8 memristor
arrays of 128x128 2-bit cells with 1-bit DACs and one 8-bit 1.28 GS/s SAR ADC
per array (DESIGN.md section 6).

ISAAC quotes *power* at its operating point (every array read once per 100 ns
cycle, every ADC converting 1.28 G samples/s). The model needs *energy per
event*, so each power figure is divided by the number of events it pays for in
one 100 ns cycle of one IMA; the area figures are divided by the number of
units. Each default below states that derivation, so the derived IMA power and
area (``pimprune hardware isaac``) reproduce Table I.

Configurations are loaded from YAML or JSON (:func:`load_preset`), and any
field can be overridden by its dotted path (:func:`with_overrides`), e.g.
``{"adc.sampling_rate_gsps": 2.56, "read_cycle_ns": 50}``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pimprune.errors import ConfigError
from pimprune.registry import Registry

__all__ = [
    "ADC_LAWS",
    "PRESETS",
    "SIGN_SCHEMES",
    "AdcLaw",
    "AdcModel",
    "ChipLayout",
    "ArrayModel",
    "DacModel",
    "HardwareConfig",
    "ImaLayout",
    "IndexOverhead",
    "Registers",
    "SampleHold",
    "ShiftAdd",
    "SignScheme",
    "adc_bits",
    "config_to_dict",
    "config_from_dict",
    "load_preset",
    "with_overrides",
]

#: ADC energy per conversion at 32 nm by resolution (bits -> pJ): the ISAAC ADC
#: scaled with resolution (Saberi-style scaling), DESIGN.md section 6.
ADC_ENERGY_PJ_BY_BITS: tuple[tuple[int, float], ...] = (
    (4, 0.79),
    (5, 0.99),
    (6, 1.20),
    (7, 1.42),
    (8, 1.67),
    (9, 1.97),
    (10, 2.38),
)

#: ADC area at 32 nm by resolution (bits -> um^2), same source as the energy table.
ADC_AREA_UM2_BY_BITS: tuple[tuple[int, float], ...] = (
    (4, 361.0),
    (5, 477.0),
    (6, 627.0),
    (7, 845.0),
    (8, 1200.0),
    (9, 1828.0),
    (10, 3002.0),
)


def adc_bits(active_rows: int, cell_bits: int, dac_bits: int, bits_saved: int = 0) -> int:
    """ADC resolution that a column summing ``active_rows`` cells needs.

    ``ceil(log2(R*(2^w-1)*(2^v-1) + 1)) - bits_saved`` (DESIGN.md section 6), at
    least 1 bit; 0 for a column with no active row. With ``R=128``, ``w=2``,
    ``v=1`` this is 9 bits; ISAAC's weight encoding saves one (``bits_saved=1``).

    Args:
        active_rows: Rows ``R`` driven at once.
        cell_bits: Bits ``w`` per memristor cell.
        dac_bits: Bits ``v`` per DAC conversion.
        bits_saved: Bits an encoding saves (ISAAC: 1).
    """
    if active_rows <= 0:
        return 0
    max_sum = active_rows * ((1 << cell_bits) - 1) * ((1 << dac_bits) - 1)
    return max(1, max_sum.bit_length() - bits_saved)  # bit_length(x) = ceil(log2(x+1))


def _table(value: Any, what: str) -> tuple[tuple[int, float], ...]:
    """Normalise a ``bits -> value`` table (mapping or pairs) to sorted pairs."""
    try:
        pairs = value.items() if isinstance(value, Mapping) else value
        out = tuple(sorted((int(b), float(v)) for b, v in pairs))
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must map ADC bits to numbers, e.g. {{8: 1.67, 9: 1.97}}; got {value!r}") from None
    if len(out) < 2:
        raise ConfigError(f"{what} needs at least two resolutions to scale between, got {value!r}")
    bits = [b for b, _ in out]
    if len(set(bits)) != len(bits) or bits[0] < 1:
        raise ConfigError(f"{what} must have distinct positive bit counts, got {value!r}")
    vals = [v for _, v in out]
    if any(not (math.isfinite(v) and v > 0) for v in vals):
        raise ConfigError(f"{what} values must be positive numbers, got {value!r}")
    if any(b < a for a, b in zip(vals, vals[1:], strict=False)):
        raise ConfigError(f"{what} must not decrease with more bits, got {value!r}")
    return out


def _lookup(table: tuple[tuple[int, float], ...], bits: int) -> float:
    """Table value at ``bits``; log-linear between entries, extrapolated above, clamped below.

    Below the smallest resolution the smallest entry is used (a SAR ADC of a
    few bits is dominated by fixed costs). Above the largest, the ratio of the
    last two entries is applied per extra bit.
    """
    if bits <= table[0][0]:
        return table[0][1]
    (b1, v1), (b2, v2) = table[-2], table[-1]
    if bits >= b2:
        return v2 * (v2 / v1) ** ((bits - b2) / (b2 - b1))
    for (lo, vlo), (hi, vhi) in zip(table, table[1:], strict=False):
        if lo <= bits <= hi:
            t = (bits - lo) / (hi - lo)
            return vlo * (vhi / vlo) ** t
    raise AssertionError("unreachable")  # pragma: no cover


#: Resolution (bits) at which the scaling laws are anchored to the table (ISAAC's 8-bit ADC).
ADC_ANCHOR_BITS = 8
#: Walden figure of merit (fJ per conversion step) that puts a fixed-FoM converter on the
#: table's 8-bit entry: 1.67 pJ / 2^8 = 6.52 fJ/step. For comparison ISAAC's own ADC is
#: 2 mW / (1.28 GS/s * 2^8) = 6.1 fJ/step at 8 bits; Murmann's ADC survey (1997-2024)
#: places published GS/s SAR converters at a few to a few tens of fJ/step.
WALDEN_FOM_FJ_PER_STEP = 1670.0 / 2**ADC_ANCHOR_BITS
#: Schreier figure of merit (dB) that puts a fixed-FoM converter on the same 8-bit point:
#: ``FoM_S = SNDR + 10 log10(BW / P)`` with ``SNDR = 6.02 b + 1.76`` dB and ``BW = f_s / 2``,
#: so ``E = P / f_s = 10^((SNDR - FoM_S) / 10) / 2`` J; 1.67 pJ at 8 bits gives 164.7 dB.
SCHREIER_FOM_DB = 6.02 * ADC_ANCHOR_BITS + 1.76 - 10 * math.log10(2 * 1.67e-12)


@dataclass(frozen=True)
class AdcLaw:
    """How ADC energy per conversion and area grow with resolution (a name of :data:`ADC_LAWS`).

    Attributes:
        energy_pj: ``(adc, bits) -> pJ`` per conversion at ``bits`` (> 0 bits).
        area_um2: ``(adc, bits) -> um^2`` per converter at ``bits`` (>= 1 bit).
        description: One line for help texts and docs.
    """

    energy_pj: Callable[[AdcModel, int], float]
    area_um2: Callable[[AdcModel, int], float]
    description: str


def _rate_penalty(adc: AdcModel, bits: int) -> float:
    """Murmann-survey speed corner: above ``rate_corner_gsps`` energy grows with the rate."""
    if adc.rate_corner_gsps is None:
        return 1.0
    return max(1.0, adc.rate_gsps(bits) / adc.rate_corner_gsps)


def _enob(adc: AdcModel, bits: int) -> float:
    return max(0.0, bits - adc.enob_loss_bits)


def _area_by_growth(adc: AdcModel, bits: int) -> float:
    """Area of a converter whose capacitive DAC doubles per bit, anchored at the table's 8 bits."""
    anchor = _lookup(adc.area_um2_by_bits, ADC_ANCHOR_BITS)
    return anchor * adc.area_growth_per_bit ** (max(bits, 1) - ADC_ANCHOR_BITS)


#: ADC scaling laws (``adc.law``).
ADC_LAWS: Registry[AdcLaw] = Registry("ADC scaling law")
ADC_LAWS.add(
    "table",
    AdcLaw(
        lambda adc, b: _lookup(adc.energy_pj_by_bits, b),
        lambda adc, b: _lookup(adc.area_um2_by_bits, max(b, 1)),
        "the ISAAC ADC scaled by resolution (DESIGN.md 6): energy about 1.2x per bit",
    ),
)
ADC_LAWS.add(
    "walden",
    AdcLaw(
        lambda adc, b: adc.walden_fom_fj_per_step * 2 ** _enob(adc, b) * _rate_penalty(adc, b) / 1e3,
        _area_by_growth,
        "fixed Walden figure of merit (Walden 1999): E = FoM * 2^ENOB, 2x per effective bit",
    ),
)
ADC_LAWS.add(
    "schreier",
    AdcLaw(
        lambda adc, b: (
            0.5e12 * 10 ** ((6.02 * _enob(adc, b) + 1.76 - adc.schreier_fom_db) / 10) * _rate_penalty(adc, b)
        ),
        _area_by_growth,
        "fixed Schreier figure of merit (thermal-noise limited): E = 10^((SNDR - FoM_S)/10) / 2, 4x per bit",
    ),
)


@dataclass(frozen=True)
class AdcModel:
    """Analog-to-digital converters reading the bitlines (SAR, one per ``columns_per_adc``).

    Attributes:
        law: Scaling law of energy and area with resolution, a name of :data:`ADC_LAWS`:
            ``table`` (the two tables below), ``walden`` (fixed Walden FoM, 2x energy per
            effective bit) or ``schreier`` (fixed Schreier FoM, 4x per bit). The default
            and its justification (``walden``, anchored on the table's 8-bit entry, so the
            ISAAC check is the same under every law): docs/hardware.md section 2.
        energy_pj_by_bits: Energy per conversion (pJ) by resolution (bits), law ``table``.
            Source: DESIGN.md section 6, the ISAAC ADC scaled with resolution at 32 nm.
            (ISAAC's own 8-bit ADC is 2 mW / 1.28 GS/s = 1.56 pJ, 7% below the table.)
        area_um2_by_bits: Area per ADC (um^2) by resolution (bits); same source
            (8 bits: 1200 um^2 = ISAAC's 0.0096 mm^2 / 8 ADCs). The FoM laws take their
            8-bit anchor from it.
        walden_fom_fj_per_step: Walden FoM ``P / (f_s 2^ENOB)`` (fJ per conversion step),
            law ``walden``; default :data:`WALDEN_FOM_FJ_PER_STEP` (on the table at 8 bits).
        schreier_fom_db: Schreier FoM ``SNDR + 10 log10(f_s / 2 / P)`` (dB), law
            ``schreier``; default :data:`SCHREIER_FOM_DB` (on the table at 8 bits).
        enob_loss_bits: Effective bits lost to noise and distortion (bits): the FoM laws
            use ``ENOB = bits - enob_loss_bits``. 0: the anchor already holds the loss.
        area_growth_per_bit: Area factor per extra bit for the FoM laws (a SAR capacitive
            DAC of ``2^b`` unit capacitors: 2). The table grows 1.5-1.6x per bit at 8-10 bits.
        rate_corner_gsps: Sampling rate (G samples/s) above which the FoM laws' energy per
            conversion grows in proportion to the rate (Murmann's survey: the FoM envelope
            degrades above a speed corner). None: no rate dependence (default).
        sampling_rate_gsps: Conversions per ns (G samples/s) at ``reference_bits``.
            ISAAC Table I: 1.28 GS/s, i.e. 128 columns per 100 ns cycle.
        reference_bits: Resolution at which ``sampling_rate_gsps`` holds (ISAAC: 8).
        rate_scales_with_bits: A SAR ADC spends one clock per bit, so at ``b`` bits it
            converts at ``sampling_rate_gsps * reference_bits / b`` (this project's
            assumption; set False for a fixed rate).
        bits: Fixed resolution for every crossbar (bits); None derives it from the active
            rows of each crossbar with :func:`adc_bits`.
    """

    law: str = "walden"
    energy_pj_by_bits: tuple[tuple[int, float], ...] = ADC_ENERGY_PJ_BY_BITS
    area_um2_by_bits: tuple[tuple[int, float], ...] = ADC_AREA_UM2_BY_BITS
    walden_fom_fj_per_step: float = WALDEN_FOM_FJ_PER_STEP
    schreier_fom_db: float = SCHREIER_FOM_DB
    enob_loss_bits: float = 0.0
    area_growth_per_bit: float = 2.0
    rate_corner_gsps: float | None = None
    sampling_rate_gsps: float = 1.28
    reference_bits: int = 8
    rate_scales_with_bits: bool = True
    bits: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "energy_pj_by_bits", _table(self.energy_pj_by_bits, "adc.energy_pj_by_bits"))
        object.__setattr__(self, "area_um2_by_bits", _table(self.area_um2_by_bits, "adc.area_um2_by_bits"))
        ADC_LAWS.get(self.law)
        _check_numbers(
            self,
            "adc.",
            positive=("walden_fom_fj_per_step", "schreier_fom_db", "area_growth_per_bit", "rate_corner_gsps"),
        )

    def energy_pj(self, bits: int) -> float:
        """Energy of one conversion at ``bits`` resolution (pJ); 0 for 0 bits."""
        return 0.0 if bits <= 0 else ADC_LAWS.get(self.law).energy_pj(self, bits)

    def area_um2(self, bits: int) -> float:
        """Area of one ADC of ``bits`` resolution (um^2)."""
        return ADC_LAWS.get(self.law).area_um2(self, max(bits, 1))

    def rate_gsps(self, bits: int) -> float:
        """Conversions per ns at ``bits`` resolution."""
        if not self.rate_scales_with_bits or bits <= 0:
            return self.sampling_rate_gsps
        return self.sampling_rate_gsps * self.reference_bits / bits


#: ISAAC Table I reference point used by the derivations below: one IMA, one cycle.
_ISAAC_CYCLE_NS = 100.0  # crossbar read cycle (ns)
_ISAAC_ARRAYS = 8  # arrays per IMA
_ISAAC_CELLS = 8 * 128 * 128  # memristor cells per IMA
_ISAAC_LINES = 8 * 128  # DACs (rows) and sample-and-holds (columns) per IMA
_ISAAC_CONVERSIONS = 8 * 128  # ADC conversions per cycle per IMA (8 ADCs x 1.28 GS/s x 100 ns)
_ISAAC_INPUT_BITS_READ = 8 * 128 * 1  # input-register bits read per cycle (1-bit DAC per row)
_ISAAC_INPUT_REG_BITS = 2048 * 8  # 2 KB input register
_ISAAC_OUTPUT_REG_BITS = 256 * 8  # 256 B output register, written once per cycle
_MM2 = 1e6  # um^2 per mm^2


def _check_numbers(obj: Any, prefix: str, positive: tuple[str, ...] = ()) -> None:
    """Every numeric field finite and >= 0 (> 0 for the names in ``positive``)."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v) or v < 0 or (f.name in positive and v <= 0):
            need = "> 0" if f.name in positive else ">= 0"
            raise ConfigError(f"hardware field {prefix}{f.name} must be a finite number {need}, got {v}")


@dataclass(frozen=True)
class DacModel:
    """Digital-to-analog converters driving the wordlines (one per row of each array).

    Attributes:
        energy_pj_per_conversion: Energy per DAC conversion (pJ). ISAAC Table I:
            4 mW for 8x128 1-bit DACs, each converting once per 100 ns cycle:
            4 mW * 100 ns / 1024 = 0.39 pJ (mW * ns = pJ). For a wider DAC override it.
        area_um2: Area per DAC (um^2). ISAAC: 0.00017 mm^2 / 1024 = 0.166 um^2.
    """

    energy_pj_per_conversion: float = 4.0 * _ISAAC_CYCLE_NS / _ISAAC_LINES
    area_um2: float = 0.00017 * _MM2 / _ISAAC_LINES

    def __post_init__(self) -> None:
        _check_numbers(self, "dac.")


@dataclass(frozen=True)
class SampleHold:
    """Sample-and-hold circuits, one per bitline of each array.

    Attributes:
        energy_pj_per_sample: Energy per sample (pJ). ISAAC Table I: 10 uW for 8x128,
            one sample per 100 ns cycle: 0.01 mW * 100 ns / 1024 = 9.8e-4 pJ.
        area_um2: Area per sample-and-hold (um^2). ISAAC: 0.00004 mm^2 / 1024 = 0.039 um^2.
    """

    energy_pj_per_sample: float = 0.010 * _ISAAC_CYCLE_NS / _ISAAC_LINES
    area_um2: float = 0.00004 * _MM2 / _ISAAC_LINES

    def __post_init__(self) -> None:
        _check_numbers(self, "sample_hold.")


@dataclass(frozen=True)
class ArrayModel:
    """The memristor arrays themselves; energy and area scale with the cells used / built.

    Attributes:
        energy_pj_per_cell_read: Energy of one cell on an active row and a read column
            per read cycle (pJ). ISAAC Table I: 2.4 mW for 8 arrays of 128x128 read once
            per 100 ns: 2.4 mW * 100 ns / 131072 cells = 1.83e-3 pJ.
        area_um2_per_cell: Area per cell (um^2). ISAAC: 0.0002 mm^2 / 131072 cells.
    """

    energy_pj_per_cell_read: float = 2.4 * _ISAAC_CYCLE_NS / _ISAAC_CELLS
    area_um2_per_cell: float = 0.0002 * _MM2 / _ISAAC_CELLS

    def __post_init__(self) -> None:
        _check_numbers(self, "array.")


@dataclass(frozen=True)
class ShiftAdd:
    """Shift-and-add units merging ADC outputs across weight slices and input bits.

    Attributes:
        energy_pj_per_op: Energy per ADC output merged (pJ). ISAAC Table I: 0.2 mW for
            4 units handling the 1024 conversions of a 100 ns cycle: 0.2 * 100 / 1024 pJ.
        area_um2_per_adc: Area per ADC served (um^2). ISAAC: 0.00024 mm^2 for 4 units
            serving 8 ADCs = 30 um^2 per ADC.
    """

    energy_pj_per_op: float = 0.2 * _ISAAC_CYCLE_NS / _ISAAC_CONVERSIONS
    area_um2_per_adc: float = 0.00024 * _MM2 / _ISAAC_ARRAYS

    def __post_init__(self) -> None:
        _check_numbers(self, "shift_add.")


@dataclass(frozen=True)
class Registers:
    """Input register (feeds the DACs) and output register (holds partial sums).

    Attributes:
        input_energy_pj_per_bit: Energy per input bit read (pJ). ISAAC Table I: 2 KB,
            1.24 mW, 8x128 bits read per 100 ns cycle: 1.24 * 100 / 1024 = 0.121 pJ.
        input_area_um2_per_bit: Area per input-register bit (um^2): 0.0021 mm^2 / 16384 bits.
        output_energy_pj_per_bit: Energy per output bit written (pJ). ISAAC Table I:
            256 B, 0.23 mW, the 128 16-bit partial sums written per cycle:
            0.23 * 100 / 2048 = 0.0112 pJ.
        output_area_um2_per_bit: Area per output-register bit (um^2): 0.00077 mm^2 / 2048 bits.
        partial_sum_bits: Bits of one partial sum per logical column (ISAAC: 16).
    """

    input_energy_pj_per_bit: float = 1.24 * _ISAAC_CYCLE_NS / _ISAAC_INPUT_BITS_READ
    input_area_um2_per_bit: float = 0.0021 * _MM2 / _ISAAC_INPUT_REG_BITS
    output_energy_pj_per_bit: float = 0.23 * _ISAAC_CYCLE_NS / _ISAAC_OUTPUT_REG_BITS
    output_area_um2_per_bit: float = 0.00077 * _MM2 / _ISAAC_OUTPUT_REG_BITS
    partial_sum_bits: int = 16

    def __post_init__(self) -> None:
        _check_numbers(self, "registers.", positive=("partial_sum_bits",))


@dataclass(frozen=True)
class IndexOverhead:
    """Index of a compacted crossbar (DESIGN.md section 6) and the routing it drives.

    ``subrow`` packing stores ``ceil(log2(M))`` bits per used row (which matrix
    row drives that wordline); ``subcolumn`` packing ``ceil(log2(N))`` bits per
    used column (which output that bitline adds into). The index is read once
    per matrix-vector product (the routing holds during the input bit cycles);
    every indexed line passes a multiplexer every cycle.

    Attributes:
        register_energy_pj_per_bit: Energy per index bit read (pJ); a register read, taken
            as ISAAC's input-register energy per bit (1.24 * 100 / 1024 pJ).
        register_area_um2_per_bit: Area per stored index bit (um^2); ISAAC's input-register
            area per bit (0.0021 mm^2 / 16384 bits).
        mux_energy_pj_per_line_cycle: Routing energy per indexed input or output per cycle
            (pJ). No published figure: this project's assumption, one register-bit access
            (the ISAAC input-register energy per bit, 0.121 pJ), deliberately not small.
        mux_area_um2_per_select_bit: Multiplexer area per indexed line per select bit
            (um^2); assumption: one register bit of area per select bit.
    """

    register_energy_pj_per_bit: float = 1.24 * _ISAAC_CYCLE_NS / _ISAAC_INPUT_BITS_READ
    register_area_um2_per_bit: float = 0.0021 * _MM2 / _ISAAC_INPUT_REG_BITS
    mux_energy_pj_per_line_cycle: float = 1.24 * _ISAAC_CYCLE_NS / _ISAAC_INPUT_BITS_READ
    mux_area_um2_per_select_bit: float = 0.0021 * _MM2 / _ISAAC_INPUT_REG_BITS

    def __post_init__(self) -> None:
        _check_numbers(self, "index.")


@dataclass(frozen=True)
class ImaLayout:
    """The reference tile the preset's figures describe (ISAAC: an IMA).

    Attributes:
        arrays: Physical arrays per IMA (ISAAC: 8).
        rows: Rows per array (ISAAC: 128).
        cols: Columns per array (ISAAC: 128).
    """

    arrays: int = 8
    rows: int = 128
    cols: int = 128

    def __post_init__(self) -> None:
        _check_numbers(self, "ima.", positive=("arrays", "rows", "cols"))


@dataclass(frozen=True)
class ChipLayout:
    """How many crossbars a chip holds, for latency and replication (:mod:`pimprune.hardware.latency`).

    Attributes:
        tiles: Tiles per chip (ISAAC: 168 tiles per chip, Shafiee et al. 2016, section 6).
        arrays_per_tile: Physical arrays per tile (ISAAC: 12 IMAs of 8 arrays = 96). A
            logical crossbar takes :attr:`HardwareConfig.physical_arrays` of them.
        replicate: Spend the crossbars the network leaves free on copies of its slowest
            layers (ISAAC balances its pipeline so); copies split a layer's MVMs.
        reprogram_us_per_pass: Time to rewrite the crossbars once (us) when the network
            (layer by layer: a layer) does not fit on the chip and runs in several passes.
            ISAAC keeps every weight resident and gives no figure: 0 (not modelled) by default.
    """

    tiles: int = 168
    arrays_per_tile: int = 96
    replicate: bool = True
    reprogram_us_per_pass: float = 0.0

    def __post_init__(self) -> None:
        _check_numbers(self, "chip.", positive=("tiles", "arrays_per_tile"))


@dataclass(frozen=True)
class SignScheme:
    """How signed weights are stored.

    Attributes:
        array_factor: Physical arrays per weight slice (2: positive and negative arrays).
        extra_columns: Extra bitlines per array (1: a reference column whose sum is
            subtracted from every column of a biased encoding).
        description: One line for help texts.
    """

    array_factor: int
    extra_columns: int
    description: str


#: Signed-weight schemes (``HardwareConfig.signed``).
SIGN_SCHEMES: Registry[SignScheme] = Registry("signed-weight scheme")
SIGN_SCHEMES.add(
    "offset",
    SignScheme(1, 1, "weights stored with a bias; one reference column per array removes it"),
)
SIGN_SCHEMES.add("differential", SignScheme(2, 0, "positive and negative weights on two arrays, subtracted"))
SIGN_SCHEMES.add("unsigned", SignScheme(1, 0, "no sign handling (unsigned weights)"))


@dataclass(frozen=True)
class HardwareConfig:
    """A crossbar accelerator: data widths, timing and every component model.

    The defaults are the ``isaac`` preset (ISAAC, ISCA 2016, Table I, 32 nm).

    Attributes:
        name: Preset name.
        technology: Process node the constants are for.
        source: Where the constants come from.
        cell_bits: Bits per memristor cell ``w`` (ISAAC: 2).
        weight_bits: Bits per weight (ISAAC: 16); a weight spans
            ``ceil(weight_bits / cell_bits)`` slices on separate arrays.
        input_bits: Bits per input (ISAAC: 16), fed ``dac_bits`` per cycle.
        dac_bits: Bits per DAC conversion ``v`` (ISAAC: 1).
        signed: Signed-weight scheme, a name of :data:`SIGN_SCHEMES` (ISAAC-like: offset).
        adc_bits_saved: ADC bits an encoding saves over :func:`adc_bits` (ISAAC's
            weight flipping saves 1, giving its 8-bit ADC for 128 rows).
        columns_per_adc: Bitlines sharing one ADC (ISAAC: 128, one ADC per array); a
            shared ADC converts its columns one after the other.
        read_cycle_ns: Crossbar read cycle (ns) (ISAAC: 100).
        adc: ADC model.
        dac: DAC model.
        sample_hold: Sample-and-hold model.
        array: Memristor array model.
        shift_add: Shift-and-add model.
        registers: Input / output register model.
        index: Index and routing overhead of compacted crossbars.
        ima: Reference tile of the preset's headline figures.
        chip: Tiles and arrays of the chip, for latency and replication.
    """

    name: str = "isaac"
    technology: str = "32nm"
    source: str = "ISAAC (Shafiee et al., ISCA 2016) Table I; ADC scaling of DESIGN.md 6"
    cell_bits: int = 2
    weight_bits: int = 16
    input_bits: int = 16
    dac_bits: int = 1
    signed: str = "offset"
    adc_bits_saved: int = 1
    columns_per_adc: int = 128
    read_cycle_ns: float = 100.0
    adc: AdcModel = field(default_factory=AdcModel)
    dac: DacModel = field(default_factory=DacModel)
    sample_hold: SampleHold = field(default_factory=SampleHold)
    array: ArrayModel = field(default_factory=ArrayModel)
    shift_add: ShiftAdd = field(default_factory=ShiftAdd)
    registers: Registers = field(default_factory=Registers)
    index: IndexOverhead = field(default_factory=IndexOverhead)
    ima: ImaLayout = field(default_factory=ImaLayout)
    chip: ChipLayout = field(default_factory=ChipLayout)

    def __post_init__(self) -> None:
        _check_numbers(
            self,
            "",
            positive=(
                "cell_bits",
                "weight_bits",
                "input_bits",
                "dac_bits",
                "columns_per_adc",
                "read_cycle_ns",
            ),
        )
        for name in ("cell_bits", "dac_bits"):
            if getattr(self, name) > 16:
                raise ConfigError(f"hardware field {name} must be at most 16, got {getattr(self, name)}")
        SIGN_SCHEMES.get(self.signed)
        if self.adc.sampling_rate_gsps <= 0 or self.adc.reference_bits < 1:
            raise ConfigError(
                "adc.sampling_rate_gsps must be > 0 and adc.reference_bits >= 1, got "
                f"{self.adc.sampling_rate_gsps} and {self.adc.reference_bits}"
            )
        if self.adc.bits is not None and self.adc.bits < 1:
            raise ConfigError(f"adc.bits must be >= 1 or null (derived), got {self.adc.bits}")

    @property
    def slices(self) -> int:
        """Weight slices: arrays (or column groups) one weight spans, ``ceil(b_w / b_c)``."""
        return -(-self.weight_bits // self.cell_bits)

    @property
    def input_cycles(self) -> int:
        """Read cycles per matrix-vector product, ``ceil(input_bits / dac_bits)``."""
        return -(-self.input_bits // self.dac_bits)

    @property
    def sign(self) -> SignScheme:
        """The :class:`SignScheme` named by :attr:`signed`."""
        return SIGN_SCHEMES.get(self.signed)

    @property
    def physical_arrays(self) -> int:
        """Physical arrays per logical crossbar (one weight per cell): slices x sign factor."""
        return self.slices * self.sign.array_factor

    @property
    def chip_crossbars(self) -> int:
        """Logical crossbars the chip holds: ``tiles * floor(arrays_per_tile / physical_arrays)``."""
        return self.chip.tiles * (self.chip.arrays_per_tile // self.physical_arrays)

    def adc_resolution(self, active_rows: int) -> int:
        """ADC bits for ``active_rows`` rows: ``adc.bits`` if fixed, else :func:`adc_bits`."""
        if active_rows <= 0:
            return 0
        if self.adc.bits is not None:
            return self.adc.bits
        return adc_bits(active_rows, self.cell_bits, self.dac_bits, self.adc_bits_saved)


# --------------------------------------------------------------------------- (de)serialisation


def config_to_dict(cfg: HardwareConfig) -> dict[str, Any]:
    """Plain nested dictionary of a configuration (ADC tables as ``{bits: value}``)."""

    def conv(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {f.name: conv(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, tuple):
            return {int(b): v for b, v in obj}
        return obj

    return conv(cfg)


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check and convert a loaded value to a field type (bool, int, float, str, optional)."""
    args = typing.get_args(tp)
    if type(None) in args:
        if value is None:
            return None
        (tp,) = [a for a in args if a is not type(None)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # tables: normalised and checked by the dataclass
        return value
    raise ConfigError(f"hardware field {path} must be {_describe(tp)}, got {value!r}")


def _merge(cls: type, base: Any, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"hardware field {prefix.rstrip('.') or '(top level)'} must be a mapping of fields, got {data!r}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            where = f"of {prefix.rstrip('.')}" if prefix else "at the top level"
            raise ConfigError(f"unknown hardware field {path!r}; known fields {where}: {', '.join(sorted(fields))}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            changes[key] = _merge(tp, getattr(base, key), value, f"{path}.")
        else:
            changes[key] = _coerce(value, tp, path)
    try:
        return dataclasses.replace(base, **changes)
    except TypeError as exc:  # pragma: no cover - guarded by the field check above
        raise ConfigError(f"invalid hardware fields under {prefix or 'top level'}: {exc}") from None


def config_from_dict(data: Mapping[str, Any], base: HardwareConfig | None = None) -> HardwareConfig:
    """Build a configuration from a nested dictionary; missing fields come from ``base``.

    Raises:
        ConfigError: on an unknown field, a wrong type or an out-of-range value.
    """
    return _merge(HardwareConfig, base or HardwareConfig(), data, "")


def with_overrides(cfg: HardwareConfig, overrides: Mapping[str, Any]) -> HardwareConfig:
    """A copy of ``cfg`` with fields replaced by dotted path.

    Example: ``with_overrides(cfg, {"adc.sampling_rate_gsps": 2.56, "read_cycle_ns": 50})``.

    Raises:
        ConfigError: on an unknown path or an invalid value.
    """
    nested: dict[str, Any] = {}
    for path, value in overrides.items():
        parts = str(path).split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"hardware override {path!r} conflicts with another override")
        node[parts[-1]] = value
    return config_from_dict(nested, cfg)


# --------------------------------------------------------------------------- presets

#: Preset name -> YAML file in the ``pimprune/hardware/presets`` package folder.
PRESETS: Registry[str] = Registry("hardware preset")
PRESETS.add("isaac", "isaac32.yaml")

_MAX_BASE_DEPTH = 8


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read hardware file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = " ".join(str(exc).split())
        raise ConfigError(f"hardware file {path} is not valid YAML/JSON: {first[:200]}") from None


def _load(source: str | Path, depth: int) -> HardwareConfig:
    if depth > _MAX_BASE_DEPTH:
        raise ConfigError(f"hardware file {source}: 'base' chain deeper than {_MAX_BASE_DEPTH}")
    text = str(source)
    if text in PRESETS:
        path = Path(str(resources.files("pimprune") / "hardware" / "presets" / PRESETS.get(text)))
        default_name = text
    else:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(
                f"no hardware preset or file {text!r}; use a preset "
                f"({', '.join(PRESETS.names())}) or a .yaml/.json file"
            )
        default_name = path.stem
    data = _read_file(path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"hardware file {path} must hold a mapping of fields, got {type(data).__name__}")
    data = dict(data)
    base_ref = data.pop("base", None)
    if base_ref is not None:
        ref = str(base_ref)
        if ref not in PRESETS and not Path(ref).is_absolute():
            ref = str(path.parent / ref)
        base = _load(ref, depth + 1)
    else:
        base = HardwareConfig()
    data.setdefault("name", default_name)
    return config_from_dict(data, base)


def load_preset(source: str | Path | HardwareConfig = "isaac") -> HardwareConfig:
    """A configuration by preset name (``isaac``) or from a YAML / JSON file.

    A file may name ``base: PRESET_OR_FILE`` and give only the fields it changes;
    without ``base`` the missing fields take the ``isaac`` defaults.

    Raises:
        ConfigError: on a missing or unreadable file, or an invalid field.
    """
    if isinstance(source, HardwareConfig):
        return source
    return _load(source, 0)
