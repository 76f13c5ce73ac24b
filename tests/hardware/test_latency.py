"""Latency from the mapping: chip capacity, copies, time-multiplexing, shared crossbars."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.hardware.config import HardwareConfig, with_overrides
from pimprune.hardware.cost import network_cost
from pimprune.hardware.latency import EXECUTION_MODELS, latency, network_latency

ISAAC = HardwareConfig()
NO_COPIES = with_overrides(ISAAC, {"chip.replicate": False})
MVM_NS = 16 * 100.0  # 16 input cycles of 100 ns


def test_chip_capacity_is_isaacs():
    assert ISAAC.chip_crossbars == 168 * 12
    assert with_overrides(ISAAC, {"signed": "differential"}).chip_crossbars == 168 * 6
    assert set(EXECUTION_MODELS.names()) == {"layer_by_layer", "pipelined"}


def test_without_copies_by_hand():
    rep = latency({"a": 10, "b": 100, "c": 5}, {"a": 3136, "b": 196, "c": 4}, NO_COPIES)
    lbl, pipe = rep["layer_by_layer"], rep["pipelined"]
    total_us = (3136 + 196 + 4) * MVM_NS / 1e3
    assert lbl.latency_us == pytest.approx(total_us)
    assert lbl.throughput_ips == pytest.approx(1e6 / total_us)
    assert pipe.latency_us == pytest.approx(total_us)
    assert pipe.throughput_ips == pytest.approx(1e9 / (3136 * MVM_NS))  # the slowest stage
    assert rep.fits and rep.occupied == 115


def test_copies_use_free_crossbars_and_speed_up():
    loads = ({"a": 10, "b": 100, "c": 5}, {"a": 3136, "b": 196, "c": 4})
    plain = latency(*loads, NO_COPIES)
    rep = latency(*loads, ISAAC)
    for mode in EXECUTION_MODELS:
        assert rep[mode].latency_us < plain[mode].latency_us
        copies = rep[mode].copies
        extra = sum((copies.get(n, 1) - 1) * k for n, k in loads[0].items())
        assert extra <= ISAAC.chip_crossbars - rep.occupied
    # the pipeline's copies balance it: the slowest stage is far below layer a's 3136 MVMs
    assert rep["pipelined"].throughput_ips > 50 * plain["pipelined"].throughput_ips
    assert rep["pipelined"].copies["a"] > 100


def test_fewer_crossbars_replicate_more_within_the_same_chip():
    mvms = {"a": 3136, "b": 784, "c": 196}
    dense = latency({"a": 200, "b": 400, "c": 800}, mvms, ISAAC)
    pruned = latency({"a": 20, "b": 40, "c": 80}, mvms, ISAAC)
    for mode in EXECUTION_MODELS:
        assert pruned[mode].latency_us < dense[mode].latency_us
    assert pruned["pipelined"].throughput_ips > dense["pipelined"].throughput_ips


def test_time_multiplexed_when_the_network_does_not_fit():
    k = ISAAC.chip_crossbars
    hw = with_overrides(ISAAC, {"chip.reprogram_us_per_pass": 10.0})
    rep = latency({"a": 2 * k + 1, "b": 10}, {"a": 5, "b": 7}, hw)
    assert not rep.fits
    lbl = rep["layer_by_layer"]
    # a runs in 3 passes, b in 1; each pass rewrites the chip
    assert lbl.passes == 4
    assert lbl.latency_us == pytest.approx((3 * 5 + 7) * MVM_NS / 1e3 + 4 * 10.0)
    pipe = rep["pipelined"]
    assert pipe.passes == 4  # segment [a] in 3 passes, segment [b]
    assert pipe.latency_us == pytest.approx((3 * 5 + 7) * MVM_NS / 1e3 + 4 * 10.0)
    assert pipe.throughput_ips == pytest.approx(1e9 / ((3 * 5 + 7) * MVM_NS))
    # no copies when time-multiplexed: a network that does not fit is never faster than one that does
    assert lbl.copies == {"a": 1, "b": 1}
    fits = latency({"a": k - 10, "b": 10}, {"a": 5, "b": 7}, hw)
    assert fits.fits and fits["layer_by_layer"].latency_us < lbl.latency_us


def test_shared_crossbars_are_serialised_only_when_pipelined():
    counts, mvms = {"a": 10, "b": 10, "c": 10}, {"a": 100, "b": 100, "c": 100}
    alone = latency(counts, mvms, NO_COPIES)
    shared = latency(counts, mvms, NO_COPIES, shared=[{"a", "c"}])
    assert shared["layer_by_layer"].latency_us == pytest.approx(alone["layer_by_layer"].latency_us)
    assert shared["pipelined"].throughput_ips == pytest.approx(alone["pipelined"].throughput_ips / 2)
    assert shared.occupied == 20  # a group occupies its largest member's crossbars
    assert latency(counts, mvms, NO_COPIES, total_crossbars=12).occupied == 12
    with pytest.raises(ConfigError, match="unknown layer"):
        latency(counts, mvms, NO_COPIES, shared=[{"a", "zz"}])


def test_slow_adc_cycles_count():
    rep = latency({"a": 1}, {"a": 10}, NO_COPIES, cycle_ns={"a": 250.0})
    assert rep["layer_by_layer"].latency_us == pytest.approx(10 * 16 * 250.0 / 1e3)


def test_network_latency_reads_the_cost(small_net):
    model = small_net()
    cost = network_cost(model, Crossbar(16, 16), "dense", NO_COPIES, (3, 8, 8))
    rep = network_latency(cost, NO_COPIES)
    assert rep["layer_by_layer"].latency_us == pytest.approx(cost.latency_us)


def test_a_stage_of_shared_crossbars_holds_their_union_in_both_models():
    mvms = {"a": 100, "b": 100, "c": 100}
    # a and b share crossbar 1: one stage of crossbars {0, 1, 2}; c alone on {3}
    sets = {"a": {0, 1}, "b": {1, 2}, "c": {3}}
    counts = {n: len(s) for n, s in sets.items()}
    hw = with_overrides(ISAAC, {"chip.tiles": 1, "chip.arrays_per_tile": 8 * 7})  # 7 crossbars: 3 free
    rep = latency(counts, mvms, hw, crossbar_sets=sets)
    assert rep.occupied == 4
    for mode in EXECUTION_MODELS:  # a copy of the {a, b} stage costs its 3 crossbars: exactly one fits
        assert rep[mode].copies.get("a", 1) <= 2
        extra = (rep[mode].copies.get("a", 1) - 1) * 3 + (rep[mode].copies.get("c", 1) - 1)
        assert extra <= 3
    # without the sets (members on the same crossbars) a group counts its largest member
    assert latency(counts, mvms, hw, shared=[{"a", "b"}]).occupied == 3


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    mvms=st.lists(st.integers(0, 3000), min_size=8, max_size=8),
    share=st.lists(st.integers(0, 7), max_size=6),
    tiles=st.sampled_from([1, 2, 5, 168]),
    reprogram=st.sampled_from([0.0, 3.0]),
    replicate=st.booleans(),
)
def test_layer_by_layer_latency_never_exceeds_pipelined(counts, mvms, share, tiles, reprogram, replicate):
    names = [f"l{i}" for i in range(len(counts))]
    hw = with_overrides(ISAAC, {"chip.tiles": tiles, "chip.reprogram_us_per_pass": reprogram,
                                "chip.replicate": replicate})
    groups = [{names[i % len(names)], names[(i + 1) % len(names)]} for i in share]
    rep = latency(dict(zip(names, counts, strict=True)), dict(zip(names, mvms, strict=False)), hw, shared=groups)
    assert rep["layer_by_layer"].latency_us <= rep["pipelined"].latency_us * (1 + 1e-12)
