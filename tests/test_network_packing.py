"""Network packing: blocks of several layers share crossbars (issue 11).

Properties: every placement is valid (pieces inside, disjoint, every non-zero
in exactly one piece), never needs more crossbars than per-layer mapping, and
the shared crossbars compute every layer (other layers' cells present, their
rows at zero, only the layer's columns read) as PyTorch does.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count, subrow_counts
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.network import (
    Block,
    NetworkPlacement,
    Piece,
    activation_summary,
    activations,
    check_placement,
    crossbar_layers,
    index_tables,
    pack_layers,
    pack_network,
    place_blocks,
)
from pimprune.mapping.network_budget import network_subrow_masks
from pimprune.mapping.network_sim import crossbar_cells, layer_plan, simulate_network_layer, verify_network
from pimprune.mapping.packing import PackingError
from pimprune.mapping.simulate import SimulationMismatch
from pimprune.pruning.budgets import Projector, PruneTarget
from pimprune.training.checkpoint import load_model

SHIPPED = "src/pimprune/assets/demo_dense/model.pt"
SCHEMES = ("subrow", "subcolumn", "dense", "unstructured", "row", "filter")


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
def test_network_packing_computes_every_layer(c, xbar, density, kind, scheme, seed):
    torch.manual_seed(seed)
    net = TinyNet(c, groups=2, classes=3).eval()
    mats = prune_net(net, density, kind, seed)
    placement = pack_network(mats, xbar, scheme)
    check_placement(placement, mats)
    per_layer = sum(count(m != 0, xbar, scheme) for m in mats.values())
    assert placement.n_crossbars <= per_layer
    assert pack_layers(mats, xbar, scheme).n_crossbars == per_layer
    assert placement.n_crossbars >= placement.bound()
    report = verify_network(net, placement, torch.randn(2, 3, 7, 6))
    assert report.max_error < 1e-4


@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(1, 9), min_size=1, max_size=12),
    heights=st.lists(st.integers(1, 40), min_size=12, max_size=12),
    xbar=st.builds(Crossbar, st.integers(1, 16), st.integers(9, 16)),
)
def test_place_blocks_is_valid_and_never_worse(widths, heights, xbar):
    blocks = [
        Block(f"l{i}", 0, np.arange(h, dtype=np.int64), np.arange(w, dtype=np.int64))
        for i, (w, h) in enumerate(zip(widths, heights, strict=False))
    ]
    pieces = place_blocks(blocks, xbar)
    shapes = {b.layer: _shape(b) for b in blocks}
    placement = NetworkPlacement(xbar, "network", "subrow", shapes, pieces, len(blocks))
    check_placement(placement, {b.layer: torch.ones(1, b.height, b.width) for b in blocks})
    own = sum(math.ceil(b.height / xbar.rows) for b in blocks)
    cells = sum(b.height * b.width for b in blocks)
    assert math.ceil(cells / xbar.cells) <= len(pieces) <= own


def _shape(b: Block):
    from pimprune.mapping.network import LayerShape

    return LayerShape(b.layer, 1, b.height, b.width)


def test_full_width_blocks_reach_the_packing_bound():
    xbar = Crossbar(8, 4)
    blocks = [Block(f"l{i}", 0, np.arange(h), np.arange(4)) for i, h in enumerate([5, 9, 3, 14, 1])]
    assert len(place_blocks(blocks, xbar)) == math.ceil(32 / 8)


def test_shared_columns_of_one_layer_take_separate_activations():
    # two column blocks of one layer stacked on the same physical columns: 2 activations
    xbar = Crossbar(8, 4)
    w = torch.ones(1, 3, 8)
    placement = pack_network({"a": w}, xbar, "subrow")
    assert placement.n_crossbars == 1
    acts = activations(placement)
    assert len(acts) == 2
    summary = activation_summary(placement)["a"]
    assert summary == {**summary, "activations": 2, "serial": 2, "crossbars": 1}
    assert crossbar_layers(placement) == [frozenset({"a"})]


def test_index_tables_and_sharing():
    xbar = Crossbar(8, 8)
    mats = {"a": torch.ones(1, 3, 8), "b": torch.ones(1, 4, 8), "c": torch.ones(1, 1, 3)}
    placement = pack_network(mats, xbar, "subrow")
    assert placement.n_crossbars == 1
    assert crossbar_layers(placement) == [frozenset({"a", "b", "c"})]
    (tables,) = index_tables(placement)
    used_rows = [r for r in tables.rows if r]
    assert sum(len(r) for r in tables.rows) == 3 + 4 + 1
    assert all(len({name for name, _ in r}) == len(r) for r in used_rows)
    assert {name for line in tables.cols for name, _ in line} == {"a", "b", "c"}
    assert tables.input_bits > 0 and tables.output_bits > 0


def test_placement_json_format():
    xbar = Crossbar(4, 4)
    conv = nn.Conv2d(4, 4, 1, groups=2, bias=False)  # 2 groups of 2x2
    lay = extract_layers(nn.Sequential(conv))[0]
    placement = pack_network({lay.name: lay.matrix()}, xbar, "subrow")
    data = placement.as_json()
    assert set(data) >= {"crossbar", "packing", "crossbars", "total_crossbars"}
    assert data["crossbar"] == "4x4" and data["packing"] == "network"
    blocks = [b for xb in data["crossbars"] for b in xb["blocks"]]
    assert set(blocks[0]) == {"layer", "rows", "cols", "row_offset", "col_offset"}
    assert sorted(c for b in blocks for c in b["cols"]) == [0, 1, 2, 3]  # output channels
    assert all(max(b["rows"]) < 2 for b in blocks)  # rows of one group


def test_a_corrupted_placement_is_refused():
    mats = {"a": torch.ones(1, 3, 4), "b": torch.ones(1, 2, 4)}
    placement = pack_network(mats, Crossbar(8, 4), "subrow")
    piece = placement.crossbars[0][0]
    placement.crossbars[0].append(Piece("b", 0, piece.rows[:1] * 0, piece.cols, piece.row_offset, 0, 9))
    with pytest.raises(PackingError, match="overlap|two pieces"):
        check_placement(placement, mats)


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
    import pimprune.mapping.network_sim as network_sim

    real = network_sim.crossbar_cells
    monkeypatch.setattr(network_sim, "crossbar_cells", lambda *a, **k: real(*a, **k) + 0.5)
    with pytest.raises(SimulationMismatch, match="shared crossbars differ"):
        verify_network(net, placement, x)


def _subrow_cells(matrix: torch.Tensor, xbar: Crossbar) -> int:
    """Kept sub-row cells: sum over column blocks of kept sub-rows times the block's width."""
    n = matrix.shape[2]
    widths = torch.tensor([min(xbar.cols, n - s) for s in range(0, n, xbar.cols)])
    return int((subrow_counts(matrix != 0, xbar) * widths).sum())


def _shipped_subrow_matrices(target: float):
    model, _ = load_model(SHIPPED)
    tgt = PruneTarget("subrow", "32x32", target, allocation="global", keep_dense=("first", "last"))
    proj = Projector(model, tgt, torch.randn(1, 1, 28, 28))
    masks = proj.project_model(model)
    with torch.no_grad():
        for lay in extract_layers(model):
            mask = masks.get(f"{lay.name}.weight")
            if mask is not None:
                lay.module.weight.mul_(mask)
    return model, {lay.name: lay.matrix() for lay in extract_layers(model)}


@pytest.mark.parametrize("target", [16, 24, 32])
def test_shipped_model_meets_the_issue_bound(target):
    model, mats = _shipped_subrow_matrices(target)
    xbar = Crossbar(32, 32)
    placement = pack_network(mats, xbar, "subrow")
    kept_cells = sum(_subrow_cells(m, xbar) for m in mats.values())
    assert placement.cells_used() == kept_cells
    assert placement.n_crossbars <= math.ceil(kept_cells / xbar.cells) + 1
    assert placement.n_crossbars < sum(count(m != 0, xbar, "subrow") for m in mats.values())
    verify_network(model, placement, torch.randn(2, 1, 28, 28))


@pytest.mark.parametrize("target", [16, 64])
def test_packing_aware_budget_fits_and_computes(target):
    model, _ = load_model(SHIPPED)
    layers = extract_layers(model)
    weights = {f"{lay.name}.weight": lay.module.weight.detach() for lay in layers}
    total = 698 // target
    masks = network_subrow_masks(weights, None, layers, "32x32", total)
    assert set(masks) == {f"{lay.name}.weight" for lay in layers[1:-1]}
    with torch.no_grad():
        for lay in layers:
            name = f"{lay.name}.weight"
            if name in masks:
                assert masks[name].shape == lay.module.weight.shape
                lay.module.weight.mul_(masks[name])
    mats = {lay.name: lay.matrix() for lay in layers}
    for lay in layers:  # no layer, no output group is emptied
        assert bool((mats[lay.name] != 0).any(1).all()), lay.name
    placement = pack_network(mats, Crossbar(32, 32), "subrow")
    assert placement.n_crossbars <= total
    verify_network(model, placement, torch.randn(2, 1, 28, 28))


def test_packing_aware_budget_with_scores_and_refusal():
    net = TinyNet(3, groups=1, classes=4)
    layers = extract_layers(net)
    weights = {f"{lay.name}.weight": lay.module.weight.detach() for lay in layers}
    scores = {k: torch.rand_like(v) for k, v in weights.items()}
    xbar = Crossbar(4, 4)
    masks = network_subrow_masks(weights, scores, layers, xbar, 16, keep_dense=("first",))
    mats = {lay.name: lay.matrix() * (lay.matrix(masks[f"{lay.name}.weight"]) if lay.name != "a" else 1)
            for lay in layers}
    assert pack_network(mats, xbar, "subrow").n_crossbars <= 16
    with pytest.raises(ConfigError, match="cannot hold"):
        network_subrow_masks(weights, None, layers, xbar, 1)
    with pytest.raises(ConfigError, match="positive integer"):
        network_subrow_masks(weights, None, layers, xbar, 0)
