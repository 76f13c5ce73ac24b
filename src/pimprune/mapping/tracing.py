"""Run a model once with forward hooks, to see what its mapped layers receive and return.

One traced forward pass (eval mode, no gradient, mode restored) serves the MVM
count of the hardware model, the NeuroSim export and the functional simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from pimprune.errors import ConfigError
from pimprune.mapping.matrices import LayerMatrix

__all__ = ["Hook", "record_layer_io", "trace_calls", "trace_zeros"]

#: A forward hook: ``hook(module, args, output)``.
Hook = Callable[[nn.Module, tuple, Any], None]


def trace_calls(model: nn.Module, example: torch.Tensor, modules: Iterable[nn.Module], hook: Hook) -> None:
    """Run ``model(example)`` once in eval mode without gradients, calling ``hook`` on every call of ``modules``.

    The hooks are removed and the model's training mode is restored afterwards, also on an error.
    """
    handles = [m.register_forward_hook(hook) for m in modules]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def trace_zeros(model: nn.Module, shape: Sequence[int], modules: Iterable[nn.Module], hook: Hook) -> None:
    """:func:`trace_calls` on an all-zero input of ``shape``, on the model's device and dtype.

    Raises:
        ConfigError: if the model does not run on an input of that shape.
    """
    shape = tuple(shape)
    try:
        param = next(model.parameters(), None)
        x = torch.zeros(shape, dtype=param.dtype if param is not None else torch.float32)
        if param is not None:
            x = x.to(param.device)
        trace_calls(model, x, modules, hook)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"the model does not run on an input of shape {shape}: {first[:160]}; "
            "pass the input size and channels the model was built for"
        ) from None


def record_layer_io(
    model: nn.Module, layers: Sequence[LayerMatrix], example: torch.Tensor
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Input and output of every layer's first call in one traced forward pass on ``example``."""
    names = {lay.module: lay.name for lay in layers}
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        name = names[module]
        if name not in seen:
            seen[name] = (args[0].detach(), output.detach())

    trace_calls(model, example, names, hook)
    return seen
