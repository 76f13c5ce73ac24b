"""ADC resolution and the scaling laws of ADC energy, area and rate."""

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimprune.errors import ConfigError, UnknownNameError
from pimprune.hardware.adc import ADC_LAWS, AdcModel, adc_bits
from pimprune.hardware.config import HardwareConfig, with_overrides

ISAAC = HardwareConfig()


def test_adc_bits_hand_values():
    # ceil(log2(R*(2^w-1)*(2^v-1)+1))
    assert adc_bits(128, 2, 1) == 9  # 128*3 = 384 -> log2(385) = 8.59 -> 9
    assert adc_bits(128, 2, 1, bits_saved=1) == 8  # ISAAC
    assert adc_bits(1, 2, 1) == 2  # 3 -> log2(4) = 2
    assert adc_bits(32, 2, 1) == 7  # 96 -> log2(97) = 6.6 -> 7
    assert adc_bits(85, 2, 1) == 8  # 255 -> log2(256) = 8 exactly
    assert adc_bits(86, 2, 1) == 9  # 258 -> log2(259) > 8
    assert adc_bits(512, 2, 1, 1) == 10
    assert adc_bits(16, 1, 2) == 6  # 16*1*3 = 48 -> log2(49) = 5.6 -> 6
    assert adc_bits(0, 2, 1) == 0
    assert adc_bits(1, 1, 1, bits_saved=5) == 1  # never below one bit


@settings(deadline=None, max_examples=60)
@given(
    rows=st.integers(1, 4096),
    extra=st.integers(0, 4096),
    cell=st.integers(1, 4),
    dac=st.integers(1, 4),
    saved=st.integers(0, 2),
)
def test_more_active_rows_never_fewer_adc_bits(rows, extra, cell, dac, saved):
    assert adc_bits(rows + extra, cell, dac, saved) >= adc_bits(rows, cell, dac, saved)
    hw = HardwareConfig(cell_bits=cell, dac_bits=dac, adc_bits_saved=saved)
    assert hw.adc_resolution(rows + extra) >= hw.adc_resolution(rows)
    exact = math.ceil(math.log2(rows * (2**cell - 1) * (2**dac - 1) + 1))
    assert adc_bits(rows, cell, dac) == exact


def test_adc_tables_lookup_clamp_and_extrapolation():
    adc = AdcModel(law="table")
    assert adc.energy_pj(8) == pytest.approx(1.67)
    assert adc.area_um2(10) == pytest.approx(3002.0)
    assert adc.energy_pj(2) == pytest.approx(0.79)  # below the table: smallest entry
    assert adc.energy_pj(0) == 0.0
    # above the table: the last ratio per bit
    assert adc.energy_pj(11) == pytest.approx(2.38 * 2.38 / 1.97)
    assert adc.area_um2(12) == pytest.approx(3002.0 * (3002.0 / 1828.0) ** 2)
    energies = [adc.energy_pj(b) for b in range(1, 16)]
    assert energies == sorted(energies)
    # SAR: one clock per bit, 1.28 GS/s at 8 bits
    assert adc.rate_gsps(8) == pytest.approx(1.28)
    assert adc.rate_gsps(10) == pytest.approx(1.28 * 8 / 10)
    assert dataclasses.replace(adc, rate_scales_with_bits=False).rate_gsps(10) == 1.28
    assert AdcModel().law == "walden"  # the default law (docs/hardware.md section 2)


@pytest.mark.parametrize(
    "table",
    [{8: 1.0}, {8: 2.0, 9: 1.0}, {8: -1.0, 9: 2.0}, "x", {"a": 1, "b": 2}],
)
def test_bad_adc_tables_are_config_errors(table):
    with pytest.raises(ConfigError):
        with_overrides(HardwareConfig(), {"adc.energy_pj_by_bits": table})


def test_adc_laws_are_anchored_at_8_bits_and_grow_as_cited():
    assert set(ADC_LAWS.names()) == {"table", "walden", "schreier"}
    table = with_overrides(ISAAC, {"adc.law": "table"}).adc
    walden = with_overrides(ISAAC, {"adc.law": "walden"}).adc
    schreier = with_overrides(ISAAC, {"adc.law": "schreier"}).adc
    for adc in (table, walden, schreier):
        assert adc.energy_pj(8) == pytest.approx(1.67)
        assert adc.area_um2(8) == pytest.approx(1200.0)
        assert adc.energy_pj(0) == 0.0
    for b in range(2, 14):
        assert walden.energy_pj(b + 1) / walden.energy_pj(b) == pytest.approx(2.0)
        assert schreier.energy_pj(b + 1) / schreier.energy_pj(b) == pytest.approx(10**0.602)
        assert walden.area_um2(b + 1) / walden.area_um2(b) == pytest.approx(2.0)
    # the FoM: E = FoM * 2^ENOB
    assert walden.energy_pj(9) == pytest.approx(walden.walden_fom_fj_per_step * 2**9 / 1e3)
    lossy = with_overrides(ISAAC, {"adc.law": "walden", "adc.enob_loss_bits": 1}).adc
    assert lossy.energy_pj(9) == pytest.approx(walden.energy_pj(8))


def test_rate_corner_raises_energy_above_it():
    hw = with_overrides(ISAAC, {"adc.law": "walden", "adc.rate_corner_gsps": 0.64})
    # 8 bits at 1.28 GS/s: twice the corner -> twice the energy; 16 bits at 0.64 GS/s: none
    assert hw.adc.energy_pj(8) == pytest.approx(2 * 1.67)
    base = with_overrides(ISAAC, {"adc.law": "walden"}).adc
    assert hw.adc.energy_pj(16) == pytest.approx(base.energy_pj(16))


def test_adc_law_errors_are_one_line():
    with pytest.raises(UnknownNameError, match="unknown ADC scaling law 'murmann'"):
        with_overrides(ISAAC, {"adc.law": "murmann"})
    with pytest.raises(ConfigError, match="walden_fom_fj_per_step must be a finite number > 0"):
        with_overrides(ISAAC, {"adc.walden_fom_fj_per_step": 0})
