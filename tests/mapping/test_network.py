"""Network packing: blocks of several layers placed on shared crossbars, activations, index tables.

Every placement is valid (pieces inside, disjoint, every non-zero in exactly one piece)
and never needs more crossbars than per-layer mapping.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count, subrow_counts
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.network import (
    Block,
    LayerShape,
    NetworkPlacement,
    Piece,
    activation_summary,
    activations,
    check_placement,
    crossbar_layers,
    index_tables,
    pack_network,
    place_blocks,
)
from pimprune.mapping.network_sim import verify_network
from pimprune.mapping.packing import PackingError
from pimprune.pruning.projector import Projector
from pimprune.pruning.target import PruneTarget
from pimprune.training.checkpoint import load_model

SHIPPED = "src/pimprune/assets/demo_dense/model.pt"


def _shape(b: Block):
    return LayerShape(b.layer, 1, b.height, b.width)


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
def test_shipped_model_meets_the_packing_bound(target):
    model, mats = _shipped_subrow_matrices(target)
    xbar = Crossbar(32, 32)
    placement = pack_network(mats, xbar, "subrow")
    kept_cells = sum(_subrow_cells(m, xbar) for m in mats.values())
    assert placement.cells_used() == kept_cells
    assert placement.n_crossbars <= math.ceil(kept_cells / xbar.cells) + 1
    assert placement.n_crossbars < sum(count(m != 0, xbar, "subrow") for m in mats.values())
    verify_network(model, placement, torch.randn(2, 1, 28, 28))
