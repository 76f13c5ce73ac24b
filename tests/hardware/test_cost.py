"""Energy, area and cycle time of mapped crossbars, layers and networks, by hand and by property."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.hardware.config import HardwareConfig, with_overrides
from pimprune.hardware.cost import (
    COMPONENTS,
    crossbar_area_um2,
    crossbar_cycle_ns,
    crossbar_energy_pj,
    dense_stats,
    layer_cost,
    layer_mvms,
    network_cost,
)
from pimprune.mapping.counting import count
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.packing import crossbar_stats

# offset sign (+1 column), 8 slices, 16 input cycles; the hand values use the ADC table
ISAAC = with_overrides(HardwareConfig(), {"adc.law": "table"})

# ISAAC Table I figures, in the units of the hand calculations below
E_CELL = 2.4 * 100 / (8 * 128 * 128)  # pJ: 2.4 mW * 100 ns / cells
E_DAC = 4.0 * 100 / 1024
E_SH = 0.010 * 100 / 1024
E_SA = 0.2 * 100 / 1024
E_IN = 1.24 * 100 / 1024
E_OUT = 0.23 * 100 / 2048
E_ADC8 = 1.67


def test_energy_components_by_hand():
    # one crossbar, 100 used rows, 50 used columns; +1 offset column -> 51 read bitlines
    e = crossbar_energy_pj(ISAAC, [100], [50])
    n, p, r, cp, c = 16, 8, 100, 51, 50
    # 100 rows: ceil(log2(100*3 + 1)) = 9 bits, minus ISAAC's saved bit = 8 -> 1.67 pJ
    assert e["array"][0] == pytest.approx(n * p * r * cp * E_CELL)
    assert e["adc"][0] == pytest.approx(n * p * cp * E_ADC8)
    assert e["dac"][0] == pytest.approx(n * p * r * E_DAC)
    assert e["sample_hold"][0] == pytest.approx(n * p * cp * E_SH)
    assert e["shift_add"][0] == pytest.approx(n * p * cp * E_SA)
    assert e["registers"][0] == pytest.approx(n * (p * r * 1 * E_IN + c * 16 * E_OUT))
    assert e["index"][0] == 0.0
    assert list(e) == list(COMPONENTS)


def test_adc_energy_follows_active_rows():
    # 20 rows: 60 -> 6 bits - 1 = 5 bits -> 0.99 pJ; 512 rows: 11 - 1 = 10 bits -> 2.38 pJ
    e = crossbar_energy_pj(ISAAC, [20, 512], [10, 10])
    assert e["adc"][0] == pytest.approx(16 * 8 * 11 * 0.99)
    assert e["adc"][1] == pytest.approx(16 * 8 * 11 * 2.38)


def test_index_energy_by_hand():
    # subrow: input index of ceil(log2 1000) = 10 bits per used row, read once per MVM,
    # and one mux pass per indexed row per cycle
    e = crossbar_energy_pj(ISAAC, [100], [50], index_bits_per_row=10)
    assert e["index"][0] == pytest.approx(100 * 10 * E_IN + 16 * 100 * E_IN)
    # subcolumn: output index of 9 bits per used column
    e = crossbar_energy_pj(ISAAC, [100], [50], index_bits_per_col=9)
    assert e["index"][0] == pytest.approx(50 * 9 * E_IN + 16 * 50 * E_IN)


def test_unused_crossbar_costs_no_energy():
    e = crossbar_energy_pj(ISAAC, [0, 5], [7, 0], index_bits_per_row=3)
    assert all(float(v.sum()) == 0.0 for v in e.values())


def test_area_by_hand():
    xbar = Crossbar(64, 32)
    a = crossbar_area_um2(ISAAC, xbar, [64, 10], [32, 3], index_bits_per_row=10)
    p, r, cp, c = 8, 64, 33, 32
    # ADC sized for 64 rows: 192 -> 8 bits - 1 = 7 bits -> 845 um^2; one ADC per array
    one = {
        "array": p * r * cp * 200 / (8 * 128 * 128),
        "adc": p * 845.0,
        "dac": p * r * 170 / 1024,
        "sample_hold": p * cp * 40 / 1024,
        "shift_add": p * 240 / 8,
        "registers": p * r * 16 * 2100 / 16384 + c * 16 * 770 / 2048,
    }
    for k, v in one.items():
        assert a[k] == pytest.approx(2 * v), k  # two crossbars, each built in full
    bit_area = 2100 / 16384
    assert a["index"] == pytest.approx((64 + 10) * 10 * 2 * bit_area)


def test_latency_by_hand():
    # ISAAC: 128 data columns -> one ADC per array; it converts the 129 bitlines (reference
    # column included) at 1.28/ns = 100.8 ns: one column's worth above the 100 ns read cycle
    lc = layer_cost(ISAAC, Crossbar(128, 128), [128, 128], [128, 128], mvms=10)
    assert lc.cycle_ns == pytest.approx(129 / 1.28)
    assert lc.latency_us == pytest.approx(10 * 16 * 129 / 1.28 / 1000)
    lc = layer_cost(ISAAC, Crossbar(128, 128), [128, 128], [127, 100], mvms=10)
    assert lc.cycle_ns == pytest.approx(100.0)  # 128 conversions fit the cycle exactly
    # one ADC per 512 columns: 513 bitlines -> 1 ADC, 513 conversions;
    # 512 rows -> 10-bit ADC at 1.28 * 8/10 = 1.024 conversions/ns -> 501 ns cycle
    hw = with_overrides(ISAAC, {"columns_per_adc": 512})
    cyc = crossbar_cycle_ns(hw, Crossbar(512, 512), [512, 64], [512, 512])
    assert cyc[0] == pytest.approx(513 / 1.024)
    assert cyc[1] == pytest.approx(513 / (1.28 * 8 / 7))  # 64 rows: 8 - 1 = 7 bits, faster
    lc = layer_cost(hw, Crossbar(512, 512), [512, 64], [512, 512], mvms=3)
    assert lc.latency_us == pytest.approx(3 * 16 * 513 / 1.024 / 1000)
    # 256 columns per ADC: 2 ADCs share the 513 bitlines, 257 conversions each
    hw = with_overrides(ISAAC, {"columns_per_adc": 256})
    assert crossbar_cycle_ns(hw, Crossbar(512, 512), [512], [512])[0] == pytest.approx(257 / 1.024)



def test_differential_doubles_arrays():
    diff = with_overrides(ISAAC, {"signed": "differential"})
    plain = with_overrides(ISAAC, {"signed": "unsigned"})
    e_d = crossbar_energy_pj(diff, [50], [40])
    e_p = crossbar_energy_pj(plain, [50], [40])
    for k in ("array", "adc", "dac", "sample_hold", "shift_add"):
        assert e_d[k][0] == pytest.approx(2 * e_p[k][0])


# --------------------------------------------------------------------------- monotonicity

_used = st.integers(0, 64)


@settings(deadline=None, max_examples=80)
@given(
    rows=st.lists(_used, min_size=1, max_size=6),
    cols=st.lists(_used, min_size=6, max_size=6),
    pick=st.integers(0, 5),
    less=st.integers(0, 64),
    i_row=st.integers(0, 12),
    i_col=st.integers(0, 12),
    signed=st.sampled_from(["offset", "differential", "unsigned"]),
    fixed_bits=st.sampled_from([None, 6]),
)
def test_fewer_used_rows_or_cols_never_raise_energy(rows, cols, pick, less, i_row, i_col, signed, fixed_bits):
    hw = with_overrides(ISAAC, {"signed": signed, "adc.bits": fixed_bits})
    cols = cols[: len(rows)]
    pick %= len(rows)

    def total(r, c):
        e = crossbar_energy_pj(hw, r, c, i_row, i_col)
        return sum(float(v.sum()) for v in e.values())

    base = total(rows, cols)
    fewer_cols = list(cols)
    fewer_cols[pick] = max(0, cols[pick] - less)
    fewer_rows = list(rows)
    fewer_rows[pick] = max(0, rows[pick] - less)
    assert total(rows, fewer_cols) <= base + 1e-9
    assert total(fewer_rows, cols) <= base + 1e-9
    # and per component too
    e0 = crossbar_energy_pj(hw, rows, cols, i_row, i_col)
    e1 = crossbar_energy_pj(hw, fewer_rows, fewer_cols, i_row, i_col)
    for k in COMPONENTS:
        assert float(e1[k].sum()) <= float(e0[k].sum()) + 1e-9


@settings(deadline=None, max_examples=40)
@given(
    g=st.integers(1, 3),
    m=st.integers(1, 40),
    n=st.integers(1, 40),
    r=st.integers(1, 16),
    c=st.integers(1, 16),
)
def test_dense_stats_equal_crossbar_stats_of_a_full_mask(g, m, n, r, c):
    xbar = Crossbar(r, c)
    rows, cols = dense_stats(m, n, g, xbar)
    ref_rows, ref_cols = crossbar_stats(torch.ones(g, m, n, dtype=torch.bool), xbar, "dense")
    assert np.array_equal(rows, ref_rows.numpy()) and np.array_equal(cols, ref_cols.numpy())


# --------------------------------------------------------------------------- network


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.shared = nn.Conv2d(8, 8, 1, groups=2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(torch.relu(self.conv1(x)))
        x = self.shared(self.shared(x))
        return self.fc(x.mean((2, 3)))


def test_layer_mvms_counts_output_positions():
    model = _Net()
    model.train()
    mv = layer_mvms(model, (3, 8, 8))
    assert mv == {"conv1": 64, "conv2": 16, "shared": 32, "fc": 1}
    assert model.training  # mode restored
    assert layer_mvms(model, (1, 3, 16, 16))["conv2"] == 64
    with pytest.raises(ConfigError, match="input shape"):
        layer_mvms(model, (8, 8))
    with pytest.raises(ConfigError, match="does not run"):
        layer_mvms(model, (5, 8, 8))


def test_network_cost_adds_up_per_layer():
    torch.manual_seed(1)
    model = _Net()
    with torch.no_grad():  # prune some sub-rows of conv2
        model.conv2.weight[:, :2] = 0
    xbar = Crossbar(8, 4)
    cost = network_cost(model, xbar, "subrow", ISAAC, (3, 8, 8))
    mv = layer_mvms(model, (3, 8, 8))
    assert [lc.name for lc in cost.layers] == ["conv1", "conv2", "shared", "fc"]
    total = 0.0
    for lay, lc in zip(extract_layers(model), cost.layers, strict=True):
        mask = lay.matrix() != 0
        assert lc.crossbars == count(mask, xbar, "subrow")
        r, c = crossbar_stats(mask, xbar, "subrow")
        i_row = (lay.rows - 1).bit_length()
        e = crossbar_energy_pj(ISAAC, r, c, index_bits_per_row=i_row)
        expect = mv[lay.name] * sum(float(v.sum()) for v in e.values()) / 1e3
        assert lc.total_energy_nj == pytest.approx(expect)
        total += expect
    assert cost.energy_nj == pytest.approx(total)
    assert cost.energy_nj == pytest.approx(sum(cost.energy_breakdown.values()))
    assert cost.area_mm2 == pytest.approx(sum(lc.total_area_mm2 for lc in cost.layers))
    assert cost.latency_us == pytest.approx(sum(lc.latency_us for lc in cost.layers))
    assert cost.edp == pytest.approx(cost.energy_nj * cost.latency_us)
    d = cost.as_dict()
    assert d["crossbars"] == cost.crossbars and len(d["layers"]) == 4
    assert set(d["energy_breakdown"]) == set(COMPONENTS)


def test_pruning_lowers_cost_and_dense_stats_match():
    torch.manual_seed(2)
    model = _Net()
    xbar = Crossbar(8, 8)
    dense = network_cost(model, xbar, "dense", ISAAC, (3, 8, 8))
    stats = {lay.name: dense_stats(lay.rows, lay.cols, lay.groups, xbar) for lay in extract_layers(model)}
    again = network_cost(model, xbar, "dense", ISAAC, (3, 8, 8), stats=stats)
    assert again.energy_nj == pytest.approx(dense.energy_nj)
    assert again.area_mm2 == pytest.approx(dense.area_mm2)
    with torch.no_grad():
        model.conv2.weight[:, 1:] = 0  # keep one input channel: 9 of 36 rows
    pruned = network_cost(model, xbar, "subrow", ISAAC, (3, 8, 8))
    assert pruned.crossbars < dense.crossbars
    assert pruned.energy_nj < dense.energy_nj
    assert pruned.area_mm2 < dense.area_mm2
    assert pruned.energy_breakdown["index"] > 0 and dense.energy_breakdown["index"] == 0
