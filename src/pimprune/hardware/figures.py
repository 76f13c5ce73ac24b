"""Figures of one fully used crossbar and of the preset's reference tile (the ISAAC check).

Both come from the functions that cost a mapped network (:mod:`pimprune.hardware.cost`),
so ``pimprune hardware``, map, sweep and the IMA check share one costing path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pimprune.geometry import Crossbar
from pimprune.hardware.config import HardwareConfig
from pimprune.hardware.cost import adcs_per_array, crossbar_area_um2, crossbar_cycle_ns, crossbar_energy_pj

__all__ = ["CrossbarFigures", "ImaFigures", "crossbar_figures", "ima_figures"]

_UM2_PER_MM2 = 1e6


def _rounded(d: dict[str, float], digits: int) -> dict[str, float]:
    return {k: round(v, digits) for k, v in d.items()}


@dataclass(frozen=True)
class CrossbarFigures:
    """One logical crossbar ``RxC`` with every row and column in use (all its physical arrays).

    Attributes:
        rows: Rows ``R``.
        cols: Data columns ``C`` (the sign scheme's extra columns come on top).
        arrays: Physical arrays (weight slices x sign factor).
        adc_bits: ADC resolution for ``R`` active rows.
        adcs: ADCs over all its arrays.
        cycle_ns: Read cycle (ns): ``max(read_cycle_ns, ADC time)``.
        input_cycles: Read cycles per matrix-vector product.
        energy_pj: Energy of one matrix-vector product by component (pJ).
        area_mm2: Area by component (mm^2).
    """

    rows: int
    cols: int
    arrays: int
    adc_bits: int
    adcs: int
    cycle_ns: float
    input_cycles: int
    energy_pj: dict[str, float]
    area_mm2: dict[str, float]

    @property
    def energy_pj_per_mvm(self) -> float:
        """Energy of one matrix-vector product (pJ)."""
        return sum(self.energy_pj.values())

    @property
    def power_mw(self) -> dict[str, float]:
        """Power by component while computing MVMs back to back (mW = pJ / ns)."""
        t = self.input_cycles * self.cycle_ns
        return {k: v / t for k, v in self.energy_pj.items()}

    @property
    def total_power_mw(self) -> float:
        """Total power (mW)."""
        return self.energy_pj_per_mvm / (self.input_cycles * self.cycle_ns)

    @property
    def total_area_mm2(self) -> float:
        """Total area (mm^2)."""
        return sum(self.area_mm2.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the ``"crossbar"`` object of ``pimprune hardware --crossbar``)."""
        return {
            "crossbar": f"{self.rows}x{self.cols}",
            "physical_arrays": self.arrays,
            "adc_bits": self.adc_bits,
            "adcs": self.adcs,
            "cycle_ns": round(self.cycle_ns, 4),
            "energy_pj_per_mvm": round(self.energy_pj_per_mvm, 4),
            "power_mw": round(self.total_power_mw, 5),
            "area_mm2": round(self.total_area_mm2, 7),
            "energy_breakdown_pj": _rounded(self.energy_pj, 4),
            "power_breakdown_mw": _rounded(self.power_mw, 5),
            "area_breakdown_mm2": _rounded(self.area_mm2, 7),
        }


def crossbar_figures(hw: HardwareConfig, xbar: Crossbar | str) -> CrossbarFigures:
    """Figures of one fully used logical crossbar, from the functions that cost a network.

    Energy comes from :func:`crossbar_energy_pj`, area from :func:`crossbar_area_um2`
    and the cycle from :func:`crossbar_cycle_ns` of a crossbar with all ``R`` rows and
    ``C`` columns in use, exactly as :func:`layer_cost` costs a dense tile.
    """
    xbar = Crossbar.parse(xbar)
    rows, cols = np.array([xbar.rows]), np.array([xbar.cols])
    energy = crossbar_energy_pj(hw, rows, cols)
    area = crossbar_area_um2(hw, xbar, rows, cols)
    area.pop("index")
    return CrossbarFigures(
        rows=xbar.rows,
        cols=xbar.cols,
        arrays=hw.physical_arrays,
        adc_bits=hw.adc_resolution(xbar.rows),
        adcs=hw.physical_arrays * adcs_per_array(hw, xbar.cols),
        cycle_ns=float(crossbar_cycle_ns(hw, xbar, rows, cols)[0]),
        input_cycles=hw.input_cycles,
        energy_pj={k: float(v[0]) for k, v in energy.items() if k != "index"},
        area_mm2={k: v / _UM2_PER_MM2 for k, v in area.items()},
    )


@dataclass(frozen=True)
class ImaFigures:
    """Power and area of the preset's reference tile (ISAAC: one IMA), all lines active.

    Attributes:
        arrays: Physical arrays in the tile.
        rows: Rows per array.
        cols: Data columns per array (the sign scheme's extra columns come on top).
        adc_bits: ADC resolution for ``rows`` active rows.
        adcs: ADCs in the tile.
        cycle_ns: Read cycle (ns).
        power_mw: Power by component (mW).
        area_mm2: Area by component (mm^2).
    """

    arrays: int
    rows: int
    cols: int
    adc_bits: int
    adcs: int
    cycle_ns: float
    power_mw: dict[str, float]
    area_mm2: dict[str, float]

    @property
    def ima_power_mw(self) -> float:
        """Total power (mW)."""
        return sum(self.power_mw.values())

    @property
    def ima_area_mm2(self) -> float:
        """Total area (mm^2)."""
        return sum(self.area_mm2.values())

    @property
    def adc_power_share(self) -> float:
        """Fraction of the power spent in ADCs."""
        return self.power_mw["adc"] / self.ima_power_mw

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "arrays": self.arrays,
            "rows": self.rows,
            "cols": self.cols,
            "adc_bits": self.adc_bits,
            "adcs": self.adcs,
            "cycle_ns": round(self.cycle_ns, 4),
            "ima_power_mw": round(self.ima_power_mw, 4),
            "ima_area_mm2": round(self.ima_area_mm2, 6),
            "adc_power_share": round(self.adc_power_share, 4),
            "power_mw": _rounded(self.power_mw, 5),
            "area_mm2": _rounded(self.area_mm2, 7),
        }


def ima_figures(hw: HardwareConfig) -> ImaFigures:
    """Power and area of ``hw.ima``: :func:`crossbar_figures` of its geometry, scaled to its arrays.

    The tile's ``arrays`` physical arrays are ``arrays / physical_arrays`` logical
    crossbars of ``rows x cols`` (ISAAC: 8 arrays = one logical 128x128 crossbar of
    16-bit weights on 8 slices), costed by the same path as every mapped crossbar,
    the sign scheme's reference column included.
    """
    t = hw.ima
    one = crossbar_figures(hw, Crossbar(t.rows, t.cols))
    scale = t.arrays / one.arrays
    return ImaFigures(
        arrays=t.arrays,
        rows=t.rows,
        cols=t.cols,
        adc_bits=one.adc_bits,
        adcs=round(one.adcs * scale),
        cycle_ns=one.cycle_ns,
        power_mw={k: v * scale for k, v in one.power_mw.items()},
        area_mm2={k: v * scale for k, v in one.area_mm2.items()},
    )
