"""One costing path: crossbar figures, the ISAAC check, no jump at 128 columns, ADC laws."""

import json

import numpy as np
import pytest

from pimprune.cli import main
from pimprune.errors import ConfigError, UnknownNameError
from pimprune.geometry import Crossbar
from pimprune.hardware.cost import crossbar_figures, dense_stats, ima_figures, layer_cost
from pimprune.hardware.model import ADC_LAWS, HardwareConfig, load_preset, with_overrides

ISAAC = HardwareConfig()


def _fig(hw: HardwareConfig, rows: int, cols: int) -> dict[str, float]:
    f = crossbar_figures(hw, Crossbar(rows, cols))
    return {"area": f.total_area_mm2, "energy": f.energy_pj_per_mvm, "adcs": f.adcs, "cycle": f.cycle_ns}


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
    # the figures: 0.01309 mm^2 at 127x127 must not become 0.02296 at 128x128
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


def test_cli_hardware_crossbar_object(capsys):
    assert main(["hardware", "isaac", "--crossbar", "128x128", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    x = out["crossbar"]
    assert {"area_mm2", "power_mw", "energy_pj_per_mvm", "adcs"} <= set(x)
    assert x["adcs"] == 8
    assert x["area_mm2"] == pytest.approx(out["ima_area_mm2"], rel=1e-4)
    assert x["power_mw"] == pytest.approx(out["ima_power_mw"], rel=1e-4)
    assert abs(x["power_mw"] / 24.1 - 1) < 0.05 and abs(x["area_mm2"] / 0.0131 - 1) < 0.05
    assert main(["hardware", "--crossbar", "64x256"]) == 0
    assert "one logical crossbar 64x256" in capsys.readouterr().out
    assert "crossbar" not in json.loads((main(["hardware", "--json"]), capsys.readouterr().out)[1])


def test_cli_hardware_bad_crossbar_is_exit_2(capsys):
    assert main(["hardware", "--crossbar", "0x4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pimprune hardware: error:")


# --------------------------------------------------------------------------- ADC laws


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
    assert main(["hardware", "--set", "adc.law=nope"]) == 2


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


def test_preset_file_round_trips_the_laws():
    assert load_preset("isaac") == HardwareConfig()
    assert load_preset("isaac").adc.law == "walden"
