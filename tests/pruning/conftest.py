"""Shared networks of the pruning tests: resnet18 at full and 0.25 width, and their projections."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from pimprune.geometry import Crossbar
from pimprune.pruning.projector import Projector
from pimprune.pruning.target import PruneTarget

ALL = ["subrow", "subcolumn", "row", "filter", "crossbar", "unstructured"]
EXAMPLE = torch.zeros(1, 3, 32, 32)


def _randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-zero BN biases and running stats, so a forgotten BN bias would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


@pytest.fixture(scope="session")
def randomise_norms():
    """:func:`_randomise_norms`, for test modules."""
    return _randomise_norms


def narrow_resnet18(width: float = 0.25, num_classes: int = 10) -> nn.Module:
    """torchvision's resnet18 with every width scaled (same module names), torchvision code."""
    model = torchvision.models.resnet18(num_classes=num_classes)
    w = [int(c * width) for c in (64, 128, 256, 512)]
    model.inplanes = w[0]
    model.conv1 = nn.Conv2d(3, w[0], 7, 2, 3, bias=False)
    model.bn1 = nn.BatchNorm2d(w[0])
    for i, c in enumerate(w):
        setattr(
            model, f"layer{i + 1}", model._make_layer(BasicBlock, c, 2, stride=1 if i == 0 else 2)
        )
    model.fc = nn.Linear(w[-1], num_classes)
    return model


def _projector(model, pattern, xbar, target, allocation="uniform", **kw) -> Projector:
    return Projector(
        model, PruneTarget(pattern, Crossbar.parse(xbar), target, allocation, **kw), EXAMPLE
    )


@pytest.fixture(scope="session")
def make_projector():
    """``make_projector(model, pattern, xbar, target, allocation="uniform", **target_fields)``."""
    return _projector


@pytest.fixture(scope="session")
def resnet() -> nn.Module:
    """Full-width resnet18, 10 classes (32x32 inputs)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    _randomise_norms(model)
    return model.eval()


@pytest.fixture(scope="session")
def weights(resnet) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in resnet.named_parameters()}


@pytest.fixture(scope="session")
def narrow() -> nn.Module:
    """resnet18 at width 0.25 (16-32-64-128 channels): on 32x32 it tiles like full on 128x128."""
    torch.manual_seed(1)
    model = narrow_resnet18()
    _randomise_norms(model)
    return model.eval()


@pytest.fixture(scope="session")
def nweights(narrow) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in narrow.named_parameters()}


@pytest.fixture(scope="session")
def narrow_results(narrow, nweights) -> dict[tuple[str, str], tuple[Projector, dict]]:
    """(pattern, allocation) -> (projector, masks) on the narrow resnet18, 32x32, 8x."""
    out = {}
    for pattern in ALL:
        for allocation in ("uniform", "global"):
            proj = _projector(narrow, pattern, "32x32", 8.0, allocation)
            out[pattern, allocation] = proj, proj(nweights)
    return out
