"""Pruning masks as parametrizations, so they travel in the state_dict.

A masked parameter ``p`` becomes ``original * mask`` through
``torch.nn.utils.parametrize``: the forward pass sees exactly zero where the
mask is zero, whatever the optimizer (momentum, weight decay) does to the
underlying ``original`` tensor. Masks are keyed by parameter name
(``layer1.0.conv1.weight``) and have the parameter's shape.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize


class WeightMask(nn.Module):
    """Parametrization ``x -> x * mask`` with the mask as a (saved) buffer."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x * self.mask.to(x.dtype)


def _split(name: str) -> tuple[str, str]:
    module, _, attr = name.rpartition(".")
    return module, attr


def _mask_of(module: nn.Module, attr: str) -> WeightMask | None:
    if parametrize.is_parametrized(module, attr):
        for p in module.parametrizations[attr]:
            if isinstance(p, WeightMask):
                return p
    return None


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Mask parameters of ``model`` by name, replacing any mask already there."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        mod_name, attr = _split(name)
        module = modules[mod_name]
        existing = _mask_of(module, attr)
        if existing is not None:
            existing.mask.copy_(mask.to(existing.mask.device, torch.bool))
            continue
        target = getattr(module, attr)
        if tuple(mask.shape) != tuple(target.shape):
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, expected {tuple(target.shape)}")
        parametrize.register_parametrization(module, attr, WeightMask(mask.to(target.device)))


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Masks currently applied, by parameter name."""
    out: dict[str, torch.Tensor] = {}
    for mod_name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for attr in module.parametrizations:
                m = _mask_of(module, attr)
                if m is not None:
                    out[f"{mod_name}.{attr}" if mod_name else attr] = m.mask.clone()
    return out


def remove_masks(model: nn.Module) -> None:
    """Bake masks (and any other parametrization) into plain parameters, in place.

    Pruned entries stay zero; :func:`pimprune.training.checkpoint.plain_state_dict`
    does this on a copy.
    """
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for attr in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, attr, leave_parametrized=True)


def raw_parameter(model: nn.Module, name: str) -> torch.Tensor:
    """The trainable tensor behind ``name``: the unmasked ``original`` if a mask is applied.

    This is what an optimizer updates and what ADMM constrains; the forward pass
    sees :func:`effective_parameter` instead.
    """
    mod_name, attr = _split(name)
    module = dict(model.named_modules())[mod_name]
    if parametrize.is_parametrized(module, attr):
        return module.parametrizations[attr].original
    return getattr(module, attr)


def raw_parameters(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """:func:`raw_parameter` of every name (the live tensors, not copies)."""
    return {n: raw_parameter(model, n) for n in names}


def effective_parameter(model: nn.Module, name: str) -> torch.Tensor:
    """The tensor the forward pass uses for ``name`` (``original * mask`` if a mask is applied)."""
    mod_name, attr = _split(name)
    module = dict(model.named_modules())[mod_name]
    return getattr(module, attr)
