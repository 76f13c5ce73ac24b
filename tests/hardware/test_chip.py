"""The chip's hierarchy: crossbars per tile, the tile policies and area occupied against built."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.hardware.chip import (
    CHIP_PRESETS,
    chip_layout,
    chip_preset,
    chip_report,
    chip_usage,
    crossbars_per_pe,
    crossbars_per_tile,
    tiles_needed,
)
from pimprune.hardware.config import HardwareConfig, with_overrides
from pimprune.hardware.cost import crossbar_area_um2

ISAAC = HardwareConfig()
XBAR = Crossbar(32, 32)


def _one_crossbar_mm2(hw: HardwareConfig, xbar: Crossbar = XBAR) -> float:
    return sum(crossbar_area_um2(hw, xbar, [xbar.rows], [xbar.cols]).values()) / 1e6


def test_presets_follow_isaac_and_neurosim():
    assert set(CHIP_PRESETS.names()) == {"isaac", "neurosim"}
    # ISAAC: 8 arrays per IMA, 12 IMAs per tile, 168 tiles; a logical crossbar is 8 arrays (one IMA)
    assert crossbars_per_tile(ISAAC) == 12 and crossbars_per_pe(ISAAC) == 1
    assert chip_preset(ISAAC, "isaac") == ISAAC
    # NeuroSim V1.4: 4 sub-arrays per PE, 16 per tile, whole tiles per layer
    ns = chip_preset(ISAAC, "neurosim")
    assert (ns.chip.arrays_per_pe, ns.chip.arrays_per_tile, ns.chip.tile_policy) == (4, 16, "tile-per-layer")
    assert crossbars_per_tile(ns) == 2 and crossbars_per_pe(ns) == 0.5
    assert ns.adc == ISAAC.adc  # only the chip changes


def test_a_one_crossbar_layer_still_takes_a_tile_under_tile_per_layer():
    assert tiles_needed([1], ISAAC, "tile-per-layer") == 1
    assert tiles_needed([1] * 21, ISAAC, "tile-per-layer") == 21  # 21 small layers: 21 tiles
    assert tiles_needed([1] * 21, ISAAC, "shared") == 2  # packed: 21 crossbars in 2 tiles of 12
    assert tiles_needed([13, 0, 12], ISAAC, "tile-per-layer") == 3
    assert tiles_needed([5], ISAAC) == 1  # the configured policy


@settings(max_examples=100, deadline=None)
@given(stages=st.lists(st.integers(0, 60), max_size=25), arrays=st.sampled_from([8, 16, 96, 800]),
       periphery=st.sampled_from([0.0, 215000.0]))
def test_shared_never_exceeds_tile_per_layer_and_built_covers_occupied(stages, arrays, periphery):
    hw = with_overrides(ISAAC, {"chip.arrays_per_tile": arrays, "chip.tile_periphery_um2": periphery})
    occupied = sum(stages) * _one_crossbar_mm2(hw)
    per_layer = chip_usage(stages, hw, XBAR, occupied, "tile-per-layer")
    shared = chip_usage(stages, hw, XBAR, occupied, "shared")
    assert shared.tiles <= per_layer.tiles
    assert shared.tiles * crossbars_per_tile(hw) >= sum(stages)
    assert per_layer.built_area_mm2 >= shared.built_area_mm2 >= occupied - 1e-12
    # built = every crossbar slot of its tiles, and the tiles' periphery
    slots = per_layer.tiles * crossbars_per_tile(hw)
    assert per_layer.built_area_mm2 == pytest.approx(
        slots * _one_crossbar_mm2(hw) + per_layer.tiles * periphery / 1e6, abs=1e-9
    )


def test_chip_report_of_a_pruned_small_network():
    one = _one_crossbar_mm2(ISAAC)
    dense = chip_report([40, 30, 20], ISAAC, XBAR, 90 * one)
    pruned = chip_report([4, 3, 2], ISAAC, XBAR, 9 * one)
    # 10x fewer crossbars, but every layer keeps a whole tile under tile-per-layer
    assert dense["tiles"] == {"tile-per-layer": 9, "shared": 8}
    assert pruned["tiles"] == {"tile-per-layer": 3, "shared": 1}
    assert pruned["area_occupied_mm2"] == pytest.approx(9 * one, abs=1e-6)
    assert pruned["area_built_mm2"]["tile-per-layer"] == pytest.approx(36 * one, abs=1e-6)
    layout = chip_layout(ISAAC, XBAR)
    assert layout["crossbars_per_tile"] == 12 and layout["tile_area_mm2"] == pytest.approx(12 * one, abs=1e-6)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"chip.tile_policy": "round-robin"}, "tile_policy"),
        ({"chip.arrays_per_pe": 7}, "must divide"),
    ],
)
def test_bad_chip_fields(override, match):
    with pytest.raises(ConfigError, match=match):
        with_overrides(ISAAC, override)


def test_a_tile_too_small_for_one_crossbar():
    hw = with_overrides(ISAAC, {"chip.arrays_per_tile": 4, "chip.arrays_per_pe": 4})
    with pytest.raises(ConfigError, match="cannot hold one logical crossbar"):
        tiles_needed([1], hw)
    with pytest.raises(ConfigError, match="tile policy"):
        tiles_needed([1], ISAAC, "nope")


def test_neurosim_tile_design_picks_the_best_utilised_side():
    from pimprune.hardware.chip import neurosim_tile_design

    shapes = [(144, 16), (1152, 128)]  # a 3x3 conv of 16 -> 16 and one of 128 -> 128, 8 columns per weight
    assert neurosim_tile_design(shapes, 128) == (1024, 3)  # only 1024 = max(2^ceil(log2(1024)), 512)
    # at 64 rows 512 (7 tiles, 65% used) beats 1024 (3 tiles, 38% used)
    assert neurosim_tile_design(shapes, 64) == (512, 7)
    with pytest.raises(ConfigError):
        neurosim_tile_design([], 64)
