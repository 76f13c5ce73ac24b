import os

import pytest
import torch
from hypothesis import settings

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
