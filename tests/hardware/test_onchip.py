"""On-chip layers: exact where the numerics are, faithful to quantization, ADC and device faults."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.hardware.adc import adc_bits
from pimprune.hardware.numerics import NumericsConfig, load_numerics, numerics_with_overrides
from pimprune.hardware.onchip import OnChipModel, calibrate_inputs, on_chip
from pimprune.mapping.counting import SCHEMES
from pimprune.mapping.matrices import extract_layers, matrix_to_weight, weight_to_matrix
from pimprune.mapping.packing import pack

IDEAL = load_numerics("ideal")
ISAAC = load_numerics("isaac")


def _prune_(module: nn.Conv2d | nn.Linear, density: float, structure: str, seed: int) -> None:
    """Zero weights of a layer in place: single weights, whole matrix rows or whole columns."""
    groups = module.groups if isinstance(module, nn.Conv2d) else 1
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        matrix = weight_to_matrix(module.weight, groups)
        g, m, n = matrix.shape
        shape = {"weights": (g, m, n), "rows": (g, m, 1), "cols": (g, 1, n)}[structure]
        keep = (torch.rand(shape, generator=gen) < density).expand(g, m, n)
        module.weight.copy_(matrix_to_weight(matrix * keep, module.weight.shape))


def _chip(model, x, xbar, scheme, numerics, seed=0, path="auto"):
    with on_chip(model, xbar, scheme, numerics, seed, calibration=x, path=path):
        with torch.no_grad():
            return model(x)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 6, 3, stride=2, groups=3), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 3 * 3, 5),
    ).eval()  # fmt: skip


# --------------------------------------------------------------------------- ideal numerics are the fp32 layer


@settings(deadline=None, max_examples=40)
@given(
    cin=st.integers(1, 3), cout=st.integers(1, 4), groups=st.integers(1, 3), k=st.integers(1, 4),
    stride=st.integers(1, 3), padding=st.integers(0, 2), size=st.integers(3, 8),
    rows=st.integers(1, 9), cols=st.integers(1, 9), scheme=st.sampled_from(SCHEMES),
    structure=st.sampled_from(["weights", "rows", "cols"]), density=st.floats(0.0, 1.0),
    path=st.sampled_from(["reads", "collapsed"]), seed=st.integers(0, 2**31 - 1),
)  # fmt: skip
def test_ideal_conv_equals_fp32(cin, cout, groups, k, stride, padding, size, rows, cols, scheme, structure, density,
                                path, seed):  # fmt: skip
    torch.manual_seed(seed)
    conv = nn.Conv2d(cin * groups, cout * groups, k, stride, padding, groups=groups, bias=seed % 2 == 0).eval()
    _prune_(conv, density, structure, seed)
    x = torch.randn(2, cin * groups, size + k, size + k - 1)
    with torch.no_grad():
        expected = conv(x)
    got = _chip(conv, x, Crossbar(rows, cols), scheme, IDEAL, path=path)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@settings(deadline=None, max_examples=30)
@given(
    features=st.integers(1, 40), outputs=st.integers(1, 12), rows=st.integers(1, 16), cols=st.integers(1, 16),
    scheme=st.sampled_from(SCHEMES), density=st.floats(0.0, 1.0), path=st.sampled_from(["reads", "collapsed"]),
    seed=st.integers(0, 2**31 - 1),
)  # fmt: skip
def test_ideal_linear_equals_fp32(features, outputs, rows, cols, scheme, density, path, seed):
    torch.manual_seed(seed)
    linear = nn.Linear(features, outputs)
    _prune_(linear, density, "weights", seed)
    x = torch.randn(3, features)
    with torch.no_grad():
        expected = linear(x)
    torch.testing.assert_close(_chip(linear, x, Crossbar(rows, cols), scheme, IDEAL, path=path), expected,
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_padding_modes_and_same_padding():
    for conv in (nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), nn.Conv2d(2, 3, 4, padding="same")):
        x = torch.randn(2, 2, 6, 7)
        with torch.no_grad():
            expected = conv(x)
        for path in ("reads", "collapsed"):
            torch.testing.assert_close(_chip(conv, x, "4x3", "dense", IDEAL, path=path), expected,
                                       rtol=1e-5, atol=1e-5)  # fmt: skip


# --------------------------------------------------------------------------- quantization only


def _fake_quant_reference(model: nn.Module, x: torch.Tensor, cfg: NumericsConfig) -> torch.Tensor:
    """The model with weights and layer inputs fake-quantized directly (no crossbars)."""
    qmax_w = 2 ** (cfg.weight_bits - 1) - 1
    ranges = calibrate_inputs(model, extract_layers(model), x)
    handles = []
    originals = {}
    for lay in extract_layers(model):
        w = lay.module.weight.detach()
        matrix = weight_to_matrix(w, lay.groups)
        peak = matrix.abs().amax(1, keepdim=True)
        if cfg.weight_scale == "layer":
            peak = peak.amax().expand_as(peak)
        scale = torch.where(peak > 0, peak / qmax_w, torch.ones_like(peak))
        originals[lay.module] = w.clone()
        with torch.no_grad():
            lay.module.weight.copy_(matrix_to_weight(torch.round(matrix / scale) * scale, w.shape))
        rng = ranges[lay.name]
        top = 2 ** (cfg.input_bits - 1) - 1 if rng.signed else 2**cfg.input_bits - 1
        low = -top if rng.signed else 0
        s = rng.max_abs / top

        def pre(module, args, s=s, low=low, top=top):
            return (torch.clamp(torch.round(args[0] / s), low, top) * s,)

        handles.append(lay.module.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for module, w in originals.items():
                module.weight.copy_(w)


@pytest.mark.parametrize("bits, cell, inputs, dac, scale_by", [(16, 2, 16, 1, "column"), (8, 2, 8, 2, "column"),
                                                              (4, 3, 6, 4, "layer"), (5, 1, 3, 1, "column")])
@pytest.mark.parametrize("scheme", ["dense", "subrow", "subcolumn", "crossbar"])
def test_lossless_chip_is_weight_and_input_quantization(bits, cell, inputs, dac, scale_by, scheme):
    model = _model()
    for i, m in enumerate(m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))):
        _prune_(m, 0.6, ("weights", "rows", "cols")[i % 3], i)
    x = torch.randn(4, 2, 8, 8)  # signed input for the first layer, unsigned after the ReLUs
    cfg = NumericsConfig(weight_bits=bits, cell_bits=cell, input_bits=inputs, dac_bits=dac, weight_scale=scale_by)
    expected = _fake_quant_reference(model, x, cfg)
    for path in ("reads", "collapsed"):
        got = _chip(model, x, "5x4", scheme, cfg, path=path)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_quantization_error_shrinks_with_bits():
    model = _model()
    x = torch.randn(8, 2, 8, 8)
    with torch.no_grad():
        fp32 = model(x)
    errors = []
    for bits in (3, 4, 6, 8, 12):
        cfg = NumericsConfig(weight_bits=bits, input_bits=bits)
        errors.append(float((_chip(model, x, "8x8", "dense", cfg) - fp32).abs().mean()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-2 * float(fp32.abs().mean())


# --------------------------------------------------------------------------- the two paths


@pytest.mark.parametrize("scheme", ["dense", "subrow", "unstructured"])
@pytest.mark.parametrize(
    "changes",
    [
        {"variation_sigma": 0.2},
        {"variation": "gaussian", "variation_sigma": 0.1, "stuck_at_zero": 0.05, "stuck_at_one": 0.02},
        {"weight_bits": None, "variation_sigma": 0.3, "stuck_at_one": 0.05},
        {"input_bits": None, "weight_bits": 6, "cell_bits": 4, "variation_sigma": 0.1},
    ],
)
def test_collapsed_product_equals_every_read_when_lossless(scheme, changes):
    model = _model()
    _prune_(model[0], 0.5, "weights", 0)
    x = torch.randn(3, 2, 8, 8)
    cfg = numerics_with_overrides(NumericsConfig(weight_bits=8, input_bits=8, dac_bits=2), changes)
    reads = _chip(model, x, "6x5", scheme, cfg, seed=4, path="reads")
    collapsed = _chip(model, x, "6x5", scheme, cfg, seed=4, path="collapsed")
    torch.testing.assert_close(reads, collapsed, rtol=1e-5, atol=1e-5 * float(collapsed.abs().max()))
    assert not torch.allclose(collapsed, _chip(model, x, "6x5", scheme, cfg, seed=5, path="collapsed"))


@pytest.mark.parametrize("faults", [{}, {"stuck_at_zero": 0.05, "stuck_at_one": 0.05}])
def test_adc_with_the_lossless_bits_or_more_reads_exactly(faults):
    model = _model()
    _prune_(model[2], 0.5, "rows", 1)
    x = torch.randn(3, 2, 8, 8)
    cfg = numerics_with_overrides(NumericsConfig(weight_bits=6, cell_bits=2, input_bits=5, dac_bits=2), faults)
    lossless = _chip(model, x, "7x4", "subrow", cfg, seed=1)
    need = adc_bits(7, cfg.cell_bits, cfg.dac_bits)
    for bits in (need, need + 3):
        got = _chip(model, x, "7x4", "subrow", numerics_with_overrides(cfg, {"adc_bits": bits}), seed=1)
        torch.testing.assert_close(got, lossless, rtol=1e-5, atol=1e-5 * float(lossless.abs().max()))
    errors = [float((_chip(model, x, "7x4", "subrow", numerics_with_overrides(cfg, {"adc_bits": b}), seed=1)
                     - lossless).abs().mean()) for b in (need - 1, need - 3)]  # fmt: skip
    assert min(errors) > 0  # fewer bits than the active rows need: the ADC rounds


def test_adc_range_follows_the_active_rows():
    conv = nn.Conv2d(4, 4, 3, bias=False)
    _prune_(conv, 0.3, "rows", 3)
    x = torch.randn(1, 4, 6, 6)
    chip = OnChipModel(conv, Crossbar(16, 4), "subrow", NumericsConfig(adc_bits=4), x)
    cells = chip.layers[0]
    packed = pack(extract_layers(conv)[0].matrix(), Crossbar(16, 4), "subrow")
    assert torch.equal(cells.active_rows, packed.used_rows())
    lossless = [adc_bits(r, 2, 1) for r in cells.active_rows.tolist()]
    assert cells.steps.tolist() == [float(2 ** max(0, b - 4)) for b in lossless]


def test_read_noise_needs_the_read_path_and_varies_per_read():
    model = _model()
    x = torch.randn(2, 2, 8, 8)
    cfg = NumericsConfig(weight_bits=8, input_bits=8, read_noise_lsb=0.5)
    with pytest.raises(ConfigError, match="collapsed path needs a lossless ADC"):
        OnChipModel(model, Crossbar(8, 8), "dense", cfg, x, path="collapsed")
    clean = _chip(model, x, "8x8", "dense", numerics_with_overrides(cfg, {"read_noise_lsb": 0}))
    noisy = _chip(model, x, "8x8", "dense", cfg)
    slight = _chip(model, x, "8x8", "dense", numerics_with_overrides(cfg, {"read_noise_lsb": 0.05}))
    assert 0 < float((slight - clean).abs().mean()) < float((noisy - clean).abs().mean())
    torch.testing.assert_close(noisy, _chip(model, x, "8x8", "dense", cfg))  # same seed, same noise


# --------------------------------------------------------------------------- pruned cells and faults


def test_pruned_weights_stay_zero_cells_unless_stuck_on():
    conv = nn.Conv2d(3, 8, 3)
    _prune_(conv, 0.4, "weights", 2)
    x = torch.randn(2, 3, 7, 7)
    pruned = extract_layers(conv)[0].matrix() == 0
    cfg = NumericsConfig(weight_bits=8, input_bits=8, variation_sigma=0.5, stuck_at_zero=0.1)
    chip = OnChipModel(conv, Crossbar(9, 8), "dense", cfg, x)
    effective = chip.attach(seed=0)[0].effective
    chip.detach()
    assert effective is not None and not effective[pruned].any()
    assert effective[~pruned].ne(0).float().mean() > 0.8
    stuck = OnChipModel(conv, Crossbar(9, 8), "dense", numerics_with_overrides(cfg, {"stuck_at_one": 0.2}), x)
    effective = stuck.attach(seed=0)[0].effective
    stuck.detach()
    assert effective[pruned].ne(0).any()  # a stuck-on cell turns a pruned weight on


def test_the_model_gets_its_own_forward_back():
    model = _model()
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        before = model(x)
    with pytest.raises(RuntimeError, match="inside"):
        with on_chip(model, "4x4", "dense", ISAAC, calibration=x):
            assert "forward" in model[0].__dict__
            raise RuntimeError("inside")
    assert all("forward" not in m.__dict__ for m in model)
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_quantized_inputs_need_calibration():
    with pytest.raises(ConfigError, match="calibration"):
        OnChipModel(_model(), Crossbar(4, 4), "dense", ISAAC)
    with pytest.raises(ConfigError, match="unknown on-chip path"):
        OnChipModel(_model(), Crossbar(4, 4), "dense", IDEAL, path="fast")


# --------------------------------------------------------------------------- accuracy degrades with variation


def _trained_model():
    """A small conv net trained to about 99% on 4 noisy 8x8 templates, and held-out data."""
    gen = torch.Generator().manual_seed(0)
    templates = torch.randn(4, 1, 8, 8, generator=gen)
    labels = torch.randint(0, 4, (1200,), generator=gen)
    images = templates[labels] + 1.6 * torch.randn(1200, 1, 8, 8, generator=gen)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 3 * 3, 4),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(150):
        batch = slice((step * 64) % 800, (step * 64) % 800 + 64)
        opt.zero_grad()
        F.cross_entropy(model(images[batch]), labels[batch]).backward()
        opt.step()
    return model.eval(), images[800:], labels[800:]


def test_mean_degradation_grows_with_sigma():
    model, x, y = _trained_model()
    with torch.no_grad():
        fp32 = model(x)
    assert (fp32.argmax(1) == y).float().mean() > 0.95
    errors, accuracies = [], []
    for sigma in (0.0, 0.1, 0.3, 0.6, 1.0):
        cfg = numerics_with_overrides(ISAAC, {"weight_bits": 8, "variation_sigma": sigma})
        chip = OnChipModel(model, Crossbar(16, 16), "dense", cfg, x[:100])
        err, acc = 0.0, 0.0
        for seed in range(5):
            chip.attach(seed)
            with torch.no_grad():
                out = model(x)
            chip.detach()
            err += float((out - fp32).pow(2).mean()) / 5
            acc += float((out.argmax(1) == y).float().mean()) / 5
        errors.append(err)
        accuracies.append(acc)
    assert errors == sorted(errors) and errors[0] < errors[1]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[0] >= accuracies[-1] + 0.1


def test_shipped_model_degrades_with_sigma():
    from pimprune.training.checkpoint import load_model
    from pimprune.training.loaders import make_loaders

    model, _ = load_model("src/pimprune/assets/demo_dense/model.pt")
    model.eval()
    train, test, _ = make_loaders("fashion-mnist-subset", 200, augment=False, limit_train=200, limit_test=200)
    x, y = next(iter(test))
    with torch.no_grad():
        fp32 = model(x)
    calibration = next(iter(train))[0]
    errors, accuracies = [], []
    for sigma in (0.0, 0.15, 0.4):
        chip = OnChipModel(model, Crossbar(32, 32), "dense", numerics_with_overrides(ISAAC, {"variation_sigma": sigma}),
                           calibration)  # fmt: skip
        outs = []
        for seed in range(3):
            chip.attach(seed)
            with torch.no_grad():
                outs.append(model(x))
            chip.detach()
        errors.append(sum(float((o - fp32).pow(2).mean()) for o in outs) / 3)
        accuracies.append(sum(float((o.argmax(1) == y).float().mean()) for o in outs) / 3)
    assert errors[0] < 1e-3 < errors[1] < errors[2]
    assert accuracies[2] < accuracies[0]
