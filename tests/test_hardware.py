import dataclasses
import json
import math
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pimprune.cli import main
from pimprune.errors import ConfigError, UnknownNameError
from pimprune.hardware.cost import ima_figures
from pimprune.hardware.model import (
    PRESETS,
    AdcModel,
    HardwareConfig,
    adc_bits,
    config_from_dict,
    config_to_dict,
    load_preset,
    with_overrides,
)

# ISAAC (ISCA 2016) Table I, per IMA: the figures the model must reproduce.
ISAAC_POWER_MW = 24.1
ISAAC_AREA_MM2 = 0.0131


# --------------------------------------------------------------------------- ADC resolution


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


def test_isaac_preset_gets_its_8_bit_adc():
    hw = load_preset("isaac")
    assert hw.adc_bits_saved == 1
    assert hw.adc_resolution(128) == 8
    assert dataclasses.replace(hw, adc_bits_saved=0).adc_resolution(128) == 9
    fixed = with_overrides(hw, {"adc.bits": 6})
    assert fixed.adc_resolution(128) == 6 and fixed.adc_resolution(1) == 6
    assert fixed.adc_resolution(0) == 0


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


# --------------------------------------------------------------------------- ISAAC constants


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


def test_sign_schemes():
    assert HardwareConfig(signed="differential").physical_arrays == 16
    assert HardwareConfig(signed="offset").sign.extra_columns == 1
    assert HardwareConfig(signed="unsigned").physical_arrays == 8
    with pytest.raises(UnknownNameError, match="signed-weight scheme"):
        HardwareConfig(signed="twos-complement")


# --------------------------------------------------------------------------- presets and overrides


def test_isaac_yaml_matches_the_documented_defaults():
    assert "isaac" in PRESETS
    assert load_preset("isaac") == HardwareConfig()
    assert load_preset() == HardwareConfig()


def test_round_trip_through_dict_yaml_and_json(tmp_path):
    hw = with_overrides(HardwareConfig(), {"read_cycle_ns": 50, "adc.energy_pj_by_bits": {8: 2, 9: 3}})
    d = config_to_dict(hw)
    assert config_from_dict(d) == hw
    (tmp_path / "hw.yaml").write_text(yaml.safe_dump(d))
    assert load_preset(tmp_path / "hw.yaml") == dataclasses.replace(hw, name="isaac")
    (tmp_path / "hw.json").write_text(json.dumps(d))  # JSON keys become strings
    assert load_preset(str(tmp_path / "hw.json")).adc == hw.adc


def test_partial_file_with_base(tmp_path):
    f = tmp_path / "fast.yaml"
    f.write_text("base: isaac\nread_cycle_ns: 50\nadc:\n  sampling_rate_gsps: 2.56\n")
    hw = load_preset(f)
    assert hw.name == "fast"
    assert hw.read_cycle_ns == 50.0 and hw.adc.sampling_rate_gsps == 2.56
    assert hw.dac == HardwareConfig().dac
    # same energy per event, half the cycle: twice the power
    assert ima_figures(hw).ima_power_mw == pytest.approx(2 * ima_figures(HardwareConfig()).ima_power_mw)
    g = tmp_path / "child.yaml"
    g.write_text("base: fast.yaml\ncell_bits: 1\n")
    assert load_preset(g).read_cycle_ns == 50.0 and load_preset(g).slices == 16


def test_overrides():
    hw = with_overrides(
        HardwareConfig(), {"adc.sampling_rate_gsps": 2, "cell_bits": 4, "index.mux_energy_pj_per_line_cycle": 0}
    )
    assert hw.adc.sampling_rate_gsps == 2.0 and isinstance(hw.adc.sampling_rate_gsps, float)
    assert hw.slices == 4
    assert hw.index.mux_energy_pj_per_line_cycle == 0.0
    assert HardwareConfig().cell_bits == 2  # frozen originals untouched


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"adc.foo": 1}, "unknown hardware field 'adc.foo'"),
        ({"nonsense": 1}, "unknown hardware field 'nonsense'"),
        ({"cell_bits": "two"}, "cell_bits must be int"),
        ({"cell_bits": 0}, "cell_bits must be a finite number > 0"),
        ({"dac.energy_pj_per_conversion": -1}, "must be a finite number >= 0"),
        ({"read_cycle_ns": float("nan")}, "read_cycle_ns"),
        ({"adc.rate_scales_with_bits": 1}, "must be bool"),
        ({"adc": 3}, "must be a mapping"),
        ({"adc.bits": 0}, "adc.bits must be >= 1"),
    ],
)
def test_bad_overrides_are_one_line_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        with_overrides(HardwareConfig(), overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("adc: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "must hold a mapping"),
        ("cell_bits: 2\nfoo: 1\n", "unknown hardware field 'foo'"),
        ("base: nowhere.yaml\n", "no hardware preset or file"),
    ],
)
def test_bad_preset_files(tmp_path, content, match):
    f = tmp_path / "hw.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError, match=match) as info:
        load_preset(f)
    assert "\n" not in str(info.value)


def test_missing_preset():
    with pytest.raises(ConfigError, match="no hardware preset or file 'isaak'"):
        load_preset("isaak")


# --------------------------------------------------------------------------- CLI


def test_cli_hardware_json(capsys):
    assert main(["hardware", "isaac", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["ima_power_mw"] / ISAAC_POWER_MW - 1) < 0.10
    assert abs(out["ima_area_mm2"] / ISAAC_AREA_MM2 - 1) < 0.10
    assert out["adc_power_share"] > 0.55
    assert out["config"]["adc"]["energy_pj_by_bits"]["8"] == 1.67
    assert out["config"]["read_cycle_ns"] == 100.0
    assert out["ima"]["adc_bits"] == 8


def test_cli_hardware_text_file_and_overrides(tmp_path, capsys):
    assert main(["hardware"]) == 0
    text = capsys.readouterr().out
    assert "ADC share" in text and "adc" in text and "ISAAC Table I" in text
    f = tmp_path / "mine.yaml"
    f.write_text("base: isaac\ncolumns_per_adc: 64\n")
    assert main(["hardware", str(f), "--json", "--set", "read_cycle_ns=200"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "mine" and out["ima"]["adcs"] == 16
    assert out["config"]["read_cycle_ns"] == 200.0


def test_cli_hardware_errors_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("adc: {energy_pj_by_bits: [oops\n")
    for args in (
        ["hardware", str(bad)],
        ["hardware", "nope"],
        ["hardware", "--set", "x"],
        ["hardware", "--set", "adc.nothing=1"],
    ):
        proc = subprocess.run([sys.executable, "-m", "pimprune", *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, args
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("pimprune hardware: error:")
