"""Placement-aware costing: activations, ADC reads, adders, index tables and area of a placement as built."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pimprune.geometry import Crossbar
from pimprune.hardware.config import HardwareConfig, with_overrides
from pimprune.hardware.cost import COMPONENTS, crossbar_area_um2, crossbar_energy_pj, network_cost
from pimprune.hardware.placement_cost import PLACEMENT_COMPONENTS, piece_table, placement_cost
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.network import index_tables, pack_layers, pack_network
from pimprune.mapping.packing import crossbar_stats
from pimprune.training.checkpoint import load_model

ISAAC = HardwareConfig()
PACKED = "results/headline/packed-1pt/model.pt"


def _random_matrices(seed: int, layers: int = 4, segment: int = 8) -> dict[str, torch.Tensor]:
    """Sub-row pruned matrices of a few layers: whole row segments of ``segment`` columns kept or dropped."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in range(layers):
        m, n = int(torch.randint(5, 60, (1,), generator=g)), int(torch.randint(3, 30, (1,), generator=g))
        keep = torch.rand(1, m, -(-n // segment), generator=g) < 0.5
        mask = keep.repeat_interleave(segment, dim=2)[:, :, :n]
        out[f"l{i}"] = torch.randn(1, m, n, generator=g) * mask
    return out


def _mvms(matrices) -> dict[str, int]:
    return {name: 3 + 5 * i for i, name in enumerate(matrices)}


def _pieces(placement):
    return [(k, p) for k, on in enumerate(placement.crossbars) for p in on]


@pytest.fixture(scope="module")
def packed():
    model, meta = load_model(PACKED)
    mats = {lay.name: lay.matrix() for lay in extract_layers(model)}
    return model, mats, meta


def test_activations_are_the_pieces_and_adc_reads_their_columns():
    mats = _random_matrices(0)
    mvms = _mvms(mats)
    placement = pack_network(mats, Crossbar(16, 16), "subrow")
    cost = placement_cost(placement, mats, ISAAC, mvms)
    n = ISAAC.input_cycles
    for name in mats:
        mine = [p for _, p in _pieces(placement) if p.layer == name]
        assert cost.activations[name] == len(mine)
        # every piece reads its used columns (those holding a weight) in every input cycle of every MVM
        used_cols = sum(int((mats[name][p.group][np.ix_(p.rows, p.cols)] != 0).any(0).sum()) for p in mine)
        assert cost.column_reads[name] == used_cols * n * mvms[name]
    # the ADC energy is each piece's conversions: P arrays x (columns + reference) x cycles x MVMs
    table = piece_table(placement, mats)
    adc = crossbar_energy_pj(ISAAC, table.rows, table.cols)["adc"]
    by_hand = sum(float(adc[i]) * mvms[table.names[table.layer[i]]] for i in range(len(table)))
    assert cost.energy_breakdown["adc"] == pytest.approx(by_hand / 1e3)
    one = crossbar_energy_pj(ISAAC, [int(table.rows[0])], [int(table.cols[0])])["adc"][0]
    bits_energy = one / (ISAAC.physical_arrays * (int(table.cols[0]) + ISAAC.sign.extra_columns) * n)
    assert bits_energy == pytest.approx(ISAAC.adc.energy_pj(ISAAC.adc_resolution(int(table.rows[0]))))


def test_network_placement_costs_its_crossbars_not_the_per_layer_count(packed):
    model, mats, meta = packed
    mvms = {n: 4 for n in mats}
    xbar = Crossbar.parse(meta["crossbar"])
    layer = pack_layers(mats, xbar, meta["scheme"])
    network = pack_network(mats, xbar, meta["scheme"])
    assert network.n_crossbars < layer.n_crossbars
    for placement in (layer, network):
        cost = placement_cost(placement, mats, ISAAC, mvms)
        built = crossbar_area_um2(ISAAC, xbar, [1] * placement.n_crossbars, [1] * placement.n_crossbars)
        for comp in ("array", "adc", "dac", "sample_hold", "shift_add", "registers"):
            assert cost.area_breakdown[comp] == pytest.approx(built[comp] / 1e6)
    area = {p.packing: placement_cost(p, mats, ISAAC, mvms).area_mm2 for p in (layer, network)}
    assert area["network"] < area["layer"]


def test_per_layer_placement_costs_what_network_cost_does_plus_the_adders(packed):
    model, mats, meta = packed
    spec = meta["spec"]
    shape = (1, spec["in_channels"], spec["input_size"], spec["input_size"])
    per_layer = network_cost(model, meta["crossbar"], meta["scheme"], ISAAC, shape)
    mvms = {lc.name: lc.mvms for lc in per_layer.layers}
    cost = placement_cost(pack_layers(mats, meta["crossbar"], meta["scheme"]), mats, ISAAC, mvms)
    assert set(cost.energy_breakdown) == set(PLACEMENT_COMPONENTS)
    for comp in COMPONENTS:
        assert cost.energy_breakdown[comp] == pytest.approx(per_layer.energy_breakdown[comp], rel=1e-9)
        assert cost.area_breakdown[comp] == pytest.approx(per_layer.area_breakdown[comp], rel=1e-9)
    assert cost.energy_breakdown["adder"] > 0
    lat = cost.latency["layer_by_layer"].latency_us
    assert cost.latency_us == pytest.approx(per_layer.latency_us)
    assert lat <= cost.latency["pipelined"].latency_us


def test_adds_of_a_matrix_taller_than_a_crossbar():
    # 70 rows on 32-row crossbars: three crossbars feed every one of the 20 outputs
    mats = {"a": torch.randn(1, 70, 20)}
    cost = placement_cost(pack_layers(mats, Crossbar(32, 32), "dense"), mats, ISAAC, {"a": 7})
    assert cost.adds["a"] == (3 - 1) * 20
    assert cost.energy_breakdown["adder"] == pytest.approx(7 * 40 * ISAAC.adder.energy_pj_per_add / 1e3)
    units = -(-40 // (ISAAC.adder.adds_per_unit_per_cycle * ISAAC.input_cycles))
    assert cost.area_breakdown["adder"] == pytest.approx(units * ISAAC.adder.area_um2_per_unit / 1e6)
    one = placement_cost(pack_layers({"a": mats["a"][:, :32]}, Crossbar(32, 32), "dense"), {"a": mats["a"][:, :32]},
                         ISAAC, {"a": 7})
    assert one.adds["a"] == 0 and one.area_breakdown["adder"] == 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.sampled_from([4, 8, 16]), cols=st.sampled_from([8, 16]))
def test_index_storage_is_that_of_the_index_tables(seed, rows, cols):
    mats = _random_matrices(seed, segment=cols)
    placement = pack_network(mats, Crossbar(rows, cols), "subrow")
    # kept sub-rows are whole and dense: every line of a piece holds a weight, the tables count the same lines
    tables = index_tables(placement)
    assert piece_table(placement, mats).index_bits == sum(t.input_bits + t.output_bits for t in tables)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.sampled_from([4, 8, 16]), cols=st.sampled_from([8, 16]),
       tiles=st.sampled_from([1, 2, 168]), reprogram=st.sampled_from([0.0, 5.0]))
def test_layer_by_layer_is_never_slower_than_pipelined(seed, rows, cols, tiles, reprogram):
    mats = _random_matrices(seed, layers=6)
    hw = with_overrides(ISAAC, {"chip.tiles": tiles, "chip.reprogram_us_per_pass": reprogram})
    for pack in (pack_layers, pack_network):
        cost = placement_cost(pack(mats, Crossbar(rows, cols), "subrow"), mats, hw, _mvms(mats))
        lbl, pipe = cost.latency["layer_by_layer"], cost.latency["pipelined"]
        assert lbl.latency_us <= pipe.latency_us * (1 + 1e-12)


def test_shared_crossbars_are_one_stage_holding_their_union():
    mats = _random_matrices(3, layers=5)
    placement = pack_network(mats, Crossbar(16, 16), "subrow")
    cost = placement_cost(placement, mats, ISAAC, _mvms(mats))
    assert sum(cost.stage_crossbars) == placement.n_crossbars  # every crossbar in exactly one stage
    shared = [k for k, on in enumerate(placement.crossbars) if len({p.layer for p in on}) > 1]
    if shared:
        assert len(cost.stage_crossbars) < len(mats)


def test_used_lines_match_the_per_layer_stats(packed):
    _, mats, meta = packed
    xbar = Crossbar.parse(meta["crossbar"])
    placement = pack_layers(mats, xbar, meta["scheme"])
    table = piece_table(placement, mats)
    rows, cols = [], []
    for m in mats.values():
        r, c = crossbar_stats(m != 0, xbar, meta["scheme"])
        rows += r.tolist()
        cols += c.tolist()
    assert table.rows.tolist() == rows and table.cols.tolist() == cols
