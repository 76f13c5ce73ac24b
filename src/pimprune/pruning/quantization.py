"""Quantization-aware pruning: masks, quantized weights and device noise learnt together.

During retraining every mapped layer (Conv2d / Linear) computes with

- **weights fake-quantized** to signed ``weight_bits`` integers times a scale, the way the chip
  stores them (:func:`pimprune.hardware.numerics.quantize_weights`): one scale per output column
  (output channel) or per layer, ``s = max |w| / (2^(b-1) - 1)``, codes ``round(w / s)``. The
  rounding passes gradients straight through (Bengio et al. 2013, straight-through estimator), so
  the fp32 weights keep learning; a pruned weight stays exactly zero (the mask acts first);
- optionally **device noise**: each quantized weight multiplied by ``exp(sigma z)``, ``z ~ N(0,1)``
  drawn afresh every forward pass (the lognormal cell variation of
  :class:`pimprune.hardware.numerics.NumericsConfig`, per weight), training mode only;
- optionally **inputs fake-quantized** to ``input_bits`` (per layer, scale from the batch's largest
  ``|x|``, unsigned where the input is never negative), training mode only: the on-chip evaluation
  calibrates its own input scale, and the saved model's fp32 accuracy stays what ``evaluate`` gives.

The weight quantizer is a parametrization (``torch.nn.utils.parametrize``) chained after the mask,
so the weights :func:`pimprune.training.checkpoint.plain_state_dict` saves are the quantized ones:
the chip's codes of the saved model equal the codes learnt here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from pimprune.errors import ConfigError
from pimprune.mapping.matrices import extract_layers
from pimprune.numeric import quant_scale

__all__ = ["QUANT_SCALES", "QuantConfig", "FakeQuantWeight", "InputQuantizer", "attach_quantization", "fake_quant"]

#: Granularity of the weight scale, as in :data:`pimprune.hardware.numerics.WEIGHT_SCALES`.
QUANT_SCALES: tuple[str, ...] = ("column", "layer")

#: Widths beyond this are held exactly by float32 codes (as :data:`pimprune.hardware.numerics.MAX_CODE_BITS`).
_MAX_BITS = 24


@dataclass(frozen=True)
class QuantConfig:
    """What the retraining learns the weights for.

    Attributes:
        weight_bits: Signed weight width (bits) the weights are trained for; None: fp32 (off).
        input_bits: Input width (bits) of every mapped layer during training; None: fp32 inputs.
        train_noise: Relative spread ``sigma`` of the lognormal weight noise injected while training
            (fraction, 0.05 = 5%; 0: off).
        weight_scale: ``column`` (one scale per output channel) or ``layer``; the on-chip evaluation
            should use the same (``--set numerics.weight_scale=...``).
    """

    weight_bits: int | None = None
    input_bits: int | None = None
    train_noise: float = 0.0
    weight_scale: str = "column"

    def __post_init__(self) -> None:
        for name, low in (("weight_bits", 2), ("input_bits", 1)):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not low <= v <= _MAX_BITS):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be an integer in [{low}, {_MAX_BITS}] or left out, got {v!r}")
        noise = self.train_noise
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (math.isfinite(noise) and
                                                                                0 <= noise <= 1):
            raise ConfigError(f"--train-noise must be a fraction in [0, 1] (0.05 = 5%), got {noise!r}")
        if self.weight_scale not in QUANT_SCALES:
            raise ConfigError(f"--quant-scale must be one of {', '.join(QUANT_SCALES)}, got {self.weight_scale!r}")

    @property
    def enabled(self) -> bool:
        """Whether retraining changes anything (bits or noise given)."""
        return self.weight_bits is not None or self.input_bits is not None or self.train_noise > 0


def _ste_round(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``round(x)`` clipped to ``[low, high]`` forward, identity backward (the scales make clipping rare)."""
    return x + (torch.round(x).clamp(low, high) - x).detach()


def fake_quant(w: torch.Tensor, bits: int, per_column: bool = True) -> torch.Tensor:
    """``w`` rounded to signed ``bits``-bit codes times their scale (straight-through gradient).

    Args:
        w: A Conv2d ``(out, in/g, kh, kw)`` or Linear ``(out, in)`` weight; dimension 0 is the
            output channel, i.e. the crossbar column.
        bits: Signed width; codes ``-(2^(bits-1)-1) .. 2^(bits-1)-1``.
        per_column: One scale per output channel (else one for the tensor).

    Returns:
        The quantized weight, equal to ``codes * s`` of :func:`pimprune.hardware.numerics.quantize_weights`.
    """
    levels = 2 ** (bits - 1) - 1
    peak = w.detach().abs().flatten(1).amax(1) if per_column else w.detach().abs().amax().expand(w.shape[0])
    scale = quant_scale(peak, levels).view(-1, *([1] * (w.dim() - 1)))
    return _ste_round(w / scale, -levels, levels) * scale


class FakeQuantWeight(nn.Module):
    """Parametrization ``w -> quantized w`` (and, in training mode, times lognormal noise).

    The noise of draw ``k`` comes from its own generator seeded with ``(seed, k)``, and ``k`` (the
    ``draws`` buffer) travels in the checkpoint, so a resumed run draws what an uninterrupted one does.
    """

    def __init__(self, bits: int | None, noise: float, per_column: bool, seed: int = 0) -> None:
        super().__init__()
        self.bits, self.noise, self.per_column, self.seed = bits, float(noise), per_column, int(seed)
        self.register_buffer("draws", torch.zeros((), dtype=torch.int64))

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # noqa: D102
        q = w if self.bits is None else fake_quant(w, self.bits, self.per_column)
        if self.training and self.noise > 0:
            gen = torch.Generator(device=w.device).manual_seed(self.seed * 1_000_003 + int(self.draws))
            self.draws += 1
            q = q * torch.exp(self.noise * torch.randn(w.shape, generator=gen, device=w.device, dtype=w.dtype))
        return q


class InputQuantizer:
    """Forward pre-hook: a layer's input fake-quantized to ``bits`` in training mode."""

    def __init__(self, bits: int) -> None:
        self.bits = bits

    def __call__(self, module: nn.Module, args: tuple) -> tuple | None:  # noqa: D102
        x = args[0]
        if not module.training or not x.is_floating_point():
            return None
        peak = x.detach().abs().amax()
        if float(peak) == 0.0:
            return None
        signed = bool((x.detach() < 0).any())
        levels = 2 ** (self.bits - 1) - 1 if signed else 2**self.bits - 1
        scale = peak / levels
        low = -levels if signed else 0
        return (_ste_round(x / scale, low, levels) * scale, *args[1:])


def attach_quantization(model: nn.Module, cfg: QuantConfig, seed: int = 0, skip: Iterable[str] = ()) -> list:
    """Quantize (and noise) every mapped layer of ``model`` but ``skip`` while it trains.

    The weight parametrization is registered after any mask already there; layer ``i``'s noise
    is seeded with ``seed`` and ``i``. Returns the input
    hooks' handles (``handle.remove()`` detaches them); the weight parametrizations stay and are
    baked into the saved weights.
    """
    handles = []
    if not cfg.enabled:
        return handles
    skipped, was_training = set(skip), model.training
    model.eval()  # registering calls the parametrization once: no noise drawn for it
    for i, lay in enumerate(extract_layers(model)):
        if lay.name in skipped:
            continue
        if cfg.weight_bits is not None or cfg.train_noise > 0:
            quant = FakeQuantWeight(cfg.weight_bits, cfg.train_noise, cfg.weight_scale == "column", seed * 4099 + i)
            parametrize.register_parametrization(lay.module, "weight", quant)
        if cfg.input_bits is not None:
            handles.append(lay.module.register_forward_pre_hook(InputQuantizer(cfg.input_bits)))
    model.train(was_training)
    return handles
