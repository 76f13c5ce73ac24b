import os

import pytest
import torch
from hypothesis import settings
from torch import nn

os.environ.setdefault("PIMPRUNE_QUIET", "1")
# No per-example deadline: timing belongs in benchmarks, and a loaded CI machine would make it flaky.
settings.register_profile("pimprune", deadline=None)
settings.load_profile("pimprune")
# One thread per test process: small tensors gain nothing from more, and under
# pytest-xdist (2 workers on 2 cores) threads would fight each other.
torch.set_num_threads(1)

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class TinyNet(nn.Module):
    """Convs (plain, grouped, depthwise, odd kernel/stride/padding) and a Linear head."""

    def __init__(self, c: int, groups: int, classes: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 2 * c, 3, padding=1)
        self.b = nn.Conv2d(2 * c, 2 * c, (3, 2), stride=2, padding=(1, 0), groups=groups)
        self.d = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c, bias=False)  # depthwise
        self.e = nn.Conv2d(2 * c, c + 1, 1)
        self.fc = nn.Linear(c + 1, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(x))
        x = torch.relu(self.b(x))
        x = self.e(self.d(x))
        return self.fc(x.mean((2, 3)))


class SmallNet(nn.Module):
    """Two convs (one strided) and a Linear head, for 3x8x8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv2(torch.relu(self.conv1(x))).mean((2, 3)))


@pytest.fixture(scope="session")
def tiny_net() -> type[TinyNet]:
    """The class :class:`TinyNet` (grouped, depthwise and odd-shaped convs)."""
    return TinyNet


@pytest.fixture(scope="session")
def small_net() -> type[SmallNet]:
    """The class :class:`SmallNet`."""
    return SmallNet
