import pytest
import torch

from pimprune.pruning.units import greedy_select


def test_greedy_fills_the_rest_with_cheaper_units_and_respects_chains():
    gains = torch.tensor([9.0, 6.0, 2.0, 1.5], dtype=torch.float64)
    costs = torch.tensor([3, 3, 1, 1])
    chain = torch.tensor([0, 0, 1, 1])
    pos = torch.tensor([0, 1, 0, 1])
    # ratios 3, 2, 2, 1.5: prefix takes unit 0 (3); unit 1 no longer fits budget 4; unit 2 does
    assert greedy_select(gains, costs, chain, pos, 4).tolist() == [True, False, True, False]
    assert greedy_select(gains, costs, chain, pos, 5).tolist() == [True, False, True, True]
    assert greedy_select(gains, costs, chain, pos, 0).tolist() == [False] * 4
    assert greedy_select(gains, costs, chain, pos, 100).all()


def test_greedy_never_takes_a_unit_before_its_predecessor():
    gains = torch.tensor([1.0, 1.0, 5.0], dtype=torch.float64)  # equal gains inside chain 0
    costs = torch.tensor([2, 2, 1])
    chain = torch.tensor([0, 0, 1])
    pos = torch.tensor([0, 1, 0])
    sel = greedy_select(gains, costs, chain, pos, 3)
    assert sel.tolist() == [True, False, True]


def test_greedy_rejects_zero_costs():
    with pytest.raises(ValueError):
        greedy_select(
            torch.ones(1), torch.zeros(1, dtype=torch.int64), torch.zeros(1), torch.zeros(1), 1
        )
