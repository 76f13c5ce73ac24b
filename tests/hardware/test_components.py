"""Component defaults: ISAAC Table I power and area turned into energy per event and area per unit."""

import pytest

from pimprune.hardware.config import HardwareConfig


def test_isaac_per_event_constants_follow_table_i():
    hw = HardwareConfig()
    cycle_ns = 100.0
    # mW * ns = pJ; divided by the events of one IMA cycle
    assert hw.dac.energy_pj_per_conversion == pytest.approx(4.0 * cycle_ns / 1024)
    assert hw.sample_hold.energy_pj_per_sample == pytest.approx(0.010 * cycle_ns / 1024)
    assert hw.array.energy_pj_per_cell_read == pytest.approx(2.4 * cycle_ns / (8 * 128 * 128))
    assert hw.shift_add.energy_pj_per_op == pytest.approx(0.2 * cycle_ns / 1024)
    assert hw.registers.input_energy_pj_per_bit == pytest.approx(1.24 * cycle_ns / 1024)
    assert hw.registers.output_energy_pj_per_bit == pytest.approx(0.23 * cycle_ns / 2048)
    # areas: mm^2 -> um^2 per unit
    assert hw.dac.area_um2 * 1024 == pytest.approx(0.00017e6)
    assert hw.array.area_um2_per_cell * 8 * 128 * 128 == pytest.approx(0.0002e6)
    assert hw.registers.input_area_um2_per_bit * 2048 * 8 == pytest.approx(0.0021e6)
    assert hw.adc.area_um2(8) * 8 == pytest.approx(0.0096e6)
    assert hw.slices == 8 and hw.input_cycles == 16 and hw.physical_arrays == 8
