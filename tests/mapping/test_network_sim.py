"""Shared crossbars compute every layer: other layers' cells present, their rows at 0, own columns read."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import pimprune.mapping.network_sim as network_sim
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.network import check_placement, pack_layers, pack_network
from pimprune.mapping.network_sim import crossbar_cells, layer_plan, simulate_network_layer, verify_network
from pimprune.mapping.simulate import SimulationMismatch

SCHEMES = ("subrow", "subcolumn", "dense", "unstructured", "row", "filter")


def prune_net(net: nn.Module, density: float, kind: str, seed: int) -> dict[str, torch.Tensor]:
    """Zero weights at random (``cells``) or by whole rows (``rows``); return the matrices."""
    gen = torch.Generator().manual_seed(seed)
    mats = {}
    with torch.no_grad():
        for lay in extract_layers(net):
            m = lay.matrix()
            if kind == "rows":
                keep = (torch.rand(m.shape[0], m.shape[1], 1, generator=gen) < density).expand(m.shape)
            else:
                keep = torch.rand(m.shape, generator=gen) < density
            m = m * keep
            lay.module.weight.copy_(lay.to_weight(m))
            mats[lay.name] = lay.matrix()
    return mats


geometries = st.builds(Crossbar, st.integers(1, 12), st.integers(1, 12))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    c=st.integers(1, 5),
    xbar=geometries,
    density=st.sampled_from([0.0, 0.15, 0.5, 1.0]),
    kind=st.sampled_from(["cells", "rows"]),
    scheme=st.sampled_from(SCHEMES),
    seed=st.integers(0, 2**31 - 1),
)
def test_network_packing_computes_every_layer(tiny_net, c, xbar, density, kind, scheme, seed):
    torch.manual_seed(seed)
    net = tiny_net(c, groups=2, classes=3).eval()
    mats = prune_net(net, density, kind, seed)
    placement = pack_network(mats, xbar, scheme)
    check_placement(placement, mats)
    per_layer = sum(count(m != 0, xbar, scheme) for m in mats.values())
    assert placement.n_crossbars <= per_layer
    assert pack_layers(mats, xbar, scheme).n_crossbars == per_layer
    assert placement.n_crossbars >= placement.bound()
    report = verify_network(net, placement, torch.randn(2, 3, 7, 6))
    assert report.max_error < 1e-4


def test_a_wrong_cell_is_caught_by_the_simulator(monkeypatch):
    net = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    mats = {lay.name: lay.matrix() for lay in extract_layers(net)}
    placement = pack_network(mats, Crossbar(8, 4), "subrow")
    cells = crossbar_cells(placement, mats)
    x = torch.randn(4, 5)
    good = simulate_network_layer(net[0], layer_plan(placement, "0", cells), x)
    torch.testing.assert_close(good, net[0](x))
    cells[0] += 0.5  # every cell of the shared crossbar is summed: one foreign cell corrupts it
    bad = simulate_network_layer(net[0], layer_plan(placement, "0", cells), x)
    assert not torch.allclose(bad, net[0](x))
    real = network_sim.crossbar_cells
    monkeypatch.setattr(network_sim, "crossbar_cells", lambda *a, **k: real(*a, **k) + 0.5)
    with pytest.raises(SimulationMismatch, match="shared crossbars differ"):
        verify_network(net, placement, x)
