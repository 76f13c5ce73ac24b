"""aihwkit-lightning computes what pimprune's on-chip numerics describe, where both can express it."""

import pytest
import torch

from pimprune.errors import ConfigError
from pimprune.hardware.aihwkit_bridge import analog_model, check_expressible
from pimprune.hardware.numerics import load_numerics, numerics_with_overrides
from pimprune.hardware.onchip import calibrate_inputs, on_chip
from pimprune.mapping.matrices import extract_layers
from pimprune.training.checkpoint import load_model

SHIPPED = "src/pimprune/assets/demo_dense/model.pt"


@pytest.mark.parametrize(("weight_bits", "input_bits"), [(8, 8), (4, 8), (16, 16)])
def test_same_logits_as_the_on_chip_model(weight_bits, input_bits):
    pytest.importorskip("aihwkit_lightning")
    model, _ = load_model(SHIPPED)
    model.eval()
    torch.manual_seed(0)
    x = torch.randn(16, 1, 28, 28)
    numerics = numerics_with_overrides(load_numerics("isaac"), {"weight_bits": weight_bits, "input_bits": input_bits})
    analog = analog_model(model, numerics, calibrate_inputs(model, extract_layers(model), x))
    with torch.no_grad():
        theirs = analog(x)
        with on_chip(model, "128x128", "dense", numerics, calibration=x):
            ours = model(x)
    # The two compute the same codes; float rounding of the layer sums (1e-6) can flip an input code
    # that lies on a rounding boundary (seen at 4-bit weights from the tenth layer on): a few 1e-3.
    assert torch.allclose(theirs, ours, atol=1e-2 * float(ours.abs().max())), float((theirs - ours).abs().max())
    assert torch.equal(theirs.argmax(1), ours.argmax(1))


@pytest.mark.parametrize(
    ("fields", "says"),
    [({"variation_sigma": 0.05}, "per-cell variation"), ({"adc_bits": 4}, "lossy ADC"),
     ({"weight_scale": "layer"}, "per-layer weight scale"), ({"weight_bits": None}, "fp32")],
)  # fmt: skip
def test_what_aihwkit_cannot_express_is_refused(fields, says):
    with pytest.raises(ConfigError, match=says):
        check_expressible(numerics_with_overrides(load_numerics("isaac"), fields))
