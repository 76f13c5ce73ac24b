"""The same chip in IBM's aihwkit-lightning, to cross-check :mod:`pimprune.hardware.onchip`.

``aihwkit-lightning`` 2.1.0 (optional extra ``aihwkit``; it pins torch 2.13.0 but runs on ours:
``pip install --no-deps aihwkit-lightning==2.1.0``) evaluates a converted model with analog
tiles. :func:`analog_model` sets it up to compute what pimprune's numerics describe, where both
can express it (docs/hardware.md, "Cross-check with aihwkit-lightning"):

- weights: ``DISCRETIZE_PER_CHANNEL`` with ``res = 2^b_w - 2``, i.e. step ``max|w| / (2^(b_w-1) - 1)``
  per output channel, pimprune's ``weight_scale: column``. aihwkit takes the maximum per channel
  **per tile**, so the two agree only with one tile per layer (``max_input_size = -1``); pimprune's
  lossless ADC makes its result independent of the crossbar split;
- inputs: one input range per layer, set to pimprune's calibrated ``max |x|``; aihwkit's codes are
  symmetric (step ``2 IR / inp_res``), so an input that is never negative (pimprune: unsigned
  ``b_x``-bit codes, step ``IR / (2^b_x - 1)``) gets ``inp_res = 2^(b_x+1) - 2`` and a signed one
  ``2^b_x - 2``: the same steps;
- outputs: ideal (``out_res = -1``, no bound, no noise), pimprune's lossless ADC.

Not expressible in aihwkit-lightning (refused with a one-line error): bit slicing onto cells and
per-cell variation (its weight noise is additive, ``std_dev * max|w|`` per channel, in training
mode only), stuck-at faults, a lossy ADC.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Mapping

import torch
from torch import nn

from pimprune.errors import ConfigError
from pimprune.hardware.numerics import NumericsConfig
from pimprune.hardware.onchip import InputRange

__all__ = ["AIHWKIT_PACKAGE", "analog_model", "available", "check_expressible"]

#: The package (and version) this bridge is written against.
AIHWKIT_PACKAGE = "aihwkit-lightning==2.1.0"


def available() -> bool:
    """Whether ``aihwkit_lightning`` can be imported."""
    return importlib.util.find_spec("aihwkit_lightning") is not None


def check_expressible(numerics: NumericsConfig) -> None:
    """Raise :class:`ConfigError` unless aihwkit-lightning can compute what ``numerics`` describe."""
    problems = []
    if numerics.weight_bits is None or numerics.input_bits is None:
        problems.append("fp32 weights or inputs (give weight_bits and input_bits)")
    if numerics.weight_scale != "column":
        problems.append("a per-layer weight scale (aihwkit scales per channel)")
    if not numerics.exact_readout:
        problems.append("a lossy ADC or read noise")
    if numerics.stochastic:
        problems.append("per-cell variation or stuck-at faults (aihwkit's weight noise is additive per weight)")
    if problems:
        raise ConfigError(f"aihwkit-lightning cannot express {'; '.join(problems)}")


def _config(numerics: NumericsConfig):
    from aihwkit_lightning.simulator.configs import TorchInferenceRPUConfig, WeightQuantizationType

    cfg = TorchInferenceRPUConfig()
    cfg.mapping.max_input_size = -1  # one tile per layer: per-channel scales over the whole column
    cfg.modifier.quantization_type = WeightQuantizationType.DISCRETIZE_PER_CHANNEL
    cfg.modifier.res = 2**numerics.weight_bits - 2
    cfg.forward.out_res, cfg.forward.out_bound, cfg.forward.out_noise = -1, 0.0, 0.0
    cfg.pre_post.input_range.enable = True
    cfg.pre_post.input_range.init_from_data = 0
    return cfg


def analog_model(model: nn.Module, numerics: NumericsConfig, ranges: Mapping[str, InputRange]) -> nn.Module:
    """``model`` converted to aihwkit-lightning analog layers that compute as ``numerics`` say (eval mode).

    Args:
        model: A trained model (left unchanged; a copy is converted).
        numerics: pimprune's numerics; must pass :func:`check_expressible`.
        ranges: Each mapped layer's calibrated input range
            (:func:`pimprune.hardware.onchip.calibrate_inputs`), by layer name.

    Raises:
        ConfigError: if aihwkit-lightning is not installed, cannot express the numerics, or a layer
            has no input range.
    """
    check_expressible(numerics)
    if not available():
        raise ConfigError(f"aihwkit-lightning is not installed; pip install --no-deps '{AIHWKIT_PACKAGE}'")
    from aihwkit_lightning.nn.conversion import convert_to_analog

    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    missing = [n for n in names if n not in ranges]
    if missing:
        raise ConfigError(f"no calibrated input range for {missing[0]}; calibrate on data that reaches every layer")
    analog = convert_to_analog(copy.deepcopy(model).eval(), _config(numerics)).eval()
    layers = list(analog.analog_layers())
    if len(layers) != len(names):
        raise ConfigError(f"aihwkit-lightning converted {len(layers)} of {len(names)} layers (grouped convs?)")
    for layer, name in zip(layers, names, strict=True):
        signed = ranges[name].signed
        layer.rpu_config.forward.inp_res = 2**numerics.input_bits - 2 if signed else 2 ** (numerics.input_bits + 1) - 2
        with torch.no_grad():
            layer.input_range.fill_(ranges[name].max_abs)
            layer.input_range_update_idx.fill_(1e9)  # never re-initialised from data
    return analog
