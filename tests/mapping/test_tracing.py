"""One traced forward pass: hooks see every call, the first call is recorded, mode and hooks are restored."""

import pytest
import torch
from torch import nn

from pimprune.errors import ConfigError
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.tracing import record_layer_io, trace_calls, trace_zeros


class _Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.fc(x)))


def test_hooks_see_every_call_in_eval_mode_without_gradients():
    model = _Twice().train()
    calls = []

    def hook(module, args, output):
        calls.append((module.training, torch.is_grad_enabled(), tuple(output.shape)))

    trace_calls(model, torch.ones(2, 4), [model.fc], hook)
    assert calls == [(False, False, (2, 4))] * 2
    assert model.training and not model.fc._forward_hooks  # mode restored, hooks removed


def test_first_call_recorded_and_errors_restore_the_model():
    torch.manual_seed(0)
    model = _Twice().train()
    x = torch.randn(3, 4)
    seen = record_layer_io(model, extract_layers(model), x)
    assert set(seen) == {"fc"}
    inp, out = seen["fc"]
    assert torch.equal(inp, x) and torch.allclose(out, model.fc(x))
    with pytest.raises(ConfigError, match=r"does not run on an input of shape \(1, 5\)"):
        trace_zeros(model, (1, 5), [model.fc], lambda *a: None)
    assert model.training and not model.fc._forward_hooks
