"""Quantization-aware pruning: the fake quantizer is the chip's quantizer, masks and noise behave."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from pimprune.errors import ConfigError
from pimprune.hardware.numerics import load_numerics, numerics_with_overrides, quantize_weights
from pimprune.mapping.matrices import extract_layers
from pimprune.pruning.masking import apply_masks
from pimprune.pruning.quantization import QuantConfig, attach_quantization, fake_quant
from pimprune.training.checkpoint import plain_state_dict


@given(
    out=st.integers(1, 9), cin=st.integers(1, 7), k=st.sampled_from([1, 3]), bits=st.integers(2, 10),
    per_column=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_fake_quant_equals_the_chips_codes(out, cin, k, bits, per_column, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, cin, k, k, generator=g) * (torch.rand(out, 1, 1, 1, generator=g) + 0.1)
    w[0].zero_() if out > 2 else None  # an all-zero column keeps scale 1 and codes 0
    q = fake_quant(w, bits, per_column)
    cfg = numerics_with_overrides(load_numerics("isaac"), {"weight_bits": bits,
                                                           "weight_scale": "column" if per_column else "layer"})
    codes, scale = quantize_weights(w.flatten(1).T.unsqueeze(0), cfg)  # (1, M, N): columns are outputs
    expected = (codes[0] * scale).T.reshape_as(w)
    assert torch.allclose(q, expected, atol=1e-6)
    # the saved quantized weights re-quantize to the same codes (the chip reads what was trained)
    codes2, _ = quantize_weights(q.flatten(1).T.unsqueeze(0), cfg)
    assert torch.equal(codes2, codes)
    assert len(torch.unique(codes)) <= 2 ** bits - 1


def test_straight_through_gradient():
    w = torch.randn(4, 3, requires_grad=True)
    fake_quant(w, 3).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 6, 3, groups=2), nn.Flatten(), nn.LazyLinear(5))


def test_masks_stay_zero_and_noise_only_while_training():
    net = _net()
    net(torch.randn(2, 3, 8, 8))
    mask = torch.rand_like(net[2].weight) > 0.5
    apply_masks(net, {"2.weight": mask})
    attach_quantization(net, QuantConfig(weight_bits=4, train_noise=0.2))
    net.train()
    assert not torch.equal(net[0].weight, net[0].weight)  # fresh noise every forward
    assert bool((net[2].weight[~mask] == 0).all())
    net.eval()
    assert torch.equal(net[0].weight, net[0].weight)
    assert torch.equal(net[2].weight, fake_quant(net[2].parametrizations.weight.original * mask, 4))
    state = plain_state_dict(net)  # what model.pt holds: quantized, masked, no noise
    assert torch.equal(state["2.weight"], net[2].weight) and bool((state["2.weight"][~mask] == 0).all())
    assert len(torch.unique(state["0.weight"][0])) <= 15


def test_input_quantization_in_training_mode_only():
    net = _net()
    net(torch.randn(2, 3, 8, 8))
    handles = attach_quantization(net, QuantConfig(input_bits=2))
    assert len(handles) == len(extract_layers(net))
    seen = []
    net[2].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    x = torch.randn(2, 3, 8, 8)
    net.train()
    net(x)
    assert len(torch.unique(seen[-1])) <= 4  # unsigned 2-bit codes after the ReLU
    net.eval()
    net(x)
    assert len(torch.unique(seen[-1])) > 4
    for h in handles:
        h.remove()


def test_nothing_attached_without_bits_or_noise():
    net = _net()
    net(torch.randn(1, 3, 8, 8))
    assert attach_quantization(net, QuantConfig()) == []
    assert not any(hasattr(m, "parametrizations") for m in net.modules())


@pytest.mark.parametrize(
    ("fields", "says"),
    [({"weight_bits": 1}, "--weight-bits"), ({"input_bits": 0}, "--input-bits"), ({"weight_bits": 33}, "--weight-bits"),
     ({"train_noise": -0.1}, "--train-noise"), ({"train_noise": 2.0}, "--train-noise"),
     ({"weight_scale": "row"}, "--quant-scale")],
)  # fmt: skip
def test_bad_settings_are_one_line_errors(fields, says):
    with pytest.raises(ConfigError, match=says):
        QuantConfig(**fields)
