"""NeuroSim's rules: positions, mapping decision and its failure, fixed point and input bits."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimprune.errors import ConfigError
from pimprune.hardware.neurosim import (
    MAX_BITS,
    MIN_BITS,
    check_bits,
    check_mapping,
    encode_bits,
    mapping_check,
    positions,
    to_grid,
    unit_scale,
)

# NeuroSim's shipped NetWork_VGG8.csv (Inference_pytorch/NeuroSIM, commit ac828e6): conv1 is
# conventionally mapped (27 rows < 128), conv2-6 novel-mapped, the classifiers conventional.
VGG8 = [
    (32, 32, 3, 3, 3, 128, 0, 1),
    (32, 32, 128, 3, 3, 128, 1, 1),
    (16, 16, 128, 3, 3, 256, 0, 1),
    (16, 16, 256, 3, 3, 256, 1, 1),
    (8, 8, 256, 3, 3, 512, 0, 1),
    (8, 8, 512, 3, 3, 512, 1, 1),
    (1, 1, 8192, 1, 1, 1024, 0, 1),
    (1, 1, 1024, 1, 1, 10, 0, 1),
]


def test_positions_ignore_padding():
    assert positions((7, 7, 512, 3, 3, 512, 0, 1)) == 25  # NeuroSim's ResNet18 file: 5x5, not 7x7
    assert positions((224, 224, 3, 7, 7, 64, 1, 2)) == 109 * 109
    assert positions((1, 1, 512, 1, 1, 1000, 0, 1)) == 1


@given(
    out=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 4), out_w=st.integers(1, 40)
)
def test_positions_of_ifm_out_times_stride_plus_kernel(out, k, s, out_w):
    # the exporter writes IFM = out * stride + K - 1: NeuroSim then runs exactly out x out_w positions
    row = (out * s + k - 1, out_w * s + k - 1, 4, k, k, 8, 0, s)
    assert positions(row) == out * out_w


def test_vgg8_mapping_as_neurosim_reports_it():
    check = mapping_check(VGG8, 8, 128)
    assert check.ok and check.kernel_area == 9
    assert check.novel == (False, True, True, True, True, True, False, False)
    assert check.novel_pe == 4096 and check.conventional_tile == 8192


def test_tiny_nets_of_the_notes():
    # 3x3 8->16 then 16->16 on 8x8 fails in NeuroSim (no novel line is wide enough), 8->32, 32->32 runs
    bad = [(8, 8, 8, 3, 3, 16, 0, 1), (8, 8, 16, 3, 3, 16, 0, 1)]
    good = [(8, 8, 8, 3, 3, 32, 0, 1), (8, 8, 32, 3, 3, 32, 0, 1)]
    assert not mapping_check(bad, 8, 128).ok and not mapping_check(bad, 4, 128).ok
    assert mapping_check(good, 8, 128).novel == (False, True) and mapping_check(good, 8, 128).ok
    with pytest.raises(ConfigError) as err:
        check_mapping(bad, 8, 128)
    message = str(err.value)
    assert "\n" not in message and "SubArray Size is too large" in message
    assert "at most 64 crossbar rows" in message  # 16*8 = 128 > 64


def test_no_novel_line_at_all():
    rows = [(10, 10, 8, 3, 3, 64, 0, 1), (8, 8, 64, 1, 1, 64, 0, 1)]  # 72 rows < 128: nothing novel-mapped
    check = mapping_check(rows, 8, 128)
    assert not any(check.novel) and check.novel_pe == 0 and not check.ok
    with pytest.raises(ConfigError, match="no line is novel-mapped"):
        check_mapping(rows, 8, 128)
    assert mapping_check(rows, 8, 64).ok  # 72 >= 64 rows and 64*8 > 64


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 80), st.sampled_from([1, 3, 5]), st.integers(1, 80)), min_size=1, max_size=6
    ),
    st.sampled_from([32, 64, 128, 256]),
    st.integers(MIN_BITS, 10),
)
def test_the_advice_of_a_refusal_works(layers, rows, bits):
    table = [(10, 10, cin, k, k, cout, 0, 1) for cin, k, cout in layers]
    check = mapping_check(table, bits, rows)
    if check.ok:
        assert check_mapping(table, bits, rows) == check
        return
    with pytest.raises(ConfigError) as err:
        check_mapping(table, bits, rows)
    message = str(err.value)
    assert "\n" not in message
    if " crossbar rows" in message:  # the fewer rows it names do pass
        fewer = int(message.split("at most ")[1].split(" ")[0])
        assert fewer < rows and mapping_check(table, bits, fewer).ok
    if "--weight-bits " in message:
        more = int(message.split("--weight-bits ")[1].split(" ")[0])
        assert mapping_check(table, more, rows).ok
    if "--mapping conventional" in message:
        assert mapping_check(table, bits, rows, "conventional").ok


def test_conventional_mapping_needs_a_wide_line():
    rows = [(10, 10, 8, 3, 3, 32, 0, 1)]
    assert not mapping_check(rows, 8, 128, "conventional").ok  # 256 < 4 * 128
    assert mapping_check(rows, 8, 64, "conventional").ok
    with pytest.raises(ConfigError, match="unknown NeuroSim mapping"):
        mapping_check(rows, 8, 64, "other")


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=50), st.integers(MIN_BITS, MAX_BITS)
)
def test_grid_keeps_values_inside_minus_one_one(values, bits):
    x = np.array(values)
    peak = float(np.abs(x).max())
    q = to_grid(x, unit_scale(peak, bits), bits)
    top = 2 ** (bits - 1) - 1
    assert np.all(np.abs(q) <= top)  # value q / 2^(bits-1) in (-1, 1): +1.0 would wrap in NeuroSim
    if peak > 0:
        assert np.abs(q).max() == top  # the largest |value| takes the largest code
        step = peak / top  # rounding error at most half a step
        assert np.allclose(q * step, x, atol=step / 2 + 1e-9 * peak)


@given(st.integers(MIN_BITS, MAX_BITS), st.data())
def test_input_bits_are_sign_then_twos_complement(bits, data):
    top = 2 ** (bits - 1) - 1
    q = np.array(data.draw(st.lists(st.integers(-top, top), min_size=1, max_size=20)))
    b = encode_bits(q, bits)
    assert b.shape == (*q.shape, bits) and set(np.unique(b)) <= {0, 1}
    assert np.array_equal(b[:, 0], (q < 0).astype(np.uint8))  # bit 0 is the sign
    # NeuroSim's wrapper weighs bit 0 by -1 and bit i by 2^-i (units of the full scale)
    weights = np.array([-1.0] + [2.0**-i for i in range(1, bits)])
    assert np.allclose(b @ weights, q / 2 ** (bits - 1))


def test_bits_are_checked():
    assert check_bits(8, "--weight-bits") == 8
    for bad in (1, 0, MAX_BITS + 1, 8.0, True):
        with pytest.raises(ConfigError, match="--input-bits must be an integer"):
            check_bits(bad, "--input-bits")
    assert unit_scale(0.0, 8) == 1.0
