"""Hardware configuration: derived properties, presets, files, overrides and their errors."""

import dataclasses
import json

import pytest
import yaml

from pimprune.errors import ConfigError, UnknownNameError
from pimprune.hardware.config import (
    PRESETS,
    HardwareConfig,
    config_from_dict,
    config_to_dict,
    load_preset,
    with_overrides,
)
from pimprune.hardware.figures import ima_figures


def test_isaac_preset_gets_its_8_bit_adc():
    hw = load_preset("isaac")
    assert hw.adc_bits_saved == 1
    assert hw.adc_resolution(128) == 8
    assert dataclasses.replace(hw, adc_bits_saved=0).adc_resolution(128) == 9
    fixed = with_overrides(hw, {"adc.bits": 6})
    assert fixed.adc_resolution(128) == 6 and fixed.adc_resolution(1) == 6
    assert fixed.adc_resolution(0) == 0


def test_sign_schemes():
    assert HardwareConfig(signed="differential").physical_arrays == 16
    assert HardwareConfig(signed="offset").sign.extra_columns == 1
    assert HardwareConfig(signed="unsigned").physical_arrays == 8
    with pytest.raises(UnknownNameError, match="signed-weight scheme"):
        HardwareConfig(signed="twos-complement")


def test_isaac_yaml_matches_the_documented_defaults():
    assert "isaac" in PRESETS
    assert load_preset("isaac") == HardwareConfig()
    assert load_preset() == HardwareConfig()
    assert load_preset("isaac").adc.law == "walden"


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
