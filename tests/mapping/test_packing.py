import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pimprune.errors import UnknownNameError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import SCHEMES, count, subcolumn_counts, subrow_counts
from pimprune.mapping.packing import (
    PackedMatrix,
    PackingError,
    check_physical,
    crossbar_stats,
    index_widths,
    pack,
)

NAMED_GEOMETRIES = [Crossbar(1, 1), Crossbar(3, 5), Crossbar(512, 32), Crossbar(32, 512)]
PATTERNS = ("random", "zero", "one", "rows", "cols", "tiles")


def make_matrix(g: int, m: int, n: int, pattern: str, density: float, seed: int) -> torch.Tensor:
    """A (g, M, N) float matrix whose zeros follow ``pattern``; non-zeros are never 0."""
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(g, m, n, generator=gen)
    values = values.sign() * (values.abs() + 0.1)
    if pattern == "zero":
        keep = torch.zeros(g, m, n, dtype=torch.bool)
    elif pattern == "one":
        keep = torch.ones(g, m, n, dtype=torch.bool)
    elif pattern == "rows":
        keep = (torch.rand(g, m, 1, generator=gen) < density).expand(g, m, n)
    elif pattern == "cols":
        keep = (torch.rand(g, 1, n, generator=gen) < density).expand(g, m, n)
    elif pattern == "tiles":
        th, tw = (
            int(torch.randint(1, 6, (), generator=gen)),
            int(torch.randint(1, 6, (), generator=gen)),
        )
        coarse = torch.rand(g, -(-m // th), -(-n // tw), generator=gen) < density
        keep = coarse.repeat_interleave(th, 1).repeat_interleave(tw, 2)[:, :m, :n]
        keep = keep & (torch.rand(g, m, n, generator=gen) < 0.9)
    else:
        keep = torch.rand(g, m, n, generator=gen) < density
    return values * keep


@st.composite
def matrices(draw, max_groups: int = 3, max_dim: int = 24):
    g = draw(st.integers(1, max_groups))
    m = draw(st.integers(1, max_dim))
    n = draw(st.integers(1, max_dim))
    pattern = draw(st.sampled_from(PATTERNS))
    density = draw(st.sampled_from([0.05, 0.3, 0.7]))
    return make_matrix(g, m, n, pattern, density, draw(st.integers(0, 2**31 - 1)))


geometries = st.one_of(
    st.sampled_from(NAMED_GEOMETRIES),
    st.builds(Crossbar, st.integers(1, 9), st.integers(1, 9)),
)


@settings(deadline=None, max_examples=80)
@given(matrices(), geometries)
def test_every_scheme_packs_exactly(matrix, xbar):
    mask = matrix != 0
    for scheme in SCHEMES:
        packed = pack(matrix, xbar, scheme)
        assert packed.n_crossbars == count(mask, xbar, scheme), scheme
        assert packed.cells.shape == (packed.n_crossbars, xbar.rows, xbar.cols)
        assert (packed.groups, packed.rows, packed.cols) == tuple(matrix.shape)
        check_physical(packed, matrix)
        assert torch.equal(packed.unpack(), matrix), scheme
        # Each non-zero sits in exactly one cell.
        assert int((packed.cells != 0).sum()) == int(mask.sum())


@settings(deadline=None, max_examples=80)
@given(matrices(), geometries, st.sampled_from(SCHEMES))
def test_crossbar_stats_equals_packing(matrix, xbar, scheme):
    packed = pack(matrix, xbar, scheme)
    rows, cols = crossbar_stats(matrix != 0, xbar, scheme)
    assert rows.dtype == torch.long and cols.dtype == torch.long
    assert torch.equal(rows, packed.used_rows())
    assert torch.equal(cols, packed.used_cols())
    # A float mask (as a pattern's projection might return) gives the same.
    rows_f, cols_f = crossbar_stats((matrix != 0).float(), xbar, scheme)
    assert torch.equal(rows_f, rows) and torch.equal(cols_f, cols)


@settings(deadline=None, max_examples=40)
@given(matrices(), geometries)
def test_compacted_schemes_use_every_kept_segment_once(matrix, xbar):
    mask = matrix != 0
    sub_rows, _ = crossbar_stats(mask, xbar, "subrow")
    assert int(sub_rows.sum()) == int(subrow_counts(mask, xbar).sum())
    _, sub_cols = crossbar_stats(mask, xbar, "subcolumn")
    assert int(sub_cols.sum()) == int(subcolumn_counts(mask, xbar).sum())
    # These schemes never place a crossbar without a non-zero (filter can: its kept rows
    # and columns may meet only in zeros).
    for scheme in ("subrow", "subcolumn", "unstructured", "crossbar"):
        rows, cols = crossbar_stats(mask, xbar, scheme)
        assert bool((rows > 0).all()) and bool((cols > 0).all()), scheme


@settings(deadline=None, max_examples=40)
@given(matrices(), geometries)
def test_index_bits(matrix, xbar):
    g, m, n = matrix.shape
    mask = matrix != 0
    sub = pack(matrix, xbar, "subrow").index_bits()
    assert sub == {
        "input": math.ceil(math.log2(m)) * int(subrow_counts(mask, xbar).sum()),
        "output": 0,
    }
    col = pack(matrix, xbar, "subcolumn").index_bits()
    assert col == {
        "input": 0,
        "output": math.ceil(math.log2(n)) * int(subcolumn_counts(mask, xbar).sum()),
    }
    for scheme in ("dense", "unstructured", "crossbar", "row", "filter"):
        assert pack(matrix, xbar, scheme).index_bits() == {"input": 0, "output": 0}


def test_index_widths():
    assert index_widths("subrow", 1152, 256) == (11, 0)
    assert index_widths("subcolumn", 1152, 256) == (0, 8)
    assert index_widths("subrow", 1, 1) == (0, 0)
    assert index_widths("dense", 1152, 256) == (0, 0)


def test_subrow_layout_by_hand():
    # 4x4 matrix on 2x2 crossbars. Column block 0 keeps rows 0, 2, 3; block 1 keeps row 1.
    m = torch.zeros(1, 4, 4)
    m[0, 0, 0] = 1.0
    m[0, 2, 1] = 2.0
    m[0, 3, 0] = 3.0
    m[0, 1, 3] = 4.0
    p = pack(m, Crossbar(2, 2), "subrow")
    assert p.n_crossbars == 3  # ceil(3/2) + ceil(1/2)
    assert p.row_index.tolist() == [[0, 2], [3, 0], [1, 0]]
    assert p.row_valid.tolist() == [[True, True], [True, False], [True, False]]
    assert p.col_index.tolist() == [[0, 1], [0, 1], [2, 3]]
    assert p.cells.tolist() == [[[1, 0], [0, 2]], [[3, 0], [0, 0]], [[0, 4], [0, 0]]]
    assert p.used_rows().tolist() == [2, 1, 1]
    assert p.used_cols().tolist() == [2, 1, 1]
    assert p.index_bits() == {"input": 2 * 4, "output": 0}


def test_subcolumn_layout_by_hand():
    # 4x3 matrix on 2x2 crossbars: row block 0 keeps columns 0, 2; row block 1 keeps column 1.
    m = torch.zeros(1, 4, 3)
    m[0, 0, 0] = 1.0
    m[0, 1, 2] = 2.0
    m[0, 3, 1] = 3.0
    p = pack(m, Crossbar(2, 2), "subcolumn")
    assert p.n_crossbars == 2
    assert p.row_index.tolist() == [[0, 1], [2, 3]]
    assert p.col_index.tolist() == [[0, 2], [1, 0]]
    assert p.col_valid.tolist() == [[True, True], [True, False]]
    assert p.cells.tolist() == [[[1, 0], [0, 2]], [[0, 0], [3, 0]]]


def test_dense_keeps_zero_tiles_and_tiles_skip_them():
    m = torch.zeros(2, 5, 7)
    m[1, 4, 6] = 1.0
    xbar = Crossbar(2, 3)
    assert pack(m, xbar, "dense").n_crossbars == 2 * 3 * 3
    for scheme in ("unstructured", "crossbar", "filter", "subrow", "subcolumn"):
        p = pack(m, xbar, scheme)
        assert p.n_crossbars == 1, scheme
        assert p.group.tolist() == [1]
    # ``row`` drops empty rows but keeps every column block.
    assert pack(m, xbar, "row").group.tolist() == [1, 1, 1]
    empty = pack(torch.zeros(1, 3, 3), xbar, "subrow")
    assert empty.n_crossbars == 0 and empty.cells.shape == (0, 2, 3)
    check_physical(empty, torch.zeros(1, 3, 3))
    assert torch.equal(empty.unpack(), torch.zeros(1, 3, 3))


def _corrupt(p: PackedMatrix, **changes) -> PackedMatrix:
    return replace(p, **{k: v.clone() for k, v in changes.items()})


def test_check_physical_catches_broken_packings():
    m = make_matrix(2, 7, 6, "random", 0.5, seed=3)
    m[0, 0, 0] = 1.5  # row 0 of group 0 is kept in column block 0
    xbar = Crossbar(3, 2)
    good = pack(m, xbar, "subrow")
    check_physical(good, m)
    # Row lines driven twice: the same matrix pair is reachable from two cells.
    dup = torch.cat([good.row_index, good.row_index[:1]])
    twice = replace(
        good,
        cells=torch.cat([good.cells, good.cells[:1]]),
        group=torch.cat([good.group, good.group[:1]]),
        row_index=dup,
        row_valid=torch.cat([good.row_valid, good.row_valid[:1]]),
        col_index=torch.cat([good.col_index, good.col_index[:1]]),
        col_valid=torch.cat([good.col_valid, good.col_valid[:1]]),
    )
    with pytest.raises(PackingError, match="twice"):
        check_physical(twice)
    # A non-zero cell on a wordline that is fed nothing.
    k = int(torch.nonzero(~good.row_valid)[0, 0])
    r = int(torch.nonzero(~good.row_valid)[0, 1])
    cells = good.cells.clone()
    cells[k, r, 0] = 1.0
    with pytest.raises(PackingError, match="invalid"):
        check_physical(replace(good, cells=cells))
    # An invalid wordline must carry index 0.
    index = good.row_index.clone()
    index[k, r] = 1
    with pytest.raises(PackingError, match="index"):
        check_physical(replace(good, row_index=index))
    # Index out of range.
    index = good.col_index.clone()
    index[0, 0] = m.shape[2]
    with pytest.raises(PackingError, match="out of range"):
        check_physical(replace(good, col_index=index))
    # A missing crossbar loses non-zeros (and the count).
    fewer = replace(
        good,
        cells=good.cells[1:],
        group=good.group[1:],
        row_index=good.row_index[1:],
        row_valid=good.row_valid[1:],
        col_index=good.col_index[1:],
        col_valid=good.col_valid[1:],
    )
    check_physical(fewer)  # valid on its own...
    with pytest.raises(PackingError):
        check_physical(fewer, m)  # ...but not the matrix
    # A wrong cell value.
    cells = good.cells.clone()
    cells[0, 0, 0] += 1.0
    with pytest.raises(PackingError, match="differs"):
        check_physical(replace(good, cells=cells), m)
    # Rows of another matrix shape.
    with pytest.raises(PackingError, match="shape"):
        check_physical(good, m[:, :6])


def test_unknown_scheme_and_bad_shapes():
    with pytest.raises(UnknownNameError, match="subrow"):
        pack(torch.ones(1, 2, 2), Crossbar(2, 2), "diagonal")
    with pytest.raises(UnknownNameError):
        crossbar_stats(torch.ones(1, 2, 2), Crossbar(2, 2), "diagonal")
    with pytest.raises(ValueError, match="groups, rows, cols"):
        pack(torch.ones(2, 2), Crossbar(2, 2), "dense")
    with pytest.raises(ValueError, match="groups, rows, cols"):
        crossbar_stats(torch.ones(2, 2), Crossbar(2, 2), "dense")


def test_stats_on_a_resnet_layer_shape():
    # A full-width ResNet18 layer (4608 x 512) at 80% sparsity on several geometries.
    m = make_matrix(1, 4608, 512, "random", 0.2, seed=1)
    mask = m != 0
    for xbar in (Crossbar(128, 128), Crossbar(64, 256), Crossbar(256, 32)):
        for scheme in SCHEMES:
            rows, cols = crossbar_stats(mask, xbar, scheme)
            assert rows.numel() == count(mask, xbar, scheme)
            assert bool((rows <= xbar.rows).all()) and bool((cols <= xbar.cols).all())
    packed = pack(m, Crossbar(128, 128), "subcolumn")
    rows, cols = crossbar_stats(mask, Crossbar(128, 128), "subcolumn")
    assert torch.equal(rows, packed.used_rows()) and torch.equal(cols, packed.used_cols())
