import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pimprune.errors import UnknownNameError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import SCHEMES, count, dense_count, packing_bound
from pimprune.pruning.patterns import PATTERNS, get_pattern
from pimprune.pruning.units import greedy_select

ALL = ["subrow", "subcolumn", "row", "filter", "crossbar", "unstructured"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small tensor ops: one intra-op thread avoids contention on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def energy(w: torch.Tensor, mask: torch.Tensor) -> float:
    return float((w.double() ** 2 * mask).sum())


# ---------------------------------------------------------------- registry


def test_registry_has_every_pattern_with_a_known_scheme():
    assert set(ALL) <= set(PATTERNS.names())
    for name in ALL:
        p = get_pattern(name)
        assert p.name == name
        assert p.scheme in SCHEMES


def test_unknown_pattern_is_a_one_line_error():
    with pytest.raises(UnknownNameError, match="subrow"):
        get_pattern("subrows")


# ---------------------------------------------------------------- hand-made exact cases

# sub-row energies per column block (R = C = 2):
#   block 0 (cols 0-1): rows [9, 1, 4, 16] -> chunks {3, 0}: 25, {2, 1}: 5
#   block 1 (cols 2-3): rows [1, 0, 25, 4] -> chunks {2, 3}: 29, {0, 1}: 1
W4 = torch.tensor(
    [
        [3.0, 0.0, 1.0, 0.0],
        [1.0, 0.0, 0.0, 0.0],
        [2.0, 0.0, 5.0, 0.0],
        [4.0, 0.0, 0.0, 2.0],
    ]
)[None]
X22 = Crossbar(2, 2)


def _subrow_mask(rows_by_block: dict[int, list[int]]) -> torch.Tensor:
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    for b, rows in rows_by_block.items():
        for r in rows:
            m[0, r, 2 * b : 2 * b + 2] = True
    return m


@pytest.mark.parametrize(
    "budget, expected",
    [
        (0, {}),
        (1, {1: [2, 3]}),
        (2, {1: [2, 3], 0: [3, 0]}),
        (3, {1: [2, 3], 0: [0, 1, 2, 3]}),
        (4, {1: [0, 1, 2, 3], 0: [0, 1, 2, 3]}),
        (9, {1: [0, 1, 2, 3], 0: [0, 1, 2, 3]}),
    ],
)
def test_subrow_by_hand(budget, expected):
    mask = get_pattern("subrow").project(W4, X22, budget)
    assert torch.equal(mask, _subrow_mask(expected))
    assert count(mask, X22, "subrow") == min(budget, 4)


@pytest.mark.parametrize("budget", [0, 1, 2, 3, 4])
def test_subcolumn_by_hand_is_the_transposed_subrow(budget):
    wt = W4.transpose(1, 2).contiguous()
    mask = get_pattern("subcolumn").project(wt, X22, budget)
    assert torch.equal(mask, get_pattern("subrow").project(W4, X22, budget).transpose(1, 2))
    assert count(mask, X22, "subcolumn") == min(budget, 4)


# rows of a 5x3 matrix with energies [1, 10, 3, 7, 5]; C = 2 -> a chunk of R = 2 rows costs 2
W53 = torch.tensor([[1.0, 0, 0], [3, 1, 0], [1, 1, 1], [2, 1, 1.4142135], [2, 1, 0]])[None]


@pytest.mark.parametrize(
    "budget, rows",
    [
        (0, []),
        (1, []),
        (2, [1, 3]),
        (3, [1, 3]),
        (4, [1, 3, 4, 2]),
        (5, [1, 3, 4, 2]),
        (6, [0, 1, 2, 3, 4]),
    ],
)
def test_row_by_hand(budget, rows):
    mask = get_pattern("row").project(W53, X22, budget)
    expected = torch.zeros(1, 5, 3, dtype=torch.bool)
    expected[0, rows] = True
    assert torch.equal(mask, expected)
    assert count(mask, X22, "row") == 2 * math.ceil(len(rows) / 2)


@pytest.mark.parametrize(
    "budget, cols",
    [(0, []), (2, [1, 3]), (5, [1, 3, 4, 2]), (6, [0, 1, 2, 3, 4])],
)
def test_filter_by_hand(budget, cols):
    w = W53.transpose(1, 2).contiguous()  # 3x5: column energies [1, 10, 3, 7, 5], chunk cost 2
    mask = get_pattern("filter").project(w, X22, budget)
    expected = torch.zeros(1, 3, 5, dtype=torch.bool)
    expected[0, :, cols] = True
    assert torch.equal(mask, expected)
    assert count(mask, X22, "filter") == 2 * math.ceil(len(cols) / 2)


def test_crossbar_by_hand():
    # 2x2 tile energies of W4: (0,0) 10, (0,1) 1, (1,0) 20, (1,1) 29
    mask = get_pattern("crossbar").project(W4, X22, 2)
    expected = torch.zeros(1, 4, 4, dtype=torch.bool)
    expected[0, 2:, :] = True
    assert torch.equal(mask, expected)
    mask3 = get_pattern("crossbar").project(W4, X22, 3)
    expected[0, :2, :2] = True
    assert torch.equal(mask3, expected)


def test_unstructured_by_hand_keeps_top_k_and_counts_tiles():
    w = torch.tensor([[0.5, -3.0, 1.0], [2.0, 0.1, -4.0]])[None]
    x = Crossbar(1, 2)  # 2 cells: budget b keeps 2b weights
    p = get_pattern("unstructured")
    mask = p.project(w, x, 1)
    assert torch.equal(mask, torch.tensor([[[False, True, False], [False, False, True]]]))
    assert p.cost(mask, x) == 1 == packing_bound(mask, x)
    assert count(mask, x, p.scheme) == 2  # the two weights sit in different tiles
    assert p.project(w, x, 2).sum() == 4
    assert p.project(w, x, 3).all()


def test_partial_last_chunk_costs_a_whole_crossbar():
    # 3 rows in a 2-row crossbar: the second sub-row chunk holds one row and costs one crossbar
    w = torch.tensor([[3.0], [2.0], [1.0]])[None]
    x = Crossbar(2, 1)
    p = get_pattern("subrow")
    assert p.project(w, x, 1)[0, :, 0].tolist() == [True, True, False]
    assert p.project(w, x, 2).all()
    u = p.units(w, x)
    assert u.gains.tolist() == [13.0, 1.0]
    assert u.costs.tolist() == [1, 1]


def test_negative_budget_is_rejected():
    with pytest.raises(ValueError):
        get_pattern("subrow").project(W4, X22, -1)


# ---------------------------------------------------------------- brute force (tiny cases)

# item layout per pattern, built independently of the implementation:
#   list of (chain id, element index list); cost of a chain = ceil(k / chunk) * unit_cost


def _items(pattern: str, g: int, m: int, n: int, x: Crossbar):
    rb, cb = math.ceil(m / x.rows), math.ceil(n / x.cols)
    items, chunk, unit_cost = [], 1, 1
    if pattern == "subrow":
        chunk = x.rows
        for gi, b, r in itertools.product(range(g), range(cb), range(m)):
            cols = range(b * x.cols, min(n, (b + 1) * x.cols))
            items.append((gi * cb + b, [(gi, r, c) for c in cols]))
    elif pattern == "subcolumn":
        chunk = x.cols
        for gi, b, c in itertools.product(range(g), range(rb), range(n)):
            rows = range(b * x.rows, min(m, (b + 1) * x.rows))
            items.append((gi * rb + b, [(gi, r, c) for r in rows]))
    elif pattern == "row":
        chunk, unit_cost = x.rows, cb
        for gi, r in itertools.product(range(g), range(m)):
            items.append((gi, [(gi, r, c) for c in range(n)]))
    elif pattern == "filter":
        chunk, unit_cost = x.cols, rb
        for gi, c in itertools.product(range(g), range(n)):
            items.append((gi, [(gi, r, c) for r in range(m)]))
    elif pattern == "crossbar":
        for gi, i, j in itertools.product(range(g), range(rb), range(cb)):
            cells = [
                (gi, r, c)
                for r in range(i * x.rows, min(m, (i + 1) * x.rows))
                for c in range(j * x.cols, min(n, (j + 1) * x.cols))
            ]
            items.append((gi * rb * cb + i * cb + j, cells))
    return items, chunk, unit_cost


@pytest.mark.parametrize("pattern", ["subrow", "subcolumn", "row", "filter", "crossbar"])
@pytest.mark.parametrize("seed", range(4))
def test_projection_is_optimal_by_brute_force(pattern, seed):
    rng = np.random.default_rng(seed)
    while True:  # a random tiny layer with at most 12 items (4096 subsets)
        g = int(rng.integers(1, 3))
        m, n = int(rng.integers(2, 7)), int(rng.integers(2, 7))
        x = Crossbar(int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        items, chunk, unit_cost = _items(pattern, g, m, n, x)
        if 2 <= len(items) <= 12:
            break
    w = torch.from_numpy(rng.standard_normal((g, m, n)))
    n_items = len(items)
    e = np.array([sum(float(w[i] ** 2) for i in cells) for _, cells in items])
    chains = np.array([c for c, _ in items])
    subsets = np.array(list(itertools.product([0, 1], repeat=n_items)), dtype=np.int64)
    per_chain = np.zeros((len(subsets), chains.max() + 1), dtype=np.int64)
    np.add.at(per_chain.T, chains, subsets.T)
    costs = (-(-per_chain // chunk)).sum(1) * unit_cost
    energies = subsets @ e
    # the item cost model agrees with the counting scheme on a few subsets
    for s in subsets[rng.choice(len(subsets), 5)]:
        mask = torch.zeros(g, m, n, dtype=torch.bool)
        for keep, (_, cells) in zip(s, items, strict=True):
            for i in cells:
                mask[i] = bool(keep)
        k = int(np.flatnonzero((subsets == s).all(1))[0])
        assert count(mask, x, get_pattern(pattern).scheme) == costs[k]
    p = get_pattern(pattern)
    for budget in range(0, int(costs.max()) + 2):
        mask = p.project(w, x, budget)
        assert p.cost(mask, x) <= budget
        best = energies[costs <= budget].max()
        assert energy(w, mask) == pytest.approx(best, rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------- properties

shapes = st.tuples(
    st.integers(1, 2), st.integers(1, 12), st.integers(1, 12), st.integers(1, 5), st.integers(1, 5)
)


def _setup(shape, seed):
    g, m, n, r, c = shape
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(g, m, n, generator=gen, dtype=torch.float64), Crossbar(r, c)


def _random_structured(pattern: str, w: torch.Tensor, x: Crossbar, seed: int) -> torch.Tensor:
    """A random mask made of the pattern's own pieces (built without the pattern code)."""
    g, m, n = w.shape
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.9)
    rb, cb = math.ceil(m / x.rows), math.ceil(n / x.cols)
    if pattern == "subrow":
        keep = rng.random((g, m, cb)) < p
        full = np.repeat(keep, x.cols, axis=2)[:, :, :n]
    elif pattern == "subcolumn":
        keep = rng.random((g, rb, n)) < p
        full = np.repeat(keep, x.rows, axis=1)[:, :m, :]
    elif pattern == "row":
        full = np.broadcast_to((rng.random((g, m)) < p)[:, :, None], (g, m, n))
    elif pattern == "filter":
        full = np.broadcast_to((rng.random((g, n)) < p)[:, None, :], (g, m, n))
    elif pattern == "crossbar":
        keep = rng.random((g, rb, cb)) < p
        full = np.repeat(np.repeat(keep, x.rows, axis=1), x.cols, axis=2)[:, :m, :n]
    else:
        full = rng.random((g, m, n)) < p
    return torch.from_numpy(np.array(full))


@pytest.mark.parametrize("pattern", ALL)
@settings(deadline=None, max_examples=25)
@given(shape=shapes, seed=st.integers(0, 2**16), frac=st.floats(0, 1.2))
def test_projection_properties(pattern, shape, seed, frac):
    w, x = _setup(shape, seed)
    p = get_pattern(pattern)
    g, m, n = w.shape
    dense = dense_count(m, n, g, x)
    budget = int(frac * dense)
    mask = p.project(w, x, budget)
    assert mask.shape == w.shape and mask.dtype == torch.bool
    # never over budget
    assert p.cost(mask, x) <= budget
    # idempotent (no ties: continuous random weights)
    assert torch.equal(p.project(w * mask, x, budget), mask)
    # budget >= dense keeps everything, budget 0 nothing
    assert p.project(w, x, dense).all()
    assert not p.project(w, x, 0).any()
    # at least as much energy as a random mask of the same structure within the same budget
    other = _random_structured(pattern, w, x, seed)
    b_other = p.cost(other, x)
    assert energy(w, p.project(w, x, b_other)) >= energy(w, other) * (1 - 1e-12)


@pytest.mark.parametrize("pattern", ALL)
@settings(deadline=None, max_examples=15)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_units_partition_the_matrix(pattern, shape, seed):
    w, x = _setup(shape, seed)
    u = get_pattern(pattern).units(w, x)
    assert float(u.gains.sum()) == pytest.approx(energy(w, torch.ones_like(w)), rel=1e-9)
    assert u.mask(torch.ones(len(u), dtype=torch.bool)).all()
    assert not u.mask(torch.zeros(len(u), dtype=torch.bool)).any()
    sel = torch.from_numpy(np.random.default_rng(seed).random(len(u)) < 0.5)
    assert energy(w, u.mask(sel)) == pytest.approx(float(u.gains[sel].sum()), rel=1e-9, abs=1e-12)
    for c in range(u.n_chains):
        in_chain = u.chain == c
        order = torch.argsort(u.position[in_chain])
        gains = u.gains[in_chain][order]
        assert u.position[in_chain][order].tolist() == list(range(int(in_chain.sum())))
        assert bool((gains[1:] <= gains[:-1]).all())
        assert len(set(u.costs[in_chain].tolist())) == 1
    assert u.cost_of(torch.ones(len(u), dtype=torch.bool)) <= dense_count(
        *w.shape[1:], w.shape[0], x
    )


@settings(deadline=None, max_examples=25)
@given(shape=shapes, seed=st.integers(0, 2**16), frac=st.floats(0, 1))
def test_subcolumn_is_subrow_of_the_transpose(shape, seed, frac):
    w, x = _setup(shape, seed)
    budget = int(frac * dense_count(w.shape[1], w.shape[2], w.shape[0], x))
    a = get_pattern("subrow").project(w, x, budget)
    b = get_pattern("subcolumn").project(w.transpose(1, 2), Crossbar(x.cols, x.rows), budget)
    assert torch.equal(a, b.transpose(1, 2))


@settings(deadline=None, max_examples=25)
@given(shape=shapes, seed=st.integers(0, 2**16), frac=st.floats(0, 1))
def test_unstructured_topk_equals_the_units_greedy(shape, seed, frac):
    w, x = _setup(shape, seed)
    p = get_pattern("unstructured")
    budget = int(frac * dense_count(w.shape[1], w.shape[2], w.shape[0], x))
    u = p.units(w, x)
    via_units = u.mask(greedy_select(u.gains, u.costs, u.chain, u.position, budget))
    assert torch.equal(p.project(w, x, budget), via_units)
    assert int(via_units.sum()) == min(budget * x.cells, w.numel())


def test_pattern_scores_rank_and_weights_shape():
    pattern = get_pattern("subrow")
    xbar = Crossbar.parse("4x4")
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(1, 16, 8, generator=gen)
    scores = torch.randn(1, 16, 8, generator=gen)
    assert torch.equal(pattern.project(m, xbar, 2, scores), pattern.project(scores, xbar, 2))
    assert torch.equal(pattern.project(m, xbar, 2, None), pattern.project(m, xbar, 2))
    with pytest.raises(ValueError, match="scores"):
        pattern.project(m, xbar, 2, scores[:, :8])
