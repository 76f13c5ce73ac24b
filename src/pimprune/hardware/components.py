"""Component models of a crossbar accelerator (DACs, arrays, registers, adders, chip, sign schemes).

ISAAC (Shafiee et al., ISCA 2016) quotes power at its operating point; the
defaults here are energy per event: each power figure times the 100 ns cycle,
divided by the events it pays for in one cycle of one IMA (8 arrays of
128x128). Area figures are divided by the number of units.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from pimprune.errors import ConfigError
from pimprune.registry import Registry

__all__ = [
    "SIGN_SCHEMES",
    "TILE_POLICIES",
    "AdderModel",
    "ArrayModel",
    "ChipLayout",
    "DacModel",
    "ImaLayout",
    "IndexOverhead",
    "Registers",
    "SampleHold",
    "ShiftAdd",
    "SignScheme",
    "check_fields",
]

#: ISAAC Table I reference point used by the derivations below: one IMA, one cycle.
_ISAAC_CYCLE_NS = 100.0  # crossbar read cycle (ns)
_ISAAC_ARRAYS = 8  # arrays per IMA
_ISAAC_CELLS = 8 * 128 * 128  # memristor cells per IMA
_ISAAC_LINES = 8 * 128  # DACs (rows) and sample-and-holds (columns) per IMA
_ISAAC_CONVERSIONS = 8 * 128  # ADC conversions per cycle per IMA (8 ADCs x 1.28 GS/s x 100 ns)
_ISAAC_INPUT_BITS_READ = 8 * 128 * 1  # input-register bits read per cycle (1-bit DAC per row)
_ISAAC_INPUT_REG_BITS = 2048 * 8  # 2 KB input register
_ISAAC_OUTPUT_REG_BITS = 256 * 8  # 256 B output register, written once per cycle
_ISAAC_SA_UNITS = 4  # shift-and-add units per IMA (Table I: 4 units, 0.2 mW, 0.00024 mm^2)
_ISAAC_SA_OPS = _ISAAC_CONVERSIONS // _ISAAC_SA_UNITS  # values one unit merges per 100 ns cycle (256)
_MM2 = 1e6  # um^2 per mm^2


def check_fields(obj: Any, prefix: str, positive: tuple[str, ...] = ()) -> None:
    """Check that every numeric field of a dataclass is finite and >= 0 (> 0 for ``positive``).

    Raises:
        ConfigError: naming the field by ``prefix`` + its name.
    """
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
        check_fields(self, "dac.")


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
        check_fields(self, "sample_hold.")


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
        check_fields(self, "array.")


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
        check_fields(self, "shift_add.")


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
        check_fields(self, "registers.", positive=("partial_sum_bits",))


@dataclass(frozen=True)
class IndexOverhead:
    """Index of a compacted crossbar (docs/design.md section 6) and the routing it drives.

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
        check_fields(self, "index.")


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
        check_fields(self, "ima.", positive=("arrays", "rows", "cols"))


#: Ways of giving layers the tiles of a chip (:mod:`pimprune.hardware.chip`).
TILE_POLICIES: tuple[str, ...] = ("tile-per-layer", "shared")


@dataclass(frozen=True)
class AdderModel:
    """Digital adders that sum the partial sums of one output computed on several crossbars.

    A layer whose matrix is taller than ``R`` (per-layer mapping), or a block that network
    packing splits along its rows, computes each output on several crossbars; their partial
    sums (after each crossbar's shift-and-add) meet in an adder, once per MVM:
    ``contributions - 1`` adds per output (docs/hardware.md, "What sharing costs and what
    tiles cost").

    Attributes:
        energy_pj_per_add: Energy of one add of two partial sums (pJ). ISAAC Table I lists one
            shift-and-add (S+A) unit per tile for the partial sums of its IMAs, 0.05 mW and
            0.00006 mm^2: the same unit as the IMA's four (0.2 mW, 0.00024 mm^2), which merge
            the 1024 conversions of one 100 ns cycle, 256 each. One add:
            0.05 mW * 100 ns / 256 = 0.0195 pJ. (NeuroSim calls the same circuit the
            accumulation adder tree.)
        area_um2_per_unit: Area of one adder unit (um^2): ISAAC's S+A, 0.00006 mm^2 = 60 um^2.
        adds_per_unit_per_cycle: Adds one unit performs per read cycle (ISAAC: 256, see above).
            A layer gets ``ceil(adds per MVM / (adds_per_unit_per_cycle * input cycles))``
            units, so its adds of one MVM finish within the MVM's read cycles.
    """

    energy_pj_per_add: float = 0.2 / _ISAAC_SA_UNITS * _ISAAC_CYCLE_NS / _ISAAC_SA_OPS
    area_um2_per_unit: float = 0.00024 / _ISAAC_SA_UNITS * _MM2
    adds_per_unit_per_cycle: int = _ISAAC_SA_OPS

    def __post_init__(self) -> None:
        check_fields(self, "adder.", positive=("adds_per_unit_per_cycle",))


@dataclass(frozen=True)
class ChipLayout:
    """The chip's hierarchy: arrays into PEs (ISAAC: IMAs) into tiles into a chip.

    Used for latency and replication (:mod:`pimprune.hardware.latency`) and for the tiles a
    mapped network takes (:mod:`pimprune.hardware.chip`, which also has a NeuroSim preset).

    Attributes:
        tiles: Tiles per chip (ISAAC: 168 tiles per chip, Shafiee et al. 2016, section 6).
        arrays_per_tile: Physical arrays per tile (ISAAC: 12 IMAs of 8 arrays = 96). A
            logical crossbar takes :attr:`HardwareConfig.physical_arrays` of them.
        arrays_per_pe: Physical arrays per processing element (ISAAC: an IMA of 8 arrays).
            Must divide ``arrays_per_tile``.
        tile_policy: How layers take tiles, one of :data:`TILE_POLICIES`: ``tile-per-layer``
            (every layer, or group of layers sharing crossbars, takes whole tiles of its
            own: ISAAC and NeuroSim) or ``shared`` (layers packed into common tiles).
        tile_periphery_um2: Area of a tile besides its arrays and their peripherals (um^2):
            ISAAC's eDRAM buffer, bus, router share, sigmoid, S+A, max-pool and output
            register, about 0.215 mm^2 per tile (Table I: 0.372 mm^2 tile - 12 IMAs of
            0.0131 mm^2). 0 by default: like static power and the on-chip network, not
            modelled (docs/hardware.md section 3).
        replicate: Spend the crossbars the network leaves free on copies of its slowest
            layers (ISAAC balances its pipeline so); copies split a layer's MVMs.
        reprogram_us_per_pass: Time to rewrite the crossbars once (us) when the network
            (layer by layer: a layer) does not fit on the chip and runs in several passes.
            ISAAC keeps every weight resident and gives no figure: 0 (not modelled) by default.
    """

    tiles: int = 168
    arrays_per_tile: int = 96
    arrays_per_pe: int = 8
    tile_policy: str = "tile-per-layer"
    tile_periphery_um2: float = 0.0
    replicate: bool = True
    reprogram_us_per_pass: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self, "chip.", positive=("tiles", "arrays_per_tile", "arrays_per_pe"))
        if self.arrays_per_tile % self.arrays_per_pe:
            raise ConfigError(
                f"hardware field chip.arrays_per_pe ({self.arrays_per_pe}) must divide "
                f"chip.arrays_per_tile ({self.arrays_per_tile})"
            )
        if self.tile_policy not in TILE_POLICIES:
            raise ConfigError(
                f"hardware field chip.tile_policy must be one of {', '.join(TILE_POLICIES)}, got {self.tile_policy!r}"
            )


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


class CostTotals:
    """``energy_nj`` and ``area_mm2`` of a cost that has ``energy_breakdown`` and ``area_breakdown``."""

    energy_breakdown: dict[str, float]
    area_breakdown: dict[str, float]

    @property
    def energy_nj(self) -> float:
        """Energy per inference (nJ): the sum over components."""
        return sum(self.energy_breakdown.values())

    @property
    def area_mm2(self) -> float:
        """Area (mm^2): the sum over components."""
        return sum(self.area_breakdown.values())


def physical_arrays(slices: int, signed: str) -> int:
    """Physical arrays per logical crossbar: weight slices x the sign scheme's array factor."""
    return slices * SIGN_SCHEMES.get(signed).array_factor
