"""One costing path: one crossbar's figures, the ISAAC check of the reference tile, no jump at 128 columns."""

import numpy as np
import pytest

from pimprune.geometry import Crossbar
from pimprune.hardware.config import HardwareConfig, load_preset, with_overrides
from pimprune.hardware.cost import crossbar_area_um2, crossbar_energy_pj, dense_stats, layer_cost
from pimprune.hardware.figures import crossbar_figures, ima_figures

ISAAC = HardwareConfig()
# the ADC table law, as in the hand values of test_cost.py
ISAAC_TABLE = with_overrides(HardwareConfig(), {"adc.law": "table"})

# ISAAC (ISCA 2016) Table I, per IMA: the figures the model must reproduce.
ISAAC_POWER_MW = 24.1
ISAAC_AREA_MM2 = 0.0131


def _fig(hw: HardwareConfig, rows: int, cols: int) -> dict[str, float]:
    f = crossbar_figures(hw, Crossbar(rows, cols))
    return {"area": f.total_area_mm2, "energy": f.energy_pj_per_mvm, "adcs": f.adcs, "cycle": f.cycle_ns}


def test_ima_reproduces_isaac_table_i_within_5_percent():
    # the preset as it is: offset weights, the reference column read by the array's one ADC
    ima = ima_figures(load_preset("isaac"))
    assert ima.adc_bits == 8 and ima.adcs == 8
    # 129 conversions (128 columns + reference) at 1.28 GS/s: one column's worth over 100 ns
    assert ima.cycle_ns == pytest.approx(129 / 1.28)
    assert abs(ima.ima_power_mw / ISAAC_POWER_MW - 1) < 0.05
    assert abs(ima.ima_area_mm2 / ISAAC_AREA_MM2 - 1) < 0.05
    assert ima.adc_power_share > 0.55


def test_ima_components_equal_table_i_without_the_reference_column():
    ima = ima_figures(with_overrides(load_preset("isaac"), {"signed": "unsigned"}))
    assert ima.adc_bits == 8 and ima.adcs == 8 and ima.cycle_ns == pytest.approx(100.0)
    # the components ISAAC gives directly come out exactly
    assert ima.power_mw["dac"] == pytest.approx(4.0)
    assert ima.power_mw["array"] == pytest.approx(2.4)
    assert ima.power_mw["sample_hold"] == pytest.approx(0.01)
    assert ima.power_mw["shift_add"] == pytest.approx(0.2)
    assert ima.power_mw["registers"] == pytest.approx(1.24 + 0.23)
    assert ima.area_mm2["adc"] == pytest.approx(0.0096)
    # the ADC follows the scaling table: 8 ADCs * 1.67 pJ * 1.28 GS/s
    assert ima.power_mw["adc"] == pytest.approx(8 * 1.67 * 1.28)


def test_one_full_crossbar_is_the_ima():
    hw = with_overrides(ISAAC_TABLE, {"signed": "unsigned"})
    xbar = Crossbar(128, 128)
    ima = ima_figures(hw)
    e = crossbar_energy_pj(hw, [128], [128])
    per_cycle = sum(float(v[0]) for v in e.values()) / hw.input_cycles
    assert per_cycle / 100.0 == pytest.approx(ima.ima_power_mw)  # pJ / ns = mW
    area = crossbar_area_um2(hw, xbar, [128], [128])
    assert sum(area.values()) / 1e6 == pytest.approx(ima.ima_area_mm2)


@pytest.mark.parametrize("signed", ["offset", "differential", "unsigned"])
@pytest.mark.parametrize("side", [128, 256, 512])
def test_no_jump_between_side_minus_one_and_side(signed, side):
    # one more column (row) costs what the column (row) before it cost: no extra ADC at
    # 128/256/512 columns because of the reference column
    hw = with_overrides(ISAAC, {"signed": signed})
    for grow in ("cols", "rows"):
        other = 128
        dims = [(other, side - 2), (other, side - 1), (other, side)]
        if grow == "rows":
            dims = [(r, c) for c, r in dims]
        a, b, c = (_fig(hw, *d) for d in dims)
        assert c["adcs"] == b["adcs"], (grow, dims)
        for key in ("area", "energy"):
            step_before, step = b[key] - a[key], c[key] - b[key]
            assert step == pytest.approx(step_before, rel=1e-9), (grow, key)
        # time: at most one more conversion per ADC
        bits = hw.adc_resolution(dims[2][0])
        assert c["cycle"] - b["cycle"] <= 1 / hw.adc.rate_gsps(bits) + 1e-9


def test_adc_count_is_one_per_128_data_columns():
    for cols, adcs in ((127, 8), (128, 8), (129, 16), (256, 16), (512, 32)):
        assert crossbar_figures(ISAAC, Crossbar(128, cols)).adcs == adcs, cols
    # the figures that showed the jump: 0.01309 mm^2 at 127x127 must not become 0.02296 at 128x128
    small, big = _fig(ISAAC, 127, 127), _fig(ISAAC, 128, 128)
    assert big["area"] / small["area"] < 1.02


def test_crossbar_at_ima_geometry_is_the_ima():
    one = crossbar_figures(ISAAC, "128x128")
    ima = ima_figures(ISAAC)
    assert one.adcs == ima.adcs == 8
    assert one.total_power_mw == pytest.approx(ima.ima_power_mw)
    assert one.total_area_mm2 == pytest.approx(ima.ima_area_mm2)
    assert one.power_mw["adc"] == pytest.approx(ima.power_mw["adc"])
    # and the same figures as a mapped layer of one full crossbar
    rows, cols = dense_stats(128, 128, 1, Crossbar(128, 128))
    lc = layer_cost(ISAAC, Crossbar(128, 128), rows, cols, mvms=1)
    assert lc.total_energy_nj * 1e3 == pytest.approx(one.energy_pj_per_mvm)
    assert lc.total_area_mm2 == pytest.approx(one.total_area_mm2)
    assert lc.cycle_ns == pytest.approx(one.cycle_ns)


def test_differential_ima_is_half_a_logical_crossbar():
    hw = with_overrides(ISAAC, {"signed": "differential"})
    one, ima = crossbar_figures(hw, "128x128"), ima_figures(hw)
    assert one.arrays == 16 and ima.arrays == 8
    assert ima.ima_area_mm2 == pytest.approx(one.total_area_mm2 / 2)


def test_law_moves_the_energy_per_weight_of_large_crossbars():
    # ADC energy per weight-MAC at full use: 512 rows vs 128 rows
    def per_weight(hw: HardwareConfig, side: int) -> float:
        f = crossbar_figures(hw, Crossbar(side, side))
        return f.energy_pj["adc"] / (side * side)

    table = with_overrides(ISAAC, {"adc.law": "table"})
    table_ratio = per_weight(table, 512) / per_weight(table, 128)
    walden = with_overrides(ISAAC, {"adc.law": "walden"})
    walden_ratio = per_weight(walden, 512) / per_weight(walden, 128)
    assert table_ratio < 0.45  # the table: 2.38/1.67 per conversion over 4x the rows
    assert walden_ratio == pytest.approx(np.float64(4.0 / 4.0), rel=0.02)  # 2 bits more = 4x, 4x rows
