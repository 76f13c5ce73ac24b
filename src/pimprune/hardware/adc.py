"""ADC models: the resolution a column needs and how energy and area scale with it.

The ``table`` law scales the ISAAC ADC with resolution at 32 nm (docs/design.md
section 6); the ``walden`` and ``schreier`` laws hold a figure of merit fixed,
anchored on the table's 8-bit entry so every law agrees with ISAAC at 8 bits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pimprune.errors import ConfigError
from pimprune.hardware.components import check_fields
from pimprune.registry import Registry

__all__ = [
    "ADC_ANCHOR_BITS",
    "ADC_AREA_UM2_BY_BITS",
    "ADC_ENERGY_PJ_BY_BITS",
    "ADC_LAWS",
    "SCHREIER_FOM_DB",
    "WALDEN_FOM_FJ_PER_STEP",
    "AdcLaw",
    "AdcModel",
    "adc_bits",
]

#: ADC energy per conversion at 32 nm by resolution (bits -> pJ): the ISAAC ADC
#: scaled with resolution (Saberi-style scaling), docs/design.md section 6.
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

    ``ceil(log2(R*(2^w-1)*(2^v-1) + 1)) - bits_saved`` (docs/design.md section 6), at
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
        "the ISAAC ADC scaled by resolution (docs/design.md section 6): energy about 1.2x per bit",
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
            Source: docs/design.md section 6, the ISAAC ADC scaled with resolution at 32 nm.
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
        check_fields(
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

