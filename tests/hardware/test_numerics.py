"""Chip numerics: presets, files and overrides, and the arithmetic of weights, inputs, ADC and devices."""

import math

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pimprune.errors import ConfigError, UnknownNameError
from pimprune.hardware.adc import adc_bits
from pimprune.hardware.config import HardwareConfig
from pimprune.hardware.numerics import (
    NUMERICS_PRESETS,
    NumericsConfig,
    adc_steps,
    convert_reads,
    input_cycles,
    input_scale,
    load_numerics,
    numerics_to_dict,
    numerics_with_overrides,
    quantize_inputs,
    quantize_weights,
    sample_cells,
    weight_planes,
)

# --------------------------------------------------------------------------- presets and configuration


def test_presets_have_their_documented_bits():
    assert set(NUMERICS_PRESETS) == {"isaac", "neurosim", "ideal"}
    isaac = load_numerics("isaac")
    bits = (isaac.weight_bits, isaac.cell_bits, isaac.input_bits, isaac.dac_bits, isaac.adc_bits)
    assert bits == (16, 2, 16, 1, None)
    assert (isaac.slices, isaac.input_cycles) == (8, 16)
    neurosim = load_numerics("neurosim")
    assert (neurosim.weight_bits, neurosim.cell_bits, neurosim.input_bits, neurosim.adc_bits) == (8, 1, 8, 5)
    assert "Param.cpp" in neurosim.source and "levelOutput=32" in neurosim.source
    ideal = load_numerics("ideal")
    assert ideal.weight_bits is None and ideal.input_bits is None and ideal.exact_readout
    assert not any(NUMERICS_PRESETS.get(n).stochastic for n in NUMERICS_PRESETS)


def test_physical_arrays_count_sign_as_the_hardware_config_does():
    for bits, cell in ((16, 2), (8, 2), (8, 1), (5, 2), (4, 3)):
        cfg = NumericsConfig(weight_bits=bits, cell_bits=cell)
        hw = HardwareConfig(weight_bits=bits, cell_bits=cell, signed="differential")
        assert cfg.slices == hw.slices == math.ceil(bits / cell)
        assert cfg.physical_arrays == hw.physical_arrays == 2 * cfg.slices


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"weight_bits": 1}, "weight_bits must be an integer in 2..24"),
        ({"input_bits": 40}, "input_bits must be an integer"),
        ({"cell_bits": 0}, "cell_bits must be an integer in 1..16"),
        ({"adc_bits": 0}, "adc_bits"),
        ({"weight_scale": "row"}, "weight_scale must be one of column, layer"),
        ({"signed": "offset"}, "only 'differential' is modelled"),
        ({"variation_sigma": -0.1}, "variation_sigma must be a finite number >= 0"),
        ({"stuck_at_zero": 0.7, "stuck_at_one": 0.4}, "at most 1"),
        ({"weight_bits": None, "adc_bits": 6}, "need quantized weights and inputs"),
        ({"input_bits": None, "read_noise_lsb": 0.5}, "need quantized weights and inputs"),
    ],
)
def test_invalid_fields_are_one_line_errors(fields, message):
    with pytest.raises(ConfigError, match=message) as info:
        NumericsConfig(**fields)
    assert "\n" not in str(info.value)


def test_unknown_names_are_errors():
    with pytest.raises(UnknownNameError, match="variation law"):
        NumericsConfig(variation="uniform")
    with pytest.raises(UnknownNameError, match="signed-weight scheme"):
        NumericsConfig(signed="twos")
    with pytest.raises(ConfigError, match="no numerics preset or file 'nope'"):
        load_numerics("nope")


def test_overrides_and_files(tmp_path):
    cfg = numerics_with_overrides(load_numerics("isaac"), {"numerics.weight_bits": 8, "variation_sigma": 0.05})
    assert (cfg.weight_bits, cfg.variation_sigma, cfg.input_bits) == (8, 0.05, 16)
    assert cfg.stochastic and cfg.slices == 4
    with pytest.raises(ConfigError, match="unknown numerics field 'sigma'"):
        numerics_with_overrides(cfg, {"sigma": 0.1})
    with pytest.raises(ConfigError, match="numerics field weight_bits must be int"):
        numerics_with_overrides(cfg, {"weight_bits": "eight"})
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"base": "neurosim", "adc_bits": 4, "variation_sigma": 0.1}))
    mine = load_numerics(path)
    assert (mine.name, mine.weight_bits, mine.cell_bits, mine.adc_bits, mine.variation_sigma) == ("mine", 8, 1, 4, 0.1)
    as_json = tmp_path / "again.json"
    as_json.write_text(__import__("json").dumps(numerics_to_dict(mine)))
    assert load_numerics(as_json) == mine
    bad = tmp_path / "bad.yaml"
    bad.write_text("[1, 2")
    with pytest.raises(ConfigError, match="numerics file .* is not valid YAML/JSON"):
        load_numerics(bad)


# --------------------------------------------------------------------------- weights


@settings(deadline=None, max_examples=40)
@given(
    st.integers(1, 3), st.integers(1, 9), st.integers(1, 6), st.integers(2, 16), st.integers(1, 5),
    st.sampled_from(["column", "layer"]), st.integers(0, 2**31 - 1),
)  # fmt: skip
def test_weight_codes_slices_and_pair_rebuild_the_weight(g, m, n, bits, cell, scale_by, seed):
    gen = torch.Generator().manual_seed(seed)
    matrix = torch.randn(g, m, n, generator=gen) * (torch.rand(g, m, n, generator=gen) < 0.7)
    cfg = NumericsConfig(weight_bits=bits, cell_bits=cell, weight_scale=scale_by)
    codes, scale = quantize_weights(matrix, cfg)
    top = 2 ** (bits - 1) - 1
    assert codes.abs().max() <= top and torch.equal(codes, codes.round())
    per_col = scale.view(g, 1, n)
    assert ((codes * per_col - matrix).abs() <= per_col / 2 + 1e-6).all()
    assert torch.equal(codes[matrix == 0], torch.zeros_like(codes[matrix == 0]))  # a pruned weight stays 0
    if scale_by == "layer":
        assert torch.all(scale == scale[0])
    levels, weights = weight_planes(codes, cfg)
    assert levels.shape == (2 * cfg.slices, g, m, n)
    assert levels.min() >= 0 and levels.max() <= 2**cell - 1
    assert torch.equal(torch.tensordot(weights, levels, dims=1), codes)
    pos, neg = levels[: cfg.slices].sum(0), levels[cfg.slices :].sum(0)
    assert not ((pos > 0) & (neg > 0)).any()  # one array of the pair holds each weight


def test_column_peaks_use_the_full_code_range():
    matrix = torch.tensor([[[0.5, -2.0, 0.0], [-0.3, 1.2, 0.0]]])
    codes, scale = quantize_weights(matrix, NumericsConfig(weight_bits=4))
    assert codes.tolist() == [[[7, -7, 0], [-4, 4, 0]]]
    assert scale.tolist() == pytest.approx([0.5 / 7, 2 / 7, 1.0])


def test_fp32_weights_are_a_pair_of_magnitudes():
    matrix = torch.randn(2, 5, 3)
    cfg = load_numerics("ideal")
    codes, scale = quantize_weights(matrix, cfg)
    assert torch.equal(codes, matrix) and torch.equal(scale, torch.ones(6))
    levels, weights = weight_planes(codes, cfg)
    assert torch.equal(torch.tensordot(weights, levels, dims=1), matrix)


# --------------------------------------------------------------------------- inputs


@settings(deadline=None, max_examples=60)
@given(st.integers(2, 16), st.integers(1, 5), st.booleans(), st.integers(0, 2**31 - 1))
def test_input_cycles_add_up_to_the_codes(bits, dac, signed, seed):
    cfg = NumericsConfig(input_bits=bits, dac_bits=dac)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(50, generator=gen) * 3
    x = x if signed else x.abs()
    scale = input_scale(float(x.abs().max()), signed, cfg)
    codes = quantize_inputs(x, scale, signed, cfg)
    top = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    assert codes.abs().max() <= top and (signed or codes.min() >= 0)
    assert ((codes * scale - x).abs() <= scale / 2 + 1e-5).all()
    cycles = list(input_cycles(codes, signed, cfg))
    expected = math.ceil((bits - 1) / dac) + 1 if signed else math.ceil(bits / dac)
    assert len(cycles) == expected
    total = torch.zeros_like(codes)
    for weight, digits in cycles:
        assert digits.min() >= 0 and digits.max() <= 2**dac - 1 and torch.equal(digits, digits.round())
        total += weight * digits
    assert torch.equal(total, codes)


def test_bit_serial_isaac_inputs_take_16_cycles_signed_or_not():
    cfg = load_numerics("isaac")
    codes = torch.tensor([-5.0, 0.0, 7.0])
    assert len(list(input_cycles(codes, True, cfg))) == len(list(input_cycles(codes.abs(), False, cfg))) == 16


def test_inputs_are_clipped_to_the_calibrated_range():
    cfg = NumericsConfig(input_bits=4)
    assert quantize_inputs(torch.tensor([-1.0, 100.0]), 1.0, False, cfg).tolist() == [0.0, 15.0]
    assert quantize_inputs(torch.tensor([-100.0, 100.0]), 1.0, True, cfg).tolist() == [-7.0, 7.0]
    assert input_scale(0.0, True, cfg) == 1.0 and input_scale(3.0, False, load_numerics("ideal")) == 1.0


# --------------------------------------------------------------------------- ADC


def test_adc_steps_follow_the_lossless_resolution():
    rows = torch.tensor([1, 2, 16, 32, 128])
    lossless = [adc_bits(r, 2, 1) for r in rows.tolist()]
    assert lossless == [2, 3, 6, 7, 9]
    assert adc_steps(rows, NumericsConfig()).tolist() == [1.0] * 5
    assert adc_steps(rows, NumericsConfig(adc_bits=9)).tolist() == [1.0] * 5
    assert adc_steps(rows, NumericsConfig(adc_bits=5)).tolist() == [1.0, 1.0, 2.0, 4.0, 16.0]


def test_convert_reads_rounds_and_clips_to_the_adc_range():
    cfg = NumericsConfig(adc_bits=3)
    reads = torch.tensor([0.4, 5.0, 9.5, 40.0, -1.0]).view(1, 1, 5)
    step = torch.tensor([2.0])
    assert convert_reads(reads, step, cfg).flatten().tolist() == [0.0, 4.0, 10.0, 14.0, 0.0]
    assert torch.equal(convert_reads(reads, step, NumericsConfig()), reads)


def test_read_noise_is_in_adc_steps():
    cfg = NumericsConfig(read_noise_lsb=0.5)
    reads = torch.zeros(2, 100, 1000)
    noisy = convert_reads(reads, torch.tensor([1.0, 4.0]).view(2, 1, 1), cfg, torch.Generator().manual_seed(0))
    assert noisy[0].std().item() == pytest.approx(0.5, rel=0.05)
    assert noisy[1].std().item() == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ValueError, match="generator"):
        convert_reads(reads, torch.tensor([1.0, 1.0]), cfg)


# --------------------------------------------------------------------------- devices


def _levels(seed=0):
    gen = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 4, (4, 8, 16, 16), generator=gen).float()
    live = torch.rand(8, 16, 16, generator=gen) < 0.8
    return levels, live


@pytest.mark.parametrize("law", ["lognormal", "gaussian"])
def test_variation_leaves_off_cells_off_and_is_one_sample_per_seed(law):
    levels, live = _levels()
    cfg = NumericsConfig(variation=law, variation_sigma=0.2)
    a = sample_cells(levels, 3.0, live, cfg, torch.Generator().manual_seed(1))
    b = sample_cells(levels, 3.0, live, cfg, torch.Generator().manual_seed(1))
    c = sample_cells(levels, 3.0, live, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[levels == 0], torch.zeros_like(a[levels == 0]))  # unprogrammed cells stay off
    assert torch.equal(a[:, ~live], torch.zeros_like(a[:, ~live]))  # cells no read sees are 0
    on = (levels > 0) & live
    ratio = a[on] / levels[on]
    assert ratio.min() >= 0
    spread = ratio.log().std() if law == "lognormal" else ratio.std()
    assert spread.item() == pytest.approx(0.2, rel=0.1)


def test_stuck_at_faults():
    levels, live = _levels()
    all_off = sample_cells(levels, 3.0, live, NumericsConfig(stuck_at_zero=1.0), torch.Generator())
    assert not all_off.any()
    all_on = sample_cells(levels, 3.0, live, NumericsConfig(stuck_at_one=1.0), torch.Generator())
    assert torch.equal(all_on, 3.0 * live.expand_as(levels).float())
    some = sample_cells(levels, 3.0, live, NumericsConfig(stuck_at_one=0.1), torch.Generator().manual_seed(0))
    turned_on = (levels == 0) & live & (some == 3.0)
    changed = (some != levels) & live
    assert turned_on.any()  # an unprogrammed cell can be stuck on
    assert changed.float().mean().item() < 0.1
