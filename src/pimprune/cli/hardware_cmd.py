"""``pimprune hardware``: a hardware preset and the figures derived from it."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.hardware.config import PRESETS, HardwareConfig, config_to_dict, load_preset, with_overrides
from pimprune.hardware.figures import crossbar_figures, ima_figures

#: ISAAC Table I totals per IMA, shown beside the derived figures.
ISAAC_IMA_POWER_MW = 24.1
ISAAC_IMA_AREA_MM2 = 0.0131


HELP = "show a hardware preset and its derived figures"
DESCRIPTION = (
    "Print a hardware configuration (a preset name or a YAML/JSON file) and the "
    "power, area and ADC share of its reference tile (ISAAC: one IMA of 8 arrays of 128x128 "
    "with their peripherals)."
)


def add_parser(sub: Any) -> None:
    """Register ``hardware``."""
    p = sub.add_parser("hardware", help=HELP, description=DESCRIPTION)
    p.add_argument(
        "preset",
        nargs="?",
        default="isaac",
        help=f"preset ({', '.join(PRESETS.names())}) or a .yaml/.json file (default isaac)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a field by its dotted path, e.g. --set adc.sampling_rate_gsps=2.56 "
        "(repeatable; the value is read as YAML)",
    )
    p.add_argument(
        "--crossbar",
        default=None,
        metavar="RxC",
        help="also show one fully used logical crossbar of this geometry (area, power, energy per MVM, ADCs), "
        "costed exactly as map and sweep cost every crossbar",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", ...]`` -> ``{"a.b": 1}`` (values parsed as YAML scalars / mappings).

    Raises:
        ConfigError: on an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set needs FIELD=VALUE, got {item!r}; e.g. --set read_cycle_ns=50")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot read value {value!r}") from None
    return out


def resolve_hardware(source: str, overrides: list[str] | None = None) -> HardwareConfig:
    """A preset or file, with ``--set`` overrides applied."""
    hw = load_preset(source)
    if overrides:
        hw = with_overrides(hw, parse_overrides(overrides))
    return hw


def describe(hw: HardwareConfig, crossbar: Crossbar | str | None = None) -> dict[str, Any]:
    """The configuration and its derived figures, JSON-ready (with ``"crossbar"`` if one is given)."""
    ima = ima_figures(hw)
    figures = ima.as_dict()
    extra = {} if crossbar is None else {"crossbar": crossbar_figures(hw, crossbar).as_dict()}
    return {
        "preset": hw.name,
        "config": config_to_dict(hw),
        "derived": {
            "slices_per_weight": hw.slices,
            "physical_arrays_per_crossbar": hw.physical_arrays,
            "input_cycles_per_mvm": hw.input_cycles,
            "adc_bits_for_ima_rows": ima.adc_bits,
            "chip_crossbars": hw.chip_crossbars,
        },
        "ima_power_mw": figures["ima_power_mw"],
        "ima_area_mm2": figures["ima_area_mm2"],
        "adc_power_share": figures["adc_power_share"],
        "ima": figures,
        "isaac_table_i": {"ima_power_mw": ISAAC_IMA_POWER_MW, "ima_area_mm2": ISAAC_IMA_AREA_MM2},
        **extra,
    }


def format_text(info: dict[str, Any]) -> str:
    """A readable table of :func:`describe`."""
    ima = info["ima"]
    cfg = info["config"]
    lines = [
        f"hardware {info['preset']}: {cfg['technology']}, {cfg['source']}",
        f"  weights {cfg['weight_bits']} bit on {cfg['cell_bits']}-bit cells "
        f"({info['derived']['slices_per_weight']} slices, sign: {cfg['signed']}, "
        f"{info['derived']['physical_arrays_per_crossbar']} arrays per logical crossbar)",
        f"  inputs {cfg['input_bits']} bit, {cfg['dac_bits']}-bit DACs "
        f"({info['derived']['input_cycles_per_mvm']} cycles of {cfg['read_cycle_ns']:g} ns per MVM), "
        f"{cfg['columns_per_adc']} columns per ADC",
        "",
        f"reference tile: {ima['arrays']} arrays of {ima['rows']}x{ima['cols']}, "
        f"{ima['adcs']} ADCs of {ima['adc_bits']} bits, cycle {ima['cycle_ns']:g} ns",
        f"  {'component':<12} {'power mW':>10} {'share':>7} {'area mm2':>10}",
    ]
    total_p = ima["ima_power_mw"]
    for comp, p in ima["power_mw"].items():
        lines.append(f"  {comp:<12} {p:>10.4f} {p / total_p:>6.1%} {ima['area_mm2'][comp]:>10.6f}")
    ref = info["isaac_table_i"]
    lines += [
        f"  {'total':<12} {total_p:>10.4f} {1:>6.0%} {ima['ima_area_mm2']:>10.6f}",
        "",
        f"ADC share of power: {ima['adc_power_share']:.1%}",
        f"ISAAC Table I per IMA: {ref['ima_power_mw']} mW, {ref['ima_area_mm2']} mm^2 "
        f"(this model: {total_p / ref['ima_power_mw'] - 1:+.1%} power, "
        f"{ima['ima_area_mm2'] / ref['ima_area_mm2'] - 1:+.1%} area)",
    ]
    if "crossbar" in info:
        x = info["crossbar"]
        lines += [
            "",
            f"one logical crossbar {x['crossbar']} ({x['physical_arrays']} arrays, {x['adcs']} ADCs of "
            f"{x['adc_bits']} bits, cycle {x['cycle_ns']:g} ns): {x['area_mm2']:.6f} mm^2, "
            f"{x['power_mw']:.4f} mW, {x['energy_pj_per_mvm']:.1f} pJ per MVM",
        ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the preset and its figures."""
    hw = resolve_hardware(args.preset, args.overrides)
    xbar = Crossbar.parse(args.crossbar) if args.crossbar is not None else None
    info = describe(hw, xbar)
    if args.json:
        print(json.dumps(info))
    else:
        print(format_text(info))
    return 0
