"""``pimprune hardware``: JSON and text output, preset files, overrides, the crossbar object, one-line errors."""

import json
import subprocess
import sys

import pytest

from pimprune.cli import main

# ISAAC (ISCA 2016) Table I, per IMA.
ISAAC_POWER_MW = 24.1
ISAAC_AREA_MM2 = 0.0131


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


def test_cli_hardware_bad_crossbar_is_exit_2(capsys):
    assert main(["hardware", "--crossbar", "0x4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pimprune hardware: error:")


def test_cli_hardware_unknown_adc_law_is_exit_2():
    assert main(["hardware", "--set", "adc.law=nope"]) == 2
